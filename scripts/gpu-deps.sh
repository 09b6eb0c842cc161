#!/usr/bin/env bash
# Gathers, on a development machine, what scripts/gpu-check.sh needs on a GPU
# machine that may lack Debian's packages: the headers of Eigen, xsimd,
# doctest, CLI11 and nlohmann-json, libpng (headers and shared library) and
# the Fashion-MNIST files. About 35 MB.
#   bash scripts/gpu-deps.sh [DIR]     (default build/gpu-deps)
# gpu-check.sh uses DIR (or $NSL_GPU_DEPS) for whatever the GPU machine does
# not have itself.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/build/gpu-deps}"
FASHION="${NSL_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"

need() { [[ -e "$1" ]] || { echo "gpu-deps: $1 is missing (install $2)" >&2; exit 1; }; }
need /usr/include/eigen3/Eigen/Core libeigen3-dev
need /usr/include/xsimd/xsimd.hpp libxsimd-dev
need /usr/include/doctest/doctest.h doctest-dev
need /usr/include/CLI/CLI.hpp libcli11-dev
need /usr/include/nlohmann/json.hpp nlohmann-json3-dev
need /usr/include/png.h libpng-dev
need "$FASHION/train-images-idx3-ubyte.gz" dataset-fashion-mnist

rm -rf "$DEST"
mkdir -p "$DEST/include" "$DEST/lib" "$DEST/fashion-mnist"
cp -r /usr/include/eigen3 "$DEST/include/eigen3"
cp -r /usr/include/xsimd /usr/include/doctest /usr/include/CLI /usr/include/nlohmann "$DEST/include/"
cp /usr/include/png.h /usr/include/pngconf.h /usr/include/pnglibconf.h "$DEST/include/"
cp -L "$(ls /usr/lib/x86_64-linux-gnu/libpng16.so.16 2>/dev/null || ls /usr/lib/*/libpng16.so.16)" "$DEST/lib/libpng16.so.16"
ln -sf libpng16.so.16 "$DEST/lib/libpng.so"
cp "$FASHION"/*-ubyte.gz "$DEST/fashion-mnist/"
du -sh "$DEST"
