#!/usr/bin/env bash
# Builds nsl in Release (build/release) and runs the demo's main job: one
# epoch of CNN-9 with dynamic neural similarity (DNS) on Fashion-MNIST, then
# nsl-eval on the trained model. Outputs go to runs/demo/.
#
# One epoch is short for the paper's recipe, so the demo anneals the learning
# rate with a cosine (to 0 at the end of the epoch), re-estimates the
# BatchNorm statistics on 100 batches before testing, and starts every
# dynamic layer as the plain convolution (predictor scale 0), which keeps the
# result from depending on the machine's order of sums (docs/training.md,
# "A one-epoch run"; the spread over seeds and kernel paths: docs/RESULTS.md,
# "The demo"). These are nsl-train's defaults (--recipe auto) for this run;
# the command spells them out.
# Usage: bash scripts/demo.sh [more nsl-train arguments, e.g. --epochs 3]
set -euo pipefail

# ---- main job: change these two to demo something else ---------------------
# MAIN_TARGET: the CMake target to build; MAIN_JOB: the command to run, with
# paths relative to the repository root (extra script arguments are appended).
MAIN_TARGET="nsl-tools"  # the programs of apps/
OUT="runs/demo"
MAIN_JOB=(build/release/nsl-train --variant dynamic_dns --epochs 1 --schedule cosine --warmup 200
          --precise-bn 100 --predictor-gamma 0 --out "$OUT")
# -----------------------------------------------------------------------------

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
JOBS="${NSL_JOBS:-$(nproc)}"

bash "$ROOT/scripts/install-deps.sh" demo

# The same build folder as scripts/test.sh's Release build; the demo needs
# neither the tests, the examples nor the benchmarks (nor their packages).
cmake -S "$ROOT" -B "$ROOT/build/release" \
  -DCMAKE_BUILD_TYPE=Release -DNSL_SANITIZE=OFF \
  -DNSL_BUILD_TESTS=OFF -DNSL_BUILD_APPS=ON -DNSL_BUILD_EXAMPLES=OFF -DNSL_BUILD_BENCHMARKS=OFF
cmake --build "$ROOT/build/release" -j "$JOBS" ${MAIN_TARGET:+--target "$MAIN_TARGET"}

echo
echo "==== demo: ${MAIN_JOB[*]} $*"
"${MAIN_JOB[@]}" "$@"
echo
echo "==== demo: build/release/nsl-eval --model $OUT/model.nslckpt --json $OUT/eval.json"
build/release/nsl-eval --model "$OUT/model.nslckpt" --json "$OUT/eval.json"
echo
echo "demo: outputs in $ROOT/$OUT:"
echo "  steps.jsonl        training loss and accuracy every 10 steps"
echo "  metrics.jsonl      one JSON object per epoch (loss, accuracy, images/s, learning rate)"
echo "  model.nslckpt      the model file (nsl-eval --model, nsl-train --resume, nsl::load_model)"
echo "  curves.png         loss and accuracy against training steps, with the test results"
echo "  kernel_shapes.png  the learned kernel shapes of every similarity layer"
echo "  eval.json          test accuracy, per-class accuracy and the confusion matrix"
