#!/usr/bin/env bash
# Command-line tests of nsl-curves on run folders made up here: a picture of
# two variants over seeds is written, a run without the metric is left out
# with a note, --by folder and the per-layer similarity_magnitude work, and bad input (no run.json, a line that is not JSON, no run
# with the metric, an unwritable picture) is one line "nsl-curves: ..." and
# exit status 1.
# usage: test_nsl_curves.sh NSL_CURVES WORK_DIR
set -euo pipefail
curves="$1"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$2"

run() {  # run DIR VARIANT SEED ACCURACIES...
  local dir="$work/$1" variant="$2" seed="$3"; shift 3
  mkdir -p "$dir"
  printf '{"variant": "%s", "seed": %s, "epochs": %s}\n' "$variant" "$seed" "$#" > "$dir/run.json"
  : > "$dir/metrics.jsonl"
  local epoch=0
  for acc in "$@"; do
    epoch=$((epoch + 1))
    printf '{"epoch": %d, "test_acc": %s, "test_acc_moving_bn": 0.5, "train_loss": 0.3}\n' "$epoch" "$acc" \
      >> "$dir/metrics.jsonl"
  done
}
run plain-s1 plain 1 0.80 0.88 0.90
run plain-s2 plain 2 0.82 0.86 0.91
run dns-s1 dynamic_dns 1 0.79 0.89 0.92
mkdir -p "$work/old-s1"
printf '{"variant": "plain", "seed": 3}\n' > "$work/old-s1/run.json"
printf '{"epoch": 1, "test_loss": 0.4}\n' > "$work/old-s1/metrics.jsonl"

expect_error() {  # expect_error NAME PATTERN ARGS...
  local name="$1" pattern="$2"; shift 2
  local rc=0
  "$curves" "$@" > "$work/out.txt" 2> "$work/err.txt" || rc=$?
  check "$name: exit status 1" test "$rc" -eq 1
  check "$name: one line naming the problem" grep -q "^nsl-curves: .*$pattern" "$work/err.txt"
  check "$name: nothing written" test ! -e "$work/bad.png"
}

rc=0
"$curves" "$work/plain-s1" "$work/plain-s2" "$work/dns-s1" "$work/old-s1" --out "$work/curves.png" \
  > "$work/out.txt" 2> "$work/err.txt" || rc=$?
cat "$work/out.txt" "$work/err.txt"
check "two variants: succeeds" test "$rc" -eq 0
check "two variants: a PNG" bash -c "head -c 8 '$work/curves.png' | od -An -tx1 | grep -q '89 50 4e 47'"
check "the seeds of each variant are listed" grep -q "plain: seeds 1 2" "$work/out.txt"
check "a run without the metric is left out, with a note" grep -q "old-s1: no test_acc" "$work/err.txt"
rc=0
"$curves" "$work/plain-s1" --metric test_acc_moving_bn --out "$work/moving.png" > /dev/null 2>&1 || rc=$?
check "--metric test_acc_moving_bn" test "$rc" -eq 0 -a -s "$work/moving.png"
check "each line's last epoch: mean and range" grep -q "plain: seeds 1 2; epoch 3: mean 90.5, from 90 to 91" "$work/out.txt"

# --by folder: runs of one variant with other options get a line of their own;
# similarity_magnitude, one number per dynamic layer, is drawn as their mean.
for seed in 1 2; do
  d="$work/dynamic_dns-e1-s$seed-predictor-decay-10"
  mkdir -p "$d"
  printf '{"variant": "dynamic_dns", "seed": %s}\n' "$seed" > "$d/run.json"
  printf '{"epoch": 1, "test_acc": 0.8, "similarity_magnitude": {"a": 0.%s, "b": 0.3}}\n' "$seed" > "$d/metrics.jsonl"
done
rc=0
"$curves" "$work/dns-s1" "$work"/dynamic_dns-e1-s*-predictor-decay-10/ --by folder --out "$work/by.png" \
  > "$work/out.txt" 2> "$work/err.txt" || rc=$?
cat "$work/out.txt"
check "--by folder: succeeds" test "$rc" -eq 0 -a -s "$work/by.png"
check "--by folder: the folder's name without its seed" grep -q "dns: seeds 1;" "$work/out.txt"
check "--by folder: runs with other options apart" grep -q "dynamic_dns-e1-predictor-decay-10: seeds 1 2;" "$work/out.txt"
rc=0
"$curves" "$work"/dynamic_dns-e1-s*-predictor-decay-10 --metric similarity_magnitude --out "$work/g.png" \
  > "$work/out.txt" 2> /dev/null || rc=$?
check "similarity_magnitude: the mean over the layers" grep -q "dynamic_dns: seeds 1 2; epoch 1: mean 0.225, from 0.2 to 0.25" \
  "$work/out.txt"

mkdir -p "$work/empty" "$work/broken"
cp "$work/plain-s1/run.json" "$work/broken/"
printf '{"epoch": 1, "test_acc": 0.5}\nnot json\n' > "$work/broken/metrics.jsonl"
expect_error "no run.json" "empty/run.json: cannot open" "$work/empty" --out "$work/bad.png"
expect_error "a line that is not JSON" "broken/metrics.jsonl:2: not JSON" "$work/broken" --out "$work/bad.png"
mkdir -p "$work/huge"
cp "$work/plain-s1/run.json" "$work/huge/"
printf '{"epoch": 4000000000, "test_acc": 0.5}\n' > "$work/huge/metrics.jsonl"
expect_error "an epoch number out of range" "huge/metrics.jsonl:1: no epoch number" "$work/huge" --out "$work/bad.png"
mkdir -p "$work/layers"
cp "$work/plain-s1/run.json" "$work/layers/"
printf '{"epoch": 1, "similarity_magnitude": {"conv1": "big"}}\n' > "$work/layers/metrics.jsonl"
expect_error "a layer's value that is not a number" "layers/metrics.jsonl:1: similarity_magnitude.conv1 is not a number" \
  "$work/layers" --metric similarity_magnitude --out "$work/bad.png"
expect_error "no run with the metric" "no run has test_acc" "$work/old-s1" --out "$work/bad.png"
expect_error "an unwritable picture" "no/such/dir/bad.png" "$work/plain-s1" --out "$work/no/such/dir/bad.png"

if ((failures)); then
  echo "test_nsl_curves: $failures check(s) failed"
  exit 1
fi
echo "test_nsl_curves: all checks passed"
