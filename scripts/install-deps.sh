#!/usr/bin/env bash
# Installs the Debian 12 packages nsl's build, tests and demo need.
# A no-op when all are present: apt-get runs only if dpkg-query misses one.
# Usage: bash scripts/install-deps.sh [demo]   (as root, or with sudo available)
#   demo: only what scripts/demo.sh needs (no test framework, benchmark
#         library or PyTorch reference), so the demo starts sooner.
set -euo pipefail

# What the library, nsl-train/nsl-eval/nsl-fewshot and the demo's data need
# (Cairo: nsl-train's pictures; FreeType and the fonts: nsl-fewshot's glyph set).
NSL_DEB_PACKAGES=(
  build-essential
  cmake
  libeigen3-dev
  libxsimd-dev
  zlib1g-dev
  libcli11-dev
  nlohmann-json3-dev
  libcairo2-dev
  dataset-fashion-mnist
  libfreetype-dev
  fonts-noto-core
  fonts-dejavu-core
  fonts-freefont-ttf
)
# Tests and benchmarks: doctest, Google Benchmark, and PyTorch as the outside
# reference (with OpenBLAS, not the slow reference BLAS, under it).
# nsl-export writes ONNX with the ONNX and protobuf C++ libraries (not built
# without them). Its test runs the exported files in ONNX Runtime under node
# (onnxruntime-node, which the test installs into the build tree with npm);
# nodejs and npm are not installed here (NodeSource's nodejs, common on CI
# images, conflicts with Debian's npm): the test is skipped without them.
if [[ "${1:-}" != demo ]]; then
  NSL_DEB_PACKAGES+=(doctest-dev libbenchmark-dev python3-numpy python3-torch libopenblas0-pthread)
  # oneDNN, the library PyTorch's CPU convolutions run on, as a peer in nsl_bench (bench/onednn_peer.cpp).
  # (Its CMake config needs OpenCL's headers, which libdnnl-dev only recommends.)
  NSL_DEB_PACKAGES+=(libdnnl-dev ocl-icd-opencl-dev)
  NSL_DEB_PACKAGES+=(libonnx-dev libprotobuf-dev)
  # scripts/fuzz.sh: the readers' fuzzing harnesses, built with clang's libFuzzer.
  NSL_DEB_PACKAGES+=(clang-16 libfuzzer-16-dev libclang-rt-16-dev)
  # Data-parallel training (nsl/distributed/mpi.hpp, mpirun nsl-train) and its tests.
  NSL_DEB_PACKAGES+=(libopenmpi-dev openmpi-bin)
fi

missing=()
for pkg in "${NSL_DEB_PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)"
  if [[ "$status" != ii* ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#NSL_DEB_PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
as_root=()
if [[ "$(id -u)" != 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "install-deps: missing packages and not root (no sudo): ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"
