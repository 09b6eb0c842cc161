#!/usr/bin/env bash
# Builds nsl in Release (build/release) and runs the demo's main job.
# Usage: bash scripts/demo.sh [arguments for the main job]
set -euo pipefail

# ---- main job: change these two to demo something else ---------------------
# MAIN_TARGET: the CMake target to build; MAIN_JOB: the command to run, with
# paths relative to the repository root (extra script arguments are appended).
MAIN_TARGET="nsl_example_01_bilinear_similarity"
MAIN_JOB=(build/release/examples/nsl_example_01_bilinear_similarity)
# -----------------------------------------------------------------------------

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
JOBS="${NSL_JOBS:-$(nproc)}"

bash "$ROOT/scripts/install-deps.sh"

# Same cache as scripts/test.sh's Release build, so the two share build/release.
cmake -S "$ROOT" -B "$ROOT/build/release" \
  -DCMAKE_BUILD_TYPE=Release -DNSL_SANITIZE=OFF \
  -DNSL_BUILD_TESTS=ON -DNSL_BUILD_EXAMPLES=ON -DNSL_BUILD_BENCHMARKS=ON
cmake --build "$ROOT/build/release" -j "$JOBS" ${MAIN_TARGET:+--target "$MAIN_TARGET"}

echo
echo "==== demo: ${MAIN_JOB[*]} $*"
exec "${MAIN_JOB[@]}" "$@"
