#!/usr/bin/env bash
# The GPU check of nsl's CUDA backend, in one run of about 8 minutes or less on
# a machine with an NVIDIA GPU, nvcc and PyTorch with CUDA:
#   1. builds nsl_cuda_tests, nsl_bench_cuda and nsl-train (with --device cuda)
#      straight with nvcc and g++ (no CMake needed), in parallel;
#   2. runs the CUDA tests (every operation, every layer and CNN-9 against the CPU);
#   3. benchmarks the layer/* and cnn9/* cases against PyTorch CUDA
#      (bench/compare_pytorch_cuda.py);
#   4. trains dynamic_dns on a slice of Fashion-MNIST with --device cuda and
#      with --device cpu, and compares the two runs' losses and accuracies.
# Results go into OUT_DIR: build.log, cuda_tests.txt, bench.txt, bench.json,
# train_cuda/, train_cpu/, train_compare.txt and summary.txt.
#
#   bash scripts/gpu-check.sh OUT_DIR
#
# Headers, Cairo and the data come from the system when present, else from
# $NSL_GPU_DEPS (default build/gpu-deps, made by scripts/gpu-deps.sh on a
# development machine). Exit status 0 iff every step passed.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:?usage: gpu-check.sh OUT_DIR}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
DEPS="${NSL_GPU_DEPS:-$ROOT/build/gpu-deps}"
BUILD="$ROOT/build/gpu"
NVCC="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$BUILD"
: >"$OUT/summary.txt"
failed=0
record() {  # record NAME STATUS SECONDS
  local verdict=PASS
  [[ "$2" == 0 ]] || { verdict=FAIL; failed=1; }
  printf '%s  %s (%s s)\n' "$verdict" "$1" "$3" | tee -a "$OUT/summary.txt"
}

# ---- where everything is -----------------------------------------------------
includes=(-I "$ROOT/include" -I "$ROOT/apps" -I "$ROOT/tests" -I "$ROOT/tests/cuda")
pick() {  # pick SYSTEM_PATH DEPS_PATH: the first that exists
  if [[ -e "$1" ]]; then echo "$1"; elif [[ -e "$2" ]]; then echo "$2"; fi
}
eigen="$(pick /usr/include/eigen3 "$DEPS/include/eigen3")"
[[ -n "$eigen" ]] || { echo "gpu-check: no Eigen (install libeigen3-dev or run scripts/gpu-deps.sh)" >&2; exit 1; }
includes+=(-isystem "$eigen")
for header in xsimd/xsimd.hpp doctest/doctest.h CLI/CLI.hpp nlohmann/json.hpp cairo/cairo.h; do
  if [[ ! -e "/usr/include/$header" ]]; then
    [[ -e "$DEPS/include/$header" ]] || { echo "gpu-check: no $header (run scripts/gpu-deps.sh)" >&2; exit 1; }
    have_deps_include=1
  fi
done
[[ -n "${have_deps_include:-}" ]] && includes+=(-isystem "$DEPS/include")
includes+=(-isystem "$(pick /usr/include/cairo "$DEPS/include/cairo")")
libs=(-lcairo -lz)
if ! ldconfig -p 2>/dev/null | grep -q libcairo.so.2; then libs=(-L "$DEPS/lib" -Xlinker -rpath="$DEPS/lib" -lcairo -lz); fi
fashion="$(pick /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz "$DEPS/fashion-mnist/train-images-idx3-ubyte.gz")"
fashion="${fashion%/*}"

# The same flags as the CMake build: C++17, sm_90 code plus PTX, warnings.
cuda_flags=(-std=c++17 -O3 -DNDEBUG -DNSL_HAVE_XSIMD=1 --expt-relaxed-constexpr
            -diag-suppress=20011,20012,20013,20014,1675
            -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_90,code=compute_90
            -Xcompiler=-fopenmp,-march=native,-Wall,-Wextra "${includes[@]}")
cxx_flags=(-std=c++17 -O3 -DNDEBUG -DNSL_HAVE_XSIMD=1 -fopenmp -march=native -Wall -Wextra "${includes[@]}")

# ---- 1. build ----------------------------------------------------------------
start=$SECONDS
{
  echo "nvcc: $("$NVCC" --version | tail -1)"
  pids=()
  objects=()
  for source in "$ROOT"/tests/cuda/*.cu; do
    object="$BUILD/$(basename "$source" .cu).o"
    objects+=("$object")
    "$NVCC" "${cuda_flags[@]}" -c "$source" -o "$object" & pids+=($!)
  done
  "$NVCC" "${cuda_flags[@]}" -c "$ROOT/bench/nsl_bench_cuda.cu" -o "$BUILD/nsl_bench_cuda.o" & pids+=($!)
  "$NVCC" "${cuda_flags[@]}" -c "$ROOT/apps/nsl_train_cuda.cu" -o "$BUILD/nsl_train_cuda.o" & pids+=($!)
  g++ "${cxx_flags[@]}" -DNSL_TRAIN_WITH_CUDA=1 -c "$ROOT/apps/nsl_train.cpp" -o "$BUILD/nsl_train.o" & pids+=($!)
  status=0
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
  if ((status == 0)); then
    "$NVCC" -Xcompiler=-fopenmp "${objects[@]}" -o "$BUILD/nsl_cuda_tests" -lcublas &&
      "$NVCC" -Xcompiler=-fopenmp "$BUILD/nsl_bench_cuda.o" -o "$BUILD/nsl_bench_cuda" -lcublas &&
      "$NVCC" -Xcompiler=-fopenmp "$BUILD/nsl_train.o" "$BUILD/nsl_train_cuda.o" -o "$BUILD/nsl-train" -lcublas \
        "${libs[@]}" || status=1
  fi
  exit $status
} >"$OUT/build.log" 2>&1
build_status=$?
record build $build_status $((SECONDS - start))
if ((build_status != 0)); then
  tail -40 "$OUT/build.log"
  exit 1
fi

# ---- 2. the CUDA tests --------------------------------------------------------
start=$SECONDS
timeout 180 "$BUILD/nsl_cuda_tests" >"$OUT/cuda_tests.txt" 2>&1
status=$?
tail -3 "$OUT/cuda_tests.txt"
record "CUDA tests" $status $((SECONDS - start))

# ---- 3. benchmark against PyTorch CUDA ------------------------------------------
start=$SECONDS
timeout 240 "$PYTHON" "$ROOT/bench/compare_pytorch_cuda.py" --nsl-bench-cuda "$BUILD/nsl_bench_cuda" \
  --json-out "$OUT/bench.json" >"$OUT/bench.txt" 2>&1
status=$?
tail -16 "$OUT/bench.txt"
record "benchmark against PyTorch CUDA" $status $((SECONDS - start))

# ---- 4. nsl-train --device cuda, and the same run on the CPU --------------------
start=$SECONDS
train_args=(--variant dynamic_dns --data "$fashion" --epochs 1 --limit-train 2048 --limit-test 512 --augment none
            --warmup 10 --seed 3)
timeout 120 "$BUILD/nsl-train" "${train_args[@]}" --device cuda --out "$OUT/train_cuda" >"$OUT/train_cuda.log" 2>&1
cuda_status=$?
timeout 150 "$BUILD/nsl-train" "${train_args[@]}" --device cpu --out "$OUT/train_cpu" >"$OUT/train_cpu.log" 2>&1
cpu_status=$?
status=1
if ((cuda_status == 0 && cpu_status == 0)); then
  "$PYTHON" - "$OUT/train_cuda/metrics.jsonl" "$OUT/train_cpu/metrics.jsonl" >"$OUT/train_compare.txt" 2>&1 <<'EOF'
import json, sys
gpu, cpu = (json.loads(open(p).readline()) for p in sys.argv[1:3])
ok = True
for key in ("train_loss", "test_loss", "train_acc", "test_acc"):
    diff = abs(gpu[key] - cpu[key])
    # float32 on both sides, 16 steps: the runs drift apart only by rounding
    good = diff <= 0.02 * max(1.0, abs(cpu[key]))
    ok &= good
    print(f"{key:10s} cuda {gpu[key]:.5f}  cpu {cpu[key]:.5f}  |diff| {diff:.2e}  {'ok' if good else 'DIFFERENT'}")
print(f"images/s   cuda {gpu['images_per_second']:.0f}  cpu {cpu['images_per_second']:.0f}")
sys.exit(0 if ok else 1)
EOF
  status=$?
fi
cat "$OUT/train_compare.txt" 2>/dev/null
record "nsl-train --device cuda against --device cpu" $status $((SECONDS - start))

echo
cat "$OUT/summary.txt"
exit $failed
