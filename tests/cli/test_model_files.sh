#!/usr/bin/env bash
# Every variant's model file, from nsl-train to every reader: a few training
# steps per variant; nsl-eval's accuracy equals nsl-train's test accuracy on
# the same images; nsl-eval --logits and 05_inference_only (the library's
# load_model, in a build without OpenMP, xsimd or exceptions) give the same
# logits for the first test image, to float rounding of the other kernels;
# 05's deployed network gives the trained logits (its exit status).
# usage: test_model_files.sh NSL_TRAIN NSL_EVAL EXAMPLE_05 FASHION_MNIST_DIR WORK_DIR
set -u
train="$1"
eval="$2"
example="$3"
data="$4"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$5"
python=/usr/bin/python3
[[ -x "$python" ]] || python=python3
images="$data/t10k-images-idx3-ubyte.gz"
[[ -f "$images" ]] || images="$data/t10k-images-idx3-ubyte"

for variant in plain static_dns static_uns dynamic_dns dynamic_uns dynamic_dns_sphere sphere_attention; do
  out="$work/$variant"
  "$train" --variant "$variant" --data "$data" --limit-train 64 --limit-test 16 --batch 32 --threads 2 \
    --log-every 1 --out "$out" > "$work/$variant.train.log" 2>&1
  check "$variant: nsl-train succeeds" test $? -eq 0
  check "$variant: steps.jsonl has a row per step" test "$(wc -l < "$out/steps.jsonl")" -eq 2
  "$eval" --model "$out/model.nslckpt" --data "$data" --limit-test 16 --threads 2 --json "$out/eval.json" \
    --logits "$out/logits.npy" > "$work/$variant.eval.log" 2>&1
  check "$variant: nsl-eval reads the model file" test $? -eq 0
  "$example" "$out/model.nslckpt" "$images" 0 > "$work/$variant.05.log" 2>&1
  check "$variant: 05_inference_only reads it (and its deployed network agrees)" test $? -eq 0
  check "$variant: the same accuracy and logits in nsl-train, nsl-eval and 05" \
    "$python" - "$out" "$work/$variant.05.log" <<'PY'
import json, sys
import numpy as np
out, log = sys.argv[1], sys.argv[2]
trained = [json.loads(l) for l in open(out + "/metrics.jsonl")][-1]["test_acc"]
evaluated = json.load(open(out + "/eval.json"))["accuracy"]
assert trained == evaluated, (trained, evaluated)
logits = np.load(out + "/logits.npy")
assert logits.shape == (16, 10), logits.shape
line = [l for l in open(log) if l.startswith("logits:")][0]
example = np.array([float(v) for v in line.split()[1:]])
scale = max(np.abs(logits[0]).max(), 1e-30)
assert np.abs(example - logits[0]).max() <= 1e-5 * scale, (example, logits[0])
PY
done

if ((failures)); then
  echo "test_model_files: $failures check(s) failed"
  tail -n 5 "$work"/*.log
  exit 1
fi
echo "test_model_files: all checks passed"
