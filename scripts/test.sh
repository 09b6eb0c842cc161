#!/usr/bin/env bash
# nsl's full check, from any working directory (as root on Debian 12):
#   1. install missing Debian packages (scripts/install-deps.sh);
#   2. Release build in build/release (tests, examples, benchmarks built but
#      not run) and ctest; with the CUDA backend (NSL_WITH_CUDA) whenever
#      nvcc is present, so that the CUDA code always compiles (its tests
#      report "skipped" without a GPU). NSL_CUDA=off leaves it out;
#      NSL_TSAN_TESTS adds the inference thread test (one model, CNN-9 and
#      deployed, shared by 4 std::threads) built under ThreadSanitizer
#      without OpenMP, run by the same ctest (label tsan);
#   3. the readers' fuzzing harnesses, 30 s each (scripts/fuzz.sh), when
#      clang++-16 with libFuzzer is present;
#   4. ASan+UBSan build in build/asan (NSL_SANITIZE=ON) and ctest: the unit
#      and consumer tests (the examples and command-line programs are built
#      and run in step 2; under the sanitizers they took a third of the CI
#      budget, and the library code they run is the unit tests' too). Without
#      -march=native: at -O2 with the sanitizers GCC 12 reports its own
#      AVX-512 intrinsics as -Wuninitialized (GCC bug 105593), and this build
#      checks correctness, not speed. At -O1 -g1 (line tables only): GCC
#      compiles the sanitised templates 2-3x faster than at -O2 -g, and the
#      reports still name file and line. Without xsimd: under the sanitizers its
#      batch operations are not inlined and nsl's GEMM micro-kernel runs about
#      250x slower than in Release (the command-line tests then time out);
#      this build checks the scalar paths, Eigen's GEMM kernel and the
#      packers, and the Release tests check the xsimd kernels against the
#      reference ones.
# NSL_JOBS overrides the parallelism (default: nproc). Exit status 0 iff all
# steps passed; a summary is printed at the end either way.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
JOBS="${NSL_JOBS:-$(nproc)}"
CUDA=OFF
if [[ "${NSL_CUDA:-auto}" != off ]] && { command -v nvcc >/dev/null 2>&1 || [[ -x /usr/local/cuda/bin/nvcc ]]; }; then
  CUDA=ON
fi

bash "$ROOT/scripts/install-deps.sh"

# ctest -j runs two OpenMP tests at once on two cores: with libgomp's default
# (spinning) waits each steals the other's cycles; passive waits measured
# 152 s -> 101 s for the Release tests on 2 cores. Tests only; the benchmarks
# and programs keep the default.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

summary=()
failed=0
# step NAME COMMAND...: runs the command, records PASS/FAIL and its duration.
step() {
  local name="$1"; shift
  local start=$SECONDS
  echo
  echo "==== $name: $*"
  if "$@"; then
    summary+=("PASS  $name ($((SECONDS - start)) s)")
    return 0
  else
    summary+=("FAIL  $name ($((SECONDS - start)) s)")
    failed=1
    return 1
  fi
}

# ---- Release ---------------------------------------------------------------
if step "release: configure" cmake -S "$ROOT" -B "$ROOT/build/release" \
     -DCMAKE_BUILD_TYPE=Release -DNSL_SANITIZE=OFF -DNSL_WITH_CUDA="$CUDA" \
     -DNSL_BUILD_TESTS=ON -DNSL_BUILD_APPS=ON -DNSL_BUILD_EXAMPLES=ON -DNSL_BUILD_BENCHMARKS=ON \
     -DNSL_TSAN_TESTS=ON &&
   step "release: build" cmake --build "$ROOT/build/release" -j "$JOBS"; then
  step "release: ctest" ctest --test-dir "$ROOT/build/release" --output-on-failure -j "$JOBS" || true
fi

# ---- fuzzing -----------------------------------------------------------------
# Each reader's libFuzzer harness for 30 s (scripts/fuzz.sh; tests/fuzz),
# whenever clang++-16 is present (scripts/install-deps.sh installs it). The
# corpora themselves are replayed by ctest in both builds (label fuzz).
if command -v clang++-16 >/dev/null 2>&1; then
  step "fuzz: 30 s per reader" bash "$ROOT/scripts/fuzz.sh" --seconds 30 || true
else
  summary+=("SKIP  fuzz (no clang++-16)")
fi

# ---- ASan + UBSan ----------------------------------------------------------
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
if step "asan: configure" cmake -S "$ROOT" -B "$ROOT/build/asan" \
     -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DNSL_SANITIZE=ON -DNSL_NATIVE_ARCH=OFF -DNSL_USE_XSIMD=OFF \
     -DNSL_BUILD_TESTS=ON -DNSL_BUILD_APPS=OFF -DNSL_BUILD_EXAMPLES=OFF -DNSL_BUILD_BENCHMARKS=OFF &&
   step "asan: build" cmake --build "$ROOT/build/asan" -j "$JOBS"; then
  step "asan: ctest" ctest --test-dir "$ROOT/build/asan" --output-on-failure -j "$JOBS" || true
fi

echo
echo "==== summary (jobs: $JOBS, CUDA backend: $CUDA)"
printf '  %s\n' "${summary[@]}"
if ((failed)); then
  echo "test.sh: FAILED"
  exit 1
fi
echo "test.sh: all passed"
