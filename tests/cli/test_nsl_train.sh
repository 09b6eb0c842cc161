#!/usr/bin/env bash
# Command-line tests of nsl-train: usage errors are one clear line and a
# non-zero exit; a resumed run ends with the same checkpoint, bit for bit, as
# an uninterrupted one; --test-both-bn changes nothing but what is tested; a
# run whose numbers go bad stops at the first such step.
# usage: test_nsl_train.sh NSL_TRAIN FASHION_MNIST_DIR WORK_DIR
set -u
train="$1"
data="$2"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$3"

# One line on stderr and a non-zero exit for a usage error.
expect_one_line_error() {  # NAME PATTERN ARGS...
  local name="$1" pattern="$2"; shift 2
  "$train" "$@" > "$work/out.txt" 2> "$work/err.txt"
  local rc=$?
  check "$name: non-zero exit" test "$rc" -ne 0
  check "$name: one line on stderr" test "$(wc -l < "$work/err.txt")" -eq 1
  check "$name: says '$pattern'" grep -q -- "$pattern" "$work/err.txt"
  cat "$work/err.txt"
}
expect_one_line_error "unknown variant" "unknown variant 'nope'" --variant nope --data "$data" --out "$work/x"
expect_one_line_error "missing data directory" "/nonexistent" --data /nonexistent --out "$work/x"
expect_one_line_error "--predictor-gamma on a variant without a predictor BN" "plain has no predictor" \
  --variant plain --predictor-gamma 0 --data "$data" --limit-train 64 --out "$work/x"

# The recipe's start of the predictors' last BatchNorm scale: auto starts the
# dynamic layers plain (--predictor-gamma 0), reference at the paper's 1.
tiny=(--variant dynamic_dns --data "$data" --limit-train 64 --limit-test 32 --batch 32 --threads 2 --seed 7)
"$train" "${tiny[@]}" --out "$work/g_auto" > "$work/g_auto.log" 2>&1
check "dynamic_dns, recipe auto: succeeds" test $? -eq 0
"$train" "${tiny[@]}" --predictor-gamma 0 --out "$work/g0" > "$work/g0.log" 2>&1
"$train" "${tiny[@]}" --predictor-gamma 1 --out "$work/g1" > "$work/g1.log" 2>&1
check "recipe auto: the model of --predictor-gamma 0, byte for byte" cmp "$work/g_auto/model.nslckpt" "$work/g0/model.nslckpt"
check "recipe auto: not the model of --predictor-gamma 1" bash -c "! cmp -s '$work/g_auto/model.nslckpt' '$work/g1/model.nslckpt'"
check "recipe auto: says so" grep -q "predictors' last BN scale started at 0" "$work/g_auto.log"
"$train" "${tiny[@]}" --recipe reference --out "$work/g_ref" > "$work/g_ref.log" 2>&1
check "recipe reference: records a start of 1 in run.json" python3 -c \
  "import json,sys; sys.exit(json.load(open('$work/g_ref/run.json'))['predictor_gamma'] != 1)"
check "metrics.jsonl: the size of G of each of dynamic_dns's 9 dynamic layers" python3 -c "
import json, math, sys
row = json.loads(open('$work/g_auto/metrics.jsonl').readline())
g = row['similarity_magnitude']
sys.exit(not (len(g) == 9 and all(math.isfinite(v) and v > 0 for v in g.values())))"

# The predictors' multiples of the learning rate and of the weight decay: 1
# and 1 are the plain update, bit for bit; 10 x the decay is another run.
expect_one_line_error "--predictor-decay on a variant without a predictor" "plain has no similarity predictor" \
  --variant plain --predictor-decay 10 --data "$data" --limit-train 64 --limit-test 32 --out "$work/x"
"$train" "${tiny[@]}" --predictor-lr 1 --predictor-decay 1 --out "$work/p1" > "$work/p1.log" 2>&1
check "--predictor-lr 1 --predictor-decay 1: the default run, byte for byte" \
  cmp "$work/g_auto/model.nslckpt" "$work/p1/model.nslckpt"
"$train" "${tiny[@]}" --predictor-decay 10 --out "$work/p10" > "$work/p10.log" 2>&1
check "--predictor-decay 10: succeeds" test $? -eq 0
check "--predictor-decay 10: another model" bash -c "! cmp -s '$work/g_auto/model.nslckpt' '$work/p10/model.nslckpt'"
check "--predictor-decay 10: says so" grep -q "their convolutions decay at 10 x" "$work/p10.log"
check "--predictor-decay 10: recorded in run.json" python3 -c \
  "import json,sys; sys.exit(json.load(open('$work/p10/run.json'))['predictor_decay'] != 10)"

# --device cuda: without the CUDA backend, or without a GPU, one clear line;
# with both, it trains (and must then succeed).
"$train" --device cuda --variant plain --data "$data" --limit-train 64 --limit-test 32 --batch 32 \
  --out "$work/cuda" > "$work/cuda.log" 2> "$work/cuda_err.txt"
cuda_rc=$?
if grep -q -e "built without the CUDA backend" -e "no usable CUDA device" -e "no CUDA device present" \
     "$work/cuda_err.txt"; then
  check "--device cuda without CUDA or a GPU: non-zero exit" test "$cuda_rc" -ne 0
  check "--device cuda without CUDA or a GPU: one line on stderr" test "$(wc -l < "$work/cuda_err.txt")" -eq 1
  cat "$work/cuda_err.txt"
else
  check "--device cuda on a GPU trains" test "$cuda_rc" -eq 0
fi

# Resume: 2 epochs straight vs the first epoch (--stop-after 1) + resume for
# the second, same options, seed and threads.
common=(--variant plain --data "$data" --limit-train 96 --limit-test 64 --batch 32 --threads 2 --seed 5)
"$train" "${common[@]}" --epochs 2 --out "$work/straight" > "$work/straight.log" 2>&1
check "uninterrupted run succeeds" test $? -eq 0
"$train" "${common[@]}" --epochs 2 --stop-after 1 --out "$work/resumed" > "$work/first.log" 2>&1
cp "$work/resumed/model.nslckpt" "$work/epoch1.nslckpt"
"$train" "${common[@]}" --epochs 2 --out "$work/resumed" --resume "$work/epoch1.nslckpt" > "$work/second.log" 2>&1
check "resumed run succeeds" test $? -eq 0
check "resumed checkpoint equals the uninterrupted one, byte for byte" \
  cmp "$work/straight/model.nslckpt" "$work/resumed/model.nslckpt"
check "metrics.jsonl has one line per epoch" test "$(wc -l < "$work/resumed/metrics.jsonl")" -eq 2
check "curves.png written" test -s "$work/resumed/curves.png"

# --test-both-bn: both BatchNorm evaluations after every epoch, and a run that
# trains exactly as one without --precise-bn (same losses, same model file).
"$train" "${common[@]}" --epochs 2 --precise-bn 2 --test-both-bn --out "$work/both" > "$work/both.log" 2>&1
check "--test-both-bn run succeeds" test $? -eq 0
"$train" "${common[@]}" --epochs 2 --precise-bn 0 --out "$work/moving" > "$work/moving.log" 2>&1
check "run with the moving averages succeeds" test $? -eq 0
check "--test-both-bn: the same training losses as without --precise-bn" \
  cmp "$work/both/steps.jsonl" "$work/moving/steps.jsonl"
check "--test-both-bn: the same model file, byte for byte" cmp "$work/both/model.nslckpt" "$work/moving/model.nslckpt"
check "--test-both-bn: its moving-average test is the other run's test" python3 - "$work/both/metrics.jsonl" \
  "$work/moving/metrics.jsonl" <<'EOF'
import json, sys
both, moving = ([json.loads(line) for line in open(p)] for p in sys.argv[1:3])
ok = len(both) == len(moving) == 2
for b, m in zip(both, moving):
    ok &= b["test_acc_moving_bn"] == m["test_acc"] and b["test_loss_moving_bn"] == m["test_loss"]
    ok &= "test_acc" in b and b["test_loss"] != m["test_loss"]  # the re-estimated statistics differ
sys.exit(0 if ok else 1)
EOF
expect_one_line_error "--test-both-bn without --precise-bn" "needs --precise-bn" "${common[@]}" --epochs 1 \
  --precise-bn 0 --test-both-bn --out "$work/x"

# --check-numerics (on by default): a learning rate of 1e6 stops the run at
# the first step whose loss or gradients are not finite, before its update,
# in one line naming the step, the first non-finite output and gradient; the
# model file of the last finished epoch stays as it was and resumes.
blow=(--variant plain --data "$data" --limit-train 1024 --limit-test 64 --threads 2 --seed 3 --epochs 3)
"$train" "${blow[@]}" --stop-after 1 --out "$work/blow" > "$work/blow1.log" 2>&1
cp "$work/blow/model.nslckpt" "$work/blow_epoch1.nslckpt"
"$train" "${blow[@]}" --lr 1e6 --out "$work/blow" --resume "$work/blow/model.nslckpt" > "$work/blow2.log" \
  2> "$work/blow2.err"
check "lr 1e6: non-zero exit" test $? -ne 0
check "lr 1e6: one line on stderr" test "$(wc -l < "$work/blow2.err")" -eq 1
check "lr 1e6: names the step, the first non-finite output and gradient" grep -Eq \
  "epoch 2, step [0-9]+: the loss is .*; the first non-finite output is layer '[a-z0-9.]+''s .*; the first non-finite gradient is '[a-z0-9.]+' \(before that step's update\)" \
  "$work/blow2.err"
cat "$work/blow2.err"
check "lr 1e6: the model file is the first epoch's, byte for byte" cmp "$work/blow/model.nslckpt" "$work/blow_epoch1.nslckpt"
"$train" "${blow[@]}" --stop-after 2 --out "$work/blow" --resume "$work/blow/model.nslckpt" > "$work/blow3.log" 2>&1
check "lr 1e6: the kept model file resumes" test $? -eq 0
check "--check-numerics is recorded in run.json" python3 -c \
  "import json,sys; sys.exit(json.load(open('$work/blow/run.json'))['check_numerics'] is not True)"
"$train" "${blow[@]}" --lr 1e6 --no-check-numerics --out "$work/blow_unchecked" --resume "$work/blow_epoch1.nslckpt" \
  > "$work/blow4.log" 2> "$work/blow4.err"
check "--no-check-numerics: only the loss is looked at, after the update" grep -q "the loss became" "$work/blow4.err"

# A corrupted checkpoint is refused with a clear message.
cp "$work/epoch1.nslckpt" "$work/corrupt.nslckpt"
printf '\xff\xff\xff\xff' | dd of="$work/corrupt.nslckpt" bs=1 seek=200 conv=notrunc status=none
expect_one_line_error "corrupted checkpoint" "load_checkpoint" "${common[@]}" --epochs 2 --out "$work/c" \
  --resume "$work/corrupt.nslckpt"

if ((failures)); then
  echo "test_nsl_train: $failures check(s) failed"
  tail -n 20 "$work"/*.log
  exit 1
fi
echo "test_nsl_train: all checks passed"
