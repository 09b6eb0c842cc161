#!/usr/bin/env bash
# Command-line tests of nsl-train when the machine lets it down: a full file
# system (a small tmpfs for the model file and the pictures, /dev/full for
# the logs), an unwritable output directory, SIGKILL at random moments,
# during checkpoint writes included, and SIGINT / SIGTERM. Each failure ends in one line naming
# the path and a non-zero exit; the model file on disk is always whole, the
# last finished epoch's, and resuming from it ends where an uninterrupted
# run ends, byte for byte.
# The tmpfs cases need mount (root); without it they say "skip" and the rest
# runs.
# usage: test_nsl_train_failures.sh NSL_TRAIN NSL_EVAL FASHION_MNIST_DIR WORK_DIR
set -u
train="$1"
eval_="$2"
data="$3"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$4"

mounts=()
cleanup() {
  for m in "${mounts[@]}"; do umount "$m" 2>/dev/null; done
}
trap cleanup EXIT
# mount_tmpfs DIR BYTES [ro]: a tmpfs of BYTES at DIR; false where mount is not allowed.
mount_tmpfs() {
  mkdir -p "$1"
  mount -t tmpfs -o "size=$2${3:+,$3}" tmpfs "$1" 2>/dev/null || return 1
  mounts+=("$1")
}
# The run failed in one line on stderr that says PATTERN.
expect_failure() {  # NAME RC ERR_FILE PATTERN
  check "$1: non-zero exit" test "$2" -ne 0
  check "$1: one line on stderr" test "$(wc -l < "$3")" -eq 1
  check "$1: says '$4'" grep -q -- "$4" "$3"
  cat "$3"
}
loads() {  # MODEL: nsl-eval reads it and tests it
  "$eval_" --model "$1" --data "$data" --limit-test 16 --threads 2 > /dev/null 2>&1
}

tiny1=(--variant plain --data "$data" --limit-train 256 --limit-test 64 --batch 64 --threads 2 --seed 9)
tiny=("${tiny1[@]}" --epochs 2)
"$train" "${tiny[@]}" --stop-after 1 --out "$work/ref" > "$work/ref.log" 2>&1
check "reference run (epoch 1 of 2) succeeds" test $? -eq 0
size=$(stat -c %s "$work/ref/model.nslckpt")

# ---- a full file system -------------------------------------------------------
# Room for one model file and a half: epoch 1's is written, epoch 2's
# temporary file runs out of space.
if mount_tmpfs "$work/full" $((size * 3 / 2 + 65536)); then
  "$train" "${tiny[@]}" --out "$work/full/run" > "$work/full.log" 2> "$work/full.err"
  expect_failure "full disk at the second model file" $? "$work/full.err" "model.nslckpt: write error on temporary file"
  check "full disk: says why" grep -q "No space left on device" "$work/full.err"
  check "full disk: the model file is epoch 1's, byte for byte" cmp "$work/full/run/model.nslckpt" "$work/ref/model.nslckpt"
  check "full disk: no temporary file is left" bash -c "! compgen -G '$work/full/run/*.tmp-*' > /dev/null"
  check "full disk: the model file loads" loads "$work/full/run/model.nslckpt"
else
  echo "skip: full disk at the model file (mount -t tmpfs is not allowed here)"
fi
# Room for the model file but not the picture after it (about 17 kB; the
# 4 kB pages left after the model file, run.json and metrics.jsonl: 2).
if mount_tmpfs "$work/nopicture" $((size + 16384)); then
  "$train" "${tiny1[@]}" --epochs 1 --out "$work/nopicture/run" > "$work/nopicture.log" 2> "$work/nopicture.err"
  expect_failure "full disk at the picture" $? "$work/nopicture.err" "curves.png"
  check "full disk at the picture: the model file was written and loads" loads "$work/nopicture/run/model.nslckpt"
else
  echo "skip: full disk at the picture (mount -t tmpfs is not allowed here)"
fi
# The logs on a full device: /dev/full takes no byte.
mkdir -p "$work/devfull"
ln -sf /dev/full "$work/devfull/steps.jsonl"
"$train" "${tiny[@]}" --log-every 1 --out "$work/devfull" > "$work/devfull.log" 2> "$work/devfull.err"
expect_failure "steps.jsonl on a full device" $? "$work/devfull.err" "steps.jsonl: write failed (No space left on device)"
rm -rf "$work/devfull2" && mkdir -p "$work/devfull2"
ln -sf /dev/full "$work/devfull2/metrics.jsonl"
"$train" "${tiny[@]}" --log-every 1000 --out "$work/devfull2" > "$work/devfull2.log" 2> "$work/devfull2.err"
expect_failure "metrics.jsonl on a full device" $? "$work/devfull2.err" "metrics.jsonl: write failed (No space left on device)"
check "metrics.jsonl on a full device: no model file for the epoch it could not record" \
  test ! -e "$work/devfull2/model.nslckpt"

# ---- an unwritable output directory -------------------------------------------
if mount_tmpfs "$work/readonly" 1048576 ro; then
  "$train" "${tiny[@]}" --out "$work/readonly/run" > "$work/readonly.log" 2> "$work/readonly.err"
  expect_failure "read-only output directory" $? "$work/readonly.err" "$work/readonly/run: cannot create the output directory (Read-only file system)"
else
  echo "skip: read-only output directory (mount -t tmpfs is not allowed here)"
fi
touch "$work/a_file"
"$train" "${tiny[@]}" --out "$work/a_file/run" > "$work/notdir.log" 2> "$work/notdir.err"
expect_failure "output directory under a file" $? "$work/notdir.err" "$work/a_file/run: cannot create the output directory"

# ---- SIGKILL at random moments --------------------------------------------------
# Three epochs straight, against the same run killed again and again (after
# a random time, or the moment a model file's temporary file appears, that
# is while it is written) and resumed from whatever model file is on disk.
crash=(--variant plain --data "$data" --limit-train 768 --limit-test 64 --batch 64 --threads 2 --seed 4 --epochs 3)
"$train" "${crash[@]}" --out "$work/straight" > "$work/straight.log" 2>&1
check "uninterrupted run succeeds" test $? -eq 0
out="$work/killed"
rm -rf "$out"
RANDOM=20261205  # the same kill times on every run of the test
kills=0 mid_write=0
for attempt in 1 2 3 4 5 6 7 8; do
  resume=()
  [[ -f $out/model.nslckpt ]] && resume=(--resume "$out/model.nslckpt")
  "$train" "${crash[@]}" --out "$out" "${resume[@]}" > "$work/killed_$attempt.log" 2>&1 &
  pid=$!
  if ((attempt % 2)); then  # a random moment
    sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
    sleep $((RANDOM % 3))
  else                      # while a model file is written
    while kill -0 "$pid" 2>/dev/null && ! compgen -G "$out/model.nslckpt.tmp-*" > /dev/null; do :; done
  fi
  if kill -9 "$pid" 2>/dev/null; then
    kills=$((kills + 1))
    ((attempt % 2)) || mid_write=$((mid_write + 1))
  fi
  wait "$pid" 2>/dev/null
  if [[ -f $out/model.nslckpt ]]; then
    check "after kill $attempt: the model file on disk loads" loads "$out/model.nslckpt"
  fi
done
echo "killed $kills times, $mid_write of them while a model file was written"
check "the run was killed at least 6 times" test "$kills" -ge 6
check "at least twice while a model file was written" test "$mid_write" -ge 2
resume=()
[[ -f $out/model.nslckpt ]] && resume=(--resume "$out/model.nslckpt")
"$train" "${crash[@]}" --out "$out" "${resume[@]}" > "$work/killed_last.log" 2>&1
check "the last resume finishes" test $? -eq 0
check "killed and resumed: the model file of the uninterrupted run, byte for byte" \
  cmp "$out/model.nslckpt" "$work/straight/model.nslckpt"
check "killed and resumed: no temporary file is left" bash -c "! compgen -G '$out/*.tmp-*' > /dev/null"

# ---- SIGINT and SIGTERM ------------------------------------------------------------
# An interrupt finishes the step, writes a model file from which --resume goes
# on inside the epoch, and says so in one line; interrupted twice (SIGINT in
# epoch 1, SIGTERM in epoch 2) and resumed, the run ends with the
# uninterrupted run's model file, steps.jsonl and metrics.jsonl.
steps=("${crash[@]}" --log-every 1)
"$train" "${steps[@]}" --out "$work/calm" > "$work/calm.log" 2>&1
check "uninterrupted run, a log row per step, succeeds" test $? -eq 0
rows() {  # FILE: its lines, 0 if it is missing
  local n=0
  [[ -f $1 ]] && n=$(grep -c . "$1")
  echo "${n:-0}"
}
out="$work/interrupted"
rm -rf "$out"
signal_at() {  # SIGNAL ROWS [ARGS...]: starts the run, signals it once steps.jsonl has ROWS rows
  local signal="$1" at="$2"; shift 2
  "$train" "${steps[@]}" --out "$out" "$@" > "$work/$signal.log" 2> "$work/$signal.err" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null && (($(rows "$out/steps.jsonl") < at)); do sleep 0.05; done
  kill -"$signal" "$pid"
  wait "$pid"
}
signal_at INT 5
rc=$?
check "SIGINT: exit status 130" test "$rc" -eq 130
expect_failure "SIGINT in epoch 1" $rc "$work/INT.err" "interrupted by SIGINT after step [0-9]* (epoch 1, batch [0-9]* of 12)"
check "SIGINT: says how to go on" grep -q "run the same command with --resume $out/model.nslckpt" "$work/INT.err"
check "SIGINT: the model file loads" loads "$out/model.nslckpt"
signal_at TERM 17 --resume "$out/model.nslckpt"
rc=$?
expect_failure "SIGTERM in epoch 2" $rc "$work/TERM.err" "interrupted by SIGTERM after step [0-9]* (epoch 2, batch [0-9]* of 12)"
check "SIGTERM: exit status 143" test "$rc" -eq 143
check "SIGTERM: resumed inside epoch 1" grep -q "resuming epoch 1 after its batch" "$work/TERM.log"
"$train" "${steps[@]}" --out "$out" --resume "$out/model.nslckpt" > "$work/after.log" 2>&1
check "resumed after the interrupts: succeeds" test $? -eq 0
check "resumed inside epoch 2" grep -q "resuming epoch 2 after its batch" "$work/after.log"
check "interrupted twice: the uninterrupted model file, byte for byte" cmp "$out/model.nslckpt" "$work/calm/model.nslckpt"
check "interrupted twice: the uninterrupted steps.jsonl" cmp "$out/steps.jsonl" "$work/calm/steps.jsonl"
check "interrupted twice: the uninterrupted metrics (all but the times)" python3 - "$out/metrics.jsonl" \
  "$work/calm/metrics.jsonl" <<'EOF'
import json, sys
a, b = ([json.loads(line) for line in open(p)] for p in sys.argv[1:3])
drop = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in rows]
sys.exit(0 if len(a) == 3 and drop(a) == drop(b) else 1)
EOF

if ((failures)); then
  echo "test_nsl_train_failures: $failures check(s) failed"
  tail -n 5 "$work"/*.log
  exit 1
fi
echo "test_nsl_train_failures: all checks passed"
