#!/usr/bin/env bash
# Gathers, on a development machine, what scripts/gpu-check.sh needs on a GPU
# machine that may lack Debian's packages: the headers of Eigen, xsimd,
# doctest, CLI11 and nlohmann-json, Cairo (headers, and its shared library
# with every library it needs but the C library's own) and the Fashion-MNIST
# files. About 45 MB.
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
need /usr/include/cairo/cairo.h libcairo2-dev
need "$FASHION/train-images-idx3-ubyte.gz" dataset-fashion-mnist

rm -rf "$DEST"
mkdir -p "$DEST/include" "$DEST/lib" "$DEST/fashion-mnist"
cp -r /usr/include/eigen3 "$DEST/include/eigen3"
cp -r /usr/include/xsimd /usr/include/doctest /usr/include/CLI /usr/include/nlohmann "$DEST/include/"
mkdir -p "$DEST/include/cairo"
cp /usr/include/cairo/*.h "$DEST/include/cairo/"
cairo="$(ls /usr/lib/x86_64-linux-gnu/libcairo.so.2 2>/dev/null || ls /usr/lib/*/libcairo.so.2)"
cp -L "$cairo" "$DEST/lib/libcairo.so.2"
ln -sf libcairo.so.2 "$DEST/lib/libcairo.so"
# Cairo's own dependencies (pixman, fontconfig, FreeType, libpng, X11, ...),
# without the C library, the loader and the math library, which every machine has.
ldd "$cairo" | awk '$3 ~ /^\// { print $3 }' | while read -r lib; do
  case "$(basename "$lib")" in libc.so.*|libm.so.*|ld-linux*) continue ;; esac
  cp -L "$lib" "$DEST/lib/"
done
cp "$FASHION"/*-ubyte.gz "$DEST/fashion-mnist/"
du -sh "$DEST"
