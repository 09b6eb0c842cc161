#!/usr/bin/env bash
# nsl-export against ONNX Runtime. For every CNN-9 variant: a training step
# with nsl-train, the model exported with nsl-export, the first 64 test
# images through nsl-eval --logits (the trained network, not deployed) and
# through ONNX Runtime (node + onnxruntime-node, CPU) on the exported file:
# the logits agree to 1e-4 of the largest |logit| and every image gets the
# same class. The same for a Conv-4 model file (its embedding) and for small
# networks with the layer forms the trained variants do not export
# (onnx_export_cases layers). Errors: a bad or missing model file and an
# output that cannot be written are one line "nsl-export: ..." on stderr,
# exit status 1, and no .onnx (nor a temporary file) left behind.
#
# ONNX Runtime is installed into ORT_DIR (the build tree) on the first run:
#   npm install --ignore-scripts --prefix ORT_DIR onnxruntime-node
# Without node or npm, or when the install fails, the test is skipped (exit 77).
# usage: test_onnx_export.sh NSL_TRAIN NSL_EVAL NSL_EXPORT ONNX_EXPORT_CASES FASHION_MNIST_DIR WORK_DIR ORT_DIR
set -u
train="$1"
eval="$2"
export_="$3"
cases="$4"
data="$5"
ort="$7"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../cli/lib.sh
source "$here/../cli/lib.sh" "$6"
start=$SECONDS
tolerance=1e-4

# ---- ONNX Runtime ----------------------------------------------------------------
if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
  echo "SKIP: node or npm not found (Debian: apt-get install nodejs npm); ONNX Runtime cannot run"
  exit 77
fi
if [[ ! -f "$ort/node_modules/onnxruntime-node/package.json" ]]; then
  echo "installing onnxruntime-node into $ort"
  if ! npm install --ignore-scripts --no-audit --no-fund --prefix "$ort" onnxruntime-node > "$work/npm.log" 2>&1; then
    tail -n 5 "$work/npm.log"
    echo "SKIP: npm install onnxruntime-node failed (offline?)"
    exit 77
  fi
fi
export NODE_PATH="$ort/node_modules"
if ! node -e "require('onnxruntime-node')" > "$work/ort.log" 2>&1; then
  tail -n 5 "$work/ort.log"
  echo "SKIP: onnxruntime-node does not load on this machine"
  exit 77
fi
echo "ONNX Runtime: onnxruntime-node $(node -p "require('onnxruntime-node/package.json').version")"

# one_line_error LOG: the command's stderr is exactly one line "nsl-export: ..."
one_line_error() { [[ "$(wc -l < "$1")" -eq 1 ]] && grep -q '^nsl-export: ' "$1"; }
# nothing_left PATH: no PATH and no temporary file beside it
nothing_left() { ! compgen -G "$1*" > /dev/null; }
# ort_agrees NAME MODEL INPUT REFERENCE [--argmax]: ONNX Runtime's output equals REFERENCE
ort_agrees() {
  if ! node "$here/run_ort.js" "$2" "$3" "$work/$1.ort.npy" > "$work/$1.ort.log" 2>&1; then
    cat "$work/$1.ort.log"
    return 1
  fi
  local line rc=0
  line="$(node "$here/compare_npy.js" "$4" "$work/$1.ort.npy" "$tolerance" "${@:5}" "$1")" || rc=$?
  echo "$line"
  echo "$line" >> "$work/summary.txt"
  return "$rc"
}

# ---- every variant of CNN-9 --------------------------------------------------------------
"$cases" images "$data" 64 "$work/images.npy" > "$work/images.log" 2>&1
check "the first 64 test images as .npy" test $? -eq 0
for variant in plain static_dns static_uns dynamic_dns dynamic_uns dynamic_dns_sphere sphere_attention; do
  out="$work/$variant"
  # One step, no warm-up: weights and BN statistics away from their initial values.
  "$train" --variant "$variant" --data "$data" --limit-train 32 --limit-test 1 --batch 32 --warmup 0 --lr 0.01 \
    --threads 2 --out "$out" > "$work/$variant.train.log" 2>&1
  check "$variant: nsl-train succeeds" test $? -eq 0
  "$eval" --model "$out/model.nslckpt" --data "$data" --limit-test 64 --threads 2 --logits "$out/logits.npy" \
    > "$work/$variant.eval.log" 2>&1
  check "$variant: nsl-eval writes the logits" test $? -eq 0
  "$export_" "$out/model.nslckpt" "$out/model.onnx" > "$work/$variant.export.log" 2> "$work/$variant.export.err"
  check "$variant: nsl-export succeeds (the checker passes)" test $? -eq 0 -a ! -s "$work/$variant.export.err"
  check "$variant: ONNX Runtime's logits = nsl-eval's (to $tolerance), same classes" \
    ort_agrees "$variant" "$out/model.onnx" "$work/images.npy" "$out/logits.npy" --argmax
done

# ---- a Conv-4 embedding ---------------------------------------------------------------------
"$cases" conv4 "$work/images.npy" "$work" > "$work/conv4.log" 2>&1
check "conv4: a Conv-4 dynamic_dns model file and its embeddings" test $? -eq 0
"$export_" "$work/conv4.nslckpt" "$work/conv4.onnx" > "$work/conv4.export.log" 2>&1
check "conv4: nsl-export succeeds" test $? -eq 0
check "conv4: the graph's output is 'embedding'" grep -q "output embedding \[N, 256\]" "$work/conv4.export.log"
check "conv4: ONNX Runtime's embedding = nsl's (to $tolerance)" \
  ort_agrees conv4 "$work/conv4.onnx" "$work/images.npy" "$work/conv4.expected.npy"

# ---- layer forms the trained variants do not export --------------------------------------
mkdir -p "$work/cases"
"$cases" layers "$work/cases" > "$work/cases.log" 2>&1
check "onnx_export_cases layers: every case exported, an unknown layer refused" test $? -eq 0
for name in sphere_forms dynamic_dns dynamic_uns attention; do
  check "case $name: ONNX Runtime = nsl's inference (to $tolerance)" \
    ort_agrees "case_$name" "$work/cases/$name.onnx" "$work/cases/$name.input.npy" "$work/cases/$name.expected.npy"
done
check "case unknown_layer: the error names the layer" \
  grep -q "layer 'classifier' (Linear(4->2)) has no ONNX form" "$work/cases.log"

# ---- errors --------------------------------------------------------------------------------
model="$work/plain/model.nslckpt"
printf 'not a model file\n' > "$work/bad.nslckpt"
"$export_" "$work/bad.nslckpt" "$work/bad.onnx" > /dev/null 2> "$work/bad.err"
check "a bad model file: exit status 1" test $? -eq 1
check "a bad model file: one line on stderr" one_line_error "$work/bad.err"
check "a bad model file: no .onnx left" nothing_left "$work/bad.onnx"
"$export_" "$work/missing.nslckpt" "$work/missing.onnx" > /dev/null 2> "$work/missing.err"
check "a missing model file: exit status 1, one line" test $? -eq 1 -a "$(wc -l < "$work/missing.err")" -eq 1
check "a missing model file: no .onnx left" nothing_left "$work/missing.onnx"
printf 'previous\n' > "$work/kept.onnx"
"$export_" "$work/bad.nslckpt" "$work/kept.onnx" > /dev/null 2>&1
check "a failed export leaves an existing file as it was" test "$(cat "$work/kept.onnx")" = previous
"$export_" "$model" "$work/no-such-dir/model.onnx" > /dev/null 2> "$work/nodir.err"
check "an output in a missing directory: exit status 1, one line" test $? -eq 1 -a "$(wc -l < "$work/nodir.err")" -eq 1
check "an output in a missing directory: nothing written" test ! -e "$work/no-such-dir"
mkdir -p "$work/a-directory"
"$export_" "$model" "$work/a-directory" > /dev/null 2> "$work/isdir.err"
check "an output that is a directory: exit status 1, one line" one_line_error "$work/isdir.err"
check "an output that is a directory: it stays empty" test -z "$(ls -A "$work/a-directory")"
if [[ "$(id -u)" -ne 0 ]]; then  # root writes into read-only directories
  mkdir -p "$work/read-only" && chmod 555 "$work/read-only"
  "$export_" "$model" "$work/read-only/model.onnx" > /dev/null 2> "$work/ro.err"
  check "an unwritable directory: exit status 1, one line" test $? -eq 1 -a "$(wc -l < "$work/ro.err")" -eq 1
  check "an unwritable directory: nothing left" test -z "$(ls -A "$work/read-only")"
  chmod 755 "$work/read-only"
fi
"$export_" "$model" /proc/nsl-export-test.onnx > /dev/null 2> "$work/proc.err"
check "an output path that cannot be created (/proc): exit status 1, one line" one_line_error "$work/proc.err"
"$export_" --help > "$work/help.log" 2>&1
check "--help explains the input and the outputs" grep -q '"logits" float32 \[N, classes\]' "$work/help.log"

echo "--- summary ($((SECONDS - start)) s) ---"
cat "$work/summary.txt"
if ((failures)); then
  echo "test_onnx_export: $failures check(s) failed"
  tail -n 3 "$work"/*.err "$work"/*.log 2> /dev/null
  exit 1
fi
echo "test_onnx_export: all checks passed"
