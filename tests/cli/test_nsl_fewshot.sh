#!/usr/bin/env bash
# Command-line tests of nsl-fewshot on a small glyph set (7 writing systems,
# 20 characters each, 10 renders): a short meta-training beats chance on the
# evaluation systems by a clear margin, the results file is consistent,
# meta-testing a saved model again gives the same accuracy, and bad input
# (no fonts, an impossible setting, a mismatched checkpoint) is one line
# "nsl-fewshot: ..." and exit status 1.
# usage: test_nsl_fewshot.sh NSL_FEWSHOT WORK_DIR
set -euo pipefail
fewshot="$1"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$2"

small=(--scripts "Latin,Greek,Cyrillic,Armenian,Georgian,Cherokee,Tifinagh" --max-per-script 20 --renders 10
       --cache "$work/cache" --threads 2)
rc=0
"$fewshot" "${small[@]}" --backbone plain --head static_ns --rank 4 --episodes 60 --ways 10 --shots 1 --queries 4 \
  --lr 0.05 --warmup 10 --test 5w1s,5w5s --test-episodes 100 --test-queries 5 --out "$work/run" \
  > "$work/train.log" 2>&1 || rc=$?
cat "$work/train.log"
check "nsl-fewshot succeeds" test "$rc" -eq 0
[[ "$rc" -eq 0 ]] || exit 1
check "the glyph set was rendered into the cache" grep -q "rendered 140 characters of 7 writing systems" "$work/train.log"
check "metrics.jsonl has one row per tenth of the run" test "$(wc -l < "$work/run/metrics.jsonl")" -eq 10
accuracy() {  # accuracy RESULTS.json SETTING
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print([t['accuracy'] for t in r['tests'] if t['setting']==sys.argv[2]][0])" "$1" "$2"
}
a1="$(accuracy "$work/run/results.json" 5w1s)"
a5="$(accuracy "$work/run/results.json" 5w5s)"
echo "5-way 1-shot accuracy $a1, 5-shot $a5 (chance 0.2)"
check "5-way 1-shot beats chance (0.2) by a clear margin (>= 0.5)" python3 -c "import sys; sys.exit(not $a1 >= 0.5)"
check "5 shots do better than 1" python3 -c "import sys; sys.exit(not $a5 > $a1)"
check "results.json counts 100 episodes and a confidence interval" python3 -c "
import json; r = json.load(open('$work/run/results.json'))
t = r['tests'][0]; assert t['episodes'] == 100 and 0 < t['ci95'] < 0.1 and r['evaluation_classes'] == 40, r"

# Meta-testing the saved model again: the same episodes, the same accuracy.
rc=0
"$fewshot" "${small[@]}" --backbone plain --head static_ns --rank 4 --episodes 0 --load "$work/run/model.nslckpt" \
  --test 5w1s,5w5s --test-episodes 100 --test-queries 5 --out "$work/again" > "$work/again.log" 2>&1 || rc=$?
check "meta-testing a checkpoint succeeds, from the cache" test "$rc" -eq 0 -a -n "$(grep 'read 140 characters' "$work/again.log")"
check "and gives the same accuracy" test "$(accuracy "$work/again/results.json" 5w1s)" = "$a1"

fails_with() {  # fails_with NAME PATTERN ARGS...: exit status 1 and one line "nsl-fewshot: ...PATTERN..."
  local name="$1" pattern="$2"; shift 2
  local rc=0
  "$fewshot" "$@" > "$work/fail.out" 2> "$work/fail.err" || rc=$?
  check "$name: exit status 1" test "$rc" -eq 1
  check "$name: says '$pattern'" grep -q "^nsl-fewshot: .*$pattern" "$work/fail.err"
  cat "$work/fail.err"
}
mkdir -p "$work/no-fonts"
fails_with "no fonts" "no font files" --fonts "$work/no-fonts" --cache "$work/cache2" --episodes 1 --out "$work/f1"
fails_with "more ways than classes" "40 classes" "${small[@]}" --episodes 0 --test 41w1s --out "$work/f2"
fails_with "more shots than renders" "10 renders per class" "${small[@]}" --episodes 1 --shots 8 --queries 5 --out "$work/f3"
fails_with "bad setting" "expected settings like" "${small[@]}" --episodes 0 --test 5x1 --out "$work/f4"
fails_with "mismatched model file" "not a conv4 (plain) with the euclidean head" "${small[@]}" --head euclidean --episodes 0 --test-queries 5 \
  --load "$work/run/model.nslckpt" --out "$work/f5"

echo "test_nsl_fewshot: $failures failures"
exit $((failures > 0))
