#!/usr/bin/env bash
# The GPU check of nsl's CUDA backend, in one run of about 8 minutes or less on
# a machine with an NVIDIA GPU, nvcc and PyTorch with CUDA:
#   1. builds nsl_cuda_tests, nsl_bench_cuda and nsl-train (with --device cuda)
#      straight with nvcc and g++ (no CMake needed), in parallel;
#   2. runs the CUDA tests (every operation, every layer and CNN-9 against the CPU);
#   3. benchmarks the layer/* and cnn9/* cases against PyTorch CUDA
#      (bench/compare_pytorch_cuda.py);
#   4. trains dynamic_dns on a slice of Fashion-MNIST with --device cuda and
#      with --device cpu, and compares the first two steps' losses (float32
#      runs part after a few steps on any two machines, docs/training.md).
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
OUT="${1:?usage: gpu-check.sh OUT_DIR [STEPS]}"
STEPS="${2:-tests,bench,train}"  # which checks to build and run; "profile" (not by default): per-kernel
                                 # GPU times of one CNN-9 training step (plain, dynamic_dns) under ncu
want() { [[ ",$STEPS," == *",$1,"* ]]; }
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
DEPS="${NSL_GPU_DEPS:-$ROOT/build/gpu-deps}"
BUILD="$ROOT/build/gpu"
NVCC="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$BUILD"
rm -f "$BUILD/nsl_cuda_tests" "$BUILD/nsl_bench_cuda" "$BUILD/nsl-train"
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
# Cairo, and zlib's link-time name, from DEPS where the system lacks them.
if ! ldconfig -p 2>/dev/null | grep -q libcairo.so.2 || ! ldconfig -p 2>/dev/null | grep -q 'libz.so '; then
  # DT_RPATH (--disable-new-dtags), unlike DT_RUNPATH, also finds Cairo's own dependencies there.
  libs=(-L "$DEPS/lib" -Xlinker --disable-new-dtags -Xlinker -rpath="$DEPS/lib" -lcairo -lz)
fi
# cuBLAS: the toolkit's own, else the one a Python wheel (nvidia-cublas) brought.
cublas=(-lcublas)
if [[ ! -e "$(dirname "$NVCC")/../lib64/libcublas.so" ]]; then
  found="$(find /usr /opt -name 'libcublas.so*' 2>/dev/null | head -1)"
  if [[ -n "$found" ]]; then
    mkdir -p "$BUILD/cublas"
    ln -sf "$found" "$BUILD/cublas/libcublas.so"
    cublas=(-L "$BUILD/cublas" -Xlinker -rpath="${found%/*}" -lcublas)
  fi
fi
fashion="$(pick /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz "$DEPS/fashion-mnist/train-images-idx3-ubyte.gz")"
fashion="${fashion%/*}"

# The same flags as the CMake build: C++17, sm_90 code plus PTX, warnings.
cuda_flags=(-std=c++17 -O3 -DNDEBUG -DNSL_HAVE_XSIMD=1 --expt-relaxed-constexpr
            -diag-suppress=20011,20012,20013,20014,1675
            -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_90,code=compute_90
            -Xcompiler=-fopenmp,-march=native,-Wall,-Wextra "${includes[@]}")
cxx_flags=(-std=c++17 -O3 -DNDEBUG -DNSL_HAVE_XSIMD=1 -fopenmp -march=native -Wall -Wextra "${includes[@]}")

# ---- the machine -------------------------------------------------------------
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  "$PYTHON" -c 'import torch; print("PyTorch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version())' 2>&1
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) cores"
} | tee "$OUT/machine.txt"

# ---- 1. build ----------------------------------------------------------------
start=$SECONDS
(
  echo "nvcc: $("$NVCC" --version | tail -1)"
  pids=()
  objects=()
  want tests && for source in "$ROOT"/tests/cuda/*.cu; do
    object="$BUILD/$(basename "$source" .cu).o"
    objects+=("$object")
    "$NVCC" "${cuda_flags[@]}" -c "$source" -o "$object" & pids+=($!)
  done
  if want bench || want profile; then
    "$NVCC" "${cuda_flags[@]}" -c "$ROOT/bench/nsl_bench_cuda.cu" -o "$BUILD/nsl_bench_cuda.o" & pids+=($!)
  fi
  if want train; then
    "$NVCC" "${cuda_flags[@]}" -c "$ROOT/apps/nsl_train_cuda.cu" -o "$BUILD/nsl_train_cuda.o" & pids+=($!)
    g++ "${cxx_flags[@]}" -DNSL_TRAIN_WITH_CUDA=1 -c "$ROOT/apps/nsl_train.cpp" -o "$BUILD/nsl_train.o" & pids+=($!)
  fi
  status=0
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
  # Each program links on its own, so that one that fails leaves the others' checks.
  if want tests; then
    "$NVCC" -Xcompiler=-fopenmp "${objects[@]}" -o "$BUILD/nsl_cuda_tests" "${cublas[@]}" || status=1
  fi
  if want bench || want profile; then
    "$NVCC" -Xcompiler=-fopenmp "$BUILD/nsl_bench_cuda.o" -o "$BUILD/nsl_bench_cuda" "${cublas[@]}" || status=1
  fi
  want train && "$NVCC" -Xcompiler=-fopenmp "$BUILD/nsl_train.o" "$BUILD/nsl_train_cuda.o" -o "$BUILD/nsl-train" "${cublas[@]}" \
    "${libs[@]}" || status=1
  exit $status
) >"$OUT/build.log" 2>&1
build_status=$?
record build $build_status $((SECONDS - start))
((build_status == 0)) || tail -40 "$OUT/build.log"
built() { [[ -x "$BUILD/$1" ]] || { echo "gpu-check: $1 was not built, its step is skipped" >&2; return 1; }; }

# ---- 2. the CUDA tests --------------------------------------------------------
if want tests; then
  start=$SECONDS
  built nsl_cuda_tests && timeout 180 "$BUILD/nsl_cuda_tests" >"$OUT/cuda_tests.txt" 2>&1
  status=$?
  tail -3 "$OUT/cuda_tests.txt"
  record "CUDA tests" $status $((SECONDS - start))
fi

# ---- 3. benchmark against PyTorch CUDA ------------------------------------------
if want bench; then
  start=$SECONDS
  built nsl_bench_cuda && timeout 240 "$PYTHON" "$ROOT/bench/compare_pytorch_cuda.py" --nsl-bench-cuda "$BUILD/nsl_bench_cuda" \
    --json-out "$OUT/bench.json" >"$OUT/bench.txt" 2>&1
  status=$?
  tail -16 "$OUT/bench.txt"
  record "benchmark against PyTorch CUDA" $status $((SECONDS - start))
fi

# ---- 4. nsl-train --device cuda, and the same run on the CPU --------------------
if want train; then
  start=$SECONDS
  train_args=(--variant dynamic_dns --data "$fashion" --epochs 1 --limit-train 2048 --limit-test 512 --augment none
              --warmup 10 --precise-bn 0 --seed 3 --log-every 1)
  built nsl-train && timeout 120 "$BUILD/nsl-train" "${train_args[@]}" --device cuda --out "$OUT/train_cuda" >"$OUT/train_cuda.log" 2>&1
  cuda_status=$?
  built nsl-train && timeout 150 "$BUILD/nsl-train" "${train_args[@]}" --device cpu --out "$OUT/train_cpu" >"$OUT/train_cpu.log" 2>&1
  cpu_status=$?
  status=1
  if ((cuda_status == 0 && cpu_status == 0)); then
    "$PYTHON" - "$OUT/train_cuda/metrics.jsonl" "$OUT/train_cpu/metrics.jsonl" >"$OUT/train_compare.txt" 2>&1 <<'EOF'
import json, sys
# A run is chaotic: two float32 runs part within a few steps whatever the device (the CPU's
# AVX2 and AVX-512 builds too, docs/training.md), so only the first steps are compared.
gpu, cpu = (json.loads(open(p).readline()) for p in sys.argv[1:3])
steps = [[json.loads(line)["train_loss"] for line in open(p.replace("metrics", "steps"))] for p in sys.argv[1:3]]
ok = True
for k, bound in ((0, 1e-5), (1, 1e-3)):
    diff = abs(steps[0][k] - steps[1][k]) / abs(steps[1][k])
    ok &= diff <= bound
    print(f"loss of step {k + 1}: cuda {steps[0][k]:.7f}  cpu {steps[1][k]:.7f}  relative {diff:.1e} "
          f"(bound {bound:.0e}) {'ok' if diff <= bound else 'DIFFERENT'}")
print("loss of steps 1-8, cuda:", " ".join(f"{v:.5f}" for v in steps[0][:8]))
print("loss of steps 1-8, cpu: ", " ".join(f"{v:.5f}" for v in steps[1][:8]))
for key in ("train_loss", "test_loss", "train_acc", "test_acc"):
    print(f"{key:10s} cuda {gpu[key]:.5f}  cpu {cpu[key]:.5f}  (not compared: the runs have parted by then)")
print(f"images/s   cuda {gpu['images_per_second']:.0f}  cpu {cpu['images_per_second']:.0f}")
sys.exit(0 if ok else 1)
EOF
    status=$?
  fi
  cat "$OUT/train_compare.txt" 2>/dev/null
  record "nsl-train --device cuda against --device cpu" $status $((SECONDS - start))
fi

# ---- profile: GPU time per kernel of one CNN-9 training step -------------------
if want profile; then
  ncu="$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)"
  for variant in plain dynamic_dns; do
    start=$SECONDS
    # At most 2000 kernels (a dynamic_dns step has about 1960; ncu profiles some 100 a second).
    built nsl_bench_cuda && timeout 90 "$ncu" --clock-control none --metrics gpu__time_duration.sum --csv \
      --launch-count 2000 \
      "$BUILD/nsl_bench_cuda" --filter "^cnn9/$variant/" --warmup 1 --repetitions 1 --min-time 1e-9 \
      >"$OUT/ncu_$variant.csv" 2>&1
    record "profile of a $variant step" $? $((SECONDS - start))
  done
fi

echo
cat "$OUT/summary.txt"
exit $failed
