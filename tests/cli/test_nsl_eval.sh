#!/usr/bin/env bash
# Command-line tests of nsl-eval: on a tiny model trained by nsl-train, the
# JSON report is consistent (per-class counts, confusion matrix, accuracy),
# the printed accuracy equals the test accuracy nsl-train measured on the
# same images, and bad input (missing, truncated or mismatched checkpoint,
# wrong --dataset, missing data) is one line "nsl-eval: ..." and exit status 1.
# usage: test_nsl_eval.sh NSL_TRAIN NSL_EVAL FASHION_MNIST_DIR WORK_DIR
set -euo pipefail
train="$1"
eval="$2"
data="$3"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$4"

# A tiny model: one epoch on 256 images, tested on the first 200 test images.
rc=0
"$train" --variant plain --data "$data" --epochs 1 --limit-train 256 --limit-test 200 --batch 64 --lr 0.01 \
  --threads 2 --out "$work/run" > "$work/train.log" 2>&1 || rc=$?
check "nsl-train succeeds" test "$rc" -eq 0
if [[ "$rc" -ne 0 || ! -s "$work/run/model.nslckpt" ]]; then
  cat "$work/train.log"
  echo "test_nsl_eval: nsl-train failed, nothing to evaluate"
  exit 1
fi
ckpt="$work/run/model.nslckpt"

rc=0
"$eval" --model "$ckpt" --data "$data" --limit-test 200 --threads 2 --json "$work/eval.json" \
  > "$work/eval.out" 2> "$work/eval.err" || rc=$?
cat "$work/eval.out"
check "nsl-eval succeeds" test "$rc" -eq 0
check "nsl-eval: nothing on stderr" test ! -s "$work/eval.err"

# The JSON report: 10 classes, 200 images, accuracy = trace / total.
json_check() {
  python3 - "$work/eval.json" "$ckpt" <<'EOF'
import json, math, sys
r = json.load(open(sys.argv[1]))
problems = []
def expect(ok, what):
    if not ok: problems.append(what)
expect(r["model"] == sys.argv[2], f"model is {r['model']!r}")
expect(r["variant"] == "plain", f"variant is {r['variant']!r}")
expect(r["dataset"] == "fashion-mnist", f"dataset is {r['dataset']!r}")
expect(r["images"] == 200, f"images is {r['images']}")
pc, cm = r["per_class"], r["confusion"]
expect(len(pc) == 10, f"{len(pc)} per-class entries")
expect([c["class"] for c in pc] == list(range(10)), "classes are not 0..9")
expect(pc[0]["name"] == "T-shirt/top" and pc[9]["name"] == "Ankle boot", "class names")
expect(sum(c["images"] for c in pc) == 200, f"per-class images sum to {sum(c['images'] for c in pc)}")
expect(len(cm) == 10 and all(len(row) == 10 for row in cm), "confusion matrix is not 10 x 10")
total = sum(map(sum, cm))
trace = sum(cm[i][i] for i in range(len(cm)))
expect(total == 200, f"confusion matrix total {total}")
expect(abs(trace / 200 - r["accuracy"]) <= 1e-9, f"trace/200 = {trace / 200}, accuracy {r['accuracy']}")
expect(0 < r["accuracy"] < 1, f"accuracy {r['accuracy']} (a trained model is neither always right nor always wrong)")
for c in pc:
    row = cm[c["class"]]
    expect(sum(row) == c["images"], f"class {c['class']}: row sum {sum(row)}, images {c['images']}")
    if c["images"]:
        expect(abs(row[c["class"]] / c["images"] - c["accuracy"]) <= 1e-9, f"class {c['class']} accuracy")
expect(math.isfinite(r["loss"]) and r["loss"] > 0, f"loss {r['loss']}")
for p in problems: print("   ", p)
sys.exit(1 if problems else 0)
EOF
}
check "JSON report is consistent" json_check

# The printed accuracy is the JSON's and the one nsl-train measured on the same images.
printed=$(sed -n 's/^test accuracy: \([0-9.]*\)%.*/\1/p' "$work/eval.out")
from_json=$(python3 -c 'import json,sys; print("%.2f" % (100 * json.load(open(sys.argv[1]))["accuracy"]))' \
  "$work/eval.json")
from_train=$(python3 -c 'import json,sys; last = open(sys.argv[1]).readlines()[-1]
print("%.2f" % (100 * json.loads(last)["test_acc"]))' "$work/run/metrics.jsonl")
echo "accuracy: printed $printed%, JSON $from_json%, nsl-train's test_acc $from_train%"
check "printed accuracy equals the JSON's" test "$printed" = "$from_json"
check "printed accuracy equals nsl-train's test_acc" test "$printed" = "$from_train"
same_fraction() {
  python3 - "$work/eval.json" "$work/run/metrics.jsonl" <<'EOF'
import json, sys
a = json.load(open(sys.argv[1]))["accuracy"]
b = json.loads(open(sys.argv[2]).readlines()[-1])["test_acc"]
sys.exit(0 if abs(a - b) <= 1e-12 else 1)
EOF
}
check "JSON accuracy equals nsl-train's test_acc exactly" same_fraction
check "per-class table printed" grep -q "Ankle boot" "$work/eval.out"
check "confusion matrix printed" grep -q "^confusion matrix (rows: true class" "$work/eval.out"
check "progress printed" grep -q "^evaluating \[#*\] 1/1 batches" "$work/eval.out"
check "a plain model: no size of G" bash -c "! grep -q similarity_magnitude '$work/eval.json'"

# A dynamic model: the size of G of its 9 dynamic layers, the values nsl-train
# recorded for the same weights and statistics (the moving averages of
# --recipe reference) on the same 100 test images.
rc=0
"$train" --variant dynamic_dns --recipe reference --data "$data" --epochs 1 --limit-train 64 --limit-test 100 \
  --batch 32 --lr 0.01 --threads 2 --out "$work/dyn" > "$work/dyn.log" 2>&1 || rc=$?
check "nsl-train of dynamic_dns succeeds" test "$rc" -eq 0
rc=0
"$eval" --model "$work/dyn/model.nslckpt" --data "$data" --limit-test 100 --threads 2 --json "$work/dyn.json" \
  > "$work/dyn_eval.out" 2>&1 || rc=$?
check "nsl-eval of dynamic_dns succeeds" test "$rc" -eq 0
check "the size of G printed" grep -q "^size of G" "$work/dyn_eval.out"
same_sizes() {
  python3 - "$work/dyn.json" "$work/dyn/metrics.jsonl" <<'EOF'
import json, sys
a = json.load(open(sys.argv[1]))["similarity_magnitude"]
b = json.loads(open(sys.argv[2]).readlines()[-1])["similarity_magnitude"]
print("size of G: nsl-eval", a, "nsl-train", b)
sys.exit(0 if len(a) == 9 and a == b and all(v > 0 for v in a.values()) else 1)
EOF
}
check "the size of G equals nsl-train's, layer for layer" same_sizes

# Bad input: one line "nsl-eval: ..." on stderr mentioning PATTERN, and exit status 1.
expect_one_line_error() {  # NAME PATTERN ARGS...
  local name="$1" pattern="$2"; shift 2
  local rc=0
  "$eval" "$@" > "$work/out.txt" 2> "$work/err.txt" || rc=$?
  check "$name: exit status 1" test "$rc" -eq 1
  check "$name: one line on stderr" test "$(wc -l < "$work/err.txt")" -eq 1
  check "$name: starts with 'nsl-eval:'" grep -q "^nsl-eval: " "$work/err.txt"
  check "$name: says '$pattern'" grep -q -- "$pattern" "$work/err.txt"
  cat "$work/err.txt"
}
expect_one_line_error "missing checkpoint" "cannot open" --model "$work/nope.nslckpt" --data "$data"
head -c 1000 "$ckpt" > "$work/truncated.nslckpt"
expect_one_line_error "truncated checkpoint" "truncated" --model "$work/truncated.nslckpt" --data "$data"
expect_one_line_error "--dataset of another dataset" "trained on fashion-mnist" \
  --model "$ckpt" --data "$data" --dataset cifar10
expect_one_line_error "missing data directory" "/nonexistent" --model "$ckpt" --data /nonexistent --limit-test 10

# Checkpoints that do not fit the network: another variant's metadata, one class fewer.
python3 - "$ckpt" "$work" <<'EOF'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
pos = 12
def u32():
    global pos
    pos += 4
    return struct.unpack_from("<I", data, pos - 4)[0]
def string():
    global pos
    n = u32()
    pos += n
    return data[pos - n:pos]
assert data[:8] == b"NSLCKPT\0"
meta = [(string(), string()) for _ in range(u32())]
tensors = []
for _ in range(u32()):
    name = string()
    rank = data[pos]; pos += 1
    shape = list(struct.unpack_from("<%dQ" % rank, data, pos)); pos += 8 * rank
    n = 1
    for e in shape: n *= e
    tensors.append((name, shape, data[pos:pos + 4 * n])); pos += 4 * n
def save(path, meta, tensors):
    s = lambda b: struct.pack("<I", len(b)) + b
    out = b"NSLCKPT\0" + struct.pack("<II", 1, len(meta)) + b"".join(s(k) + s(v) for k, v in meta)
    out += struct.pack("<I", len(tensors))
    for name, shape, values in tensors:
        out += s(name) + bytes([len(shape)]) + struct.pack("<%dQ" % len(shape), *shape) + values
    open(path, "wb").write(out + struct.pack("<I", zlib.crc32(out)))
save(sys.argv[2] + "/static_dns.nslckpt", [(k, b"static_dns" if k == b"variant" else v) for k, v in meta], tensors)
fewer = []
for name, shape, values in tensors:  # the score conv for 9 classes
    if name in (b"model.score.weight", b"model.score.bias"):
        values = values[:len(values) // shape[0] * (shape[0] - 1)]
        shape = [shape[0] - 1] + shape[1:]
    fewer.append((name, shape, values))
save(sys.argv[2] + "/nine_classes.nslckpt", meta, fewer)
EOF
expect_one_line_error "model file of another variant" "model file has no tensor" \
  --model "$work/static_dns.nslckpt" --data "$data" --limit-test 10
expect_one_line_error "model file with another number of classes" "network expects \[10, 128, 4, 4\]" \
  --model "$work/nine_classes.nslckpt" --data "$data" --limit-test 10

if ((failures)); then
  echo "test_nsl_eval: $failures check(s) failed"
  tail -n 20 "$work/train.log"
  exit 1
fi
echo "test_nsl_eval: all checks passed"
