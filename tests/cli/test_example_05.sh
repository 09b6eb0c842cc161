#!/usr/bin/env bash
# Test of examples/05_inference_only: on a small dynamic_dns CNN-9 trained by
# nsl-train, the deployed network gives the trained one's logits and a class,
# from an IDX file and from a .npy image; the program links no OpenMP; a
# missing file is a message, not a crash without one.
# usage: test_example_05.sh NSL_TRAIN EXAMPLE_05 FASHION_MNIST_DIR WORK_DIR
set -euo pipefail
train="$1"
example="$2"
data="$3"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$4"

"$train" --variant dynamic_dns --data "$data" --epochs 1 --limit-train 256 --limit-test 100 --batch 64 --lr 0.01 \
  --threads 2 --out "$work/run" > "$work/train.log" 2>&1 || { cat "$work/train.log"; exit 1; }
ckpt="$work/run/model.nslckpt"
images="$data/t10k-images-idx3-ubyte"
[[ -f $images ]] || images="$images.gz"

rc=0
"$example" "$ckpt" "$images" 3 > "$work/idx.out" 2>&1 || rc=$?
cat "$work/idx.out"
check "IDX image: exit status 0 (deployed logits = trained logits)" test "$rc" -eq 0
check "IDX image: says the network was deployed" grep -q "dynamic_dns CNN-9 deployed (24 layers, 34 before folding)" "$work/idx.out"
check "IDX image: prints a prediction" grep -q "^prediction: class [0-9]" "$work/idx.out"

numpy_python=""
for candidate in /usr/bin/python3 python3; do
  if "$candidate" -c "import numpy" 2>/dev/null; then numpy_python="$candidate"; break; fi
done
if [[ -n $numpy_python ]]; then
  "$numpy_python" - "$work/image.npy" <<'PY'
import sys
import numpy as np
np.save(sys.argv[1], np.linspace(0, 255, 28 * 28, dtype=np.float32).reshape(28, 28))
PY
  rc=0
  "$example" "$ckpt" "$work/image.npy" > "$work/npy.out" 2>&1 || rc=$?
  cat "$work/npy.out"
  check ".npy image: exit status 0 and a prediction" test "$rc" -eq 0 -a -n "$(grep '^prediction' "$work/npy.out")"
else
  echo "skip .npy image: no Python with numpy"
fi
if command -v ldd > /dev/null; then
  check "links no OpenMP runtime" bash -c "! ldd '$example' | grep -q 'libgomp\|libomp'"
fi
rc=0
"$example" "$ckpt" "$work/missing.npy" > "$work/missing.out" 2>&1 || rc=$?
cat "$work/missing.out"
check "missing image: nonzero exit" test "$rc" -ne 0
check "missing image: a message naming the file" grep -q "05_inference_only: .*missing.npy" "$work/missing.out"

echo "test_example_05: $failures failures"
exit $((failures > 0))
