#!/usr/bin/env bash
# mpirun -np N nsl-train (docs/distributed.md): data-parallel training on MPI.
# usage: test_nsl_train_mpi.sh NSL_TRAIN MPIEXEC FASHION_MNIST_DIR WORK_DIR
# Small runs, one thread per rank (oversubscribed on a small machine).
set -uo pipefail
train="$1"; mpiexec="$2"; data="$3"
source "$(dirname "$0")/lib.sh" "$4"
# Open MPI: more ranks than cores, and root allowed (CI containers run as root).
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# (--data and --batch come from each command: a second one is an error)
common=(--limit-train 256 --limit-test 100 --threads 1 --precise-bn 2 --lr 0.01 --log-every 1)
losses() { python3 -c 'import json,sys; print(" ".join(repr(json.loads(l)["train_loss"]) for l in open(sys.argv[1])))' "$1"; }

# 1. The first step's loss of 2 and 4 ranks (synchronised BatchNorm, each
#    rank a quarter or half of the batch) is one process's, but for the order
#    of float sums; later steps part as float training does (chaotic).
"$train" --data "$data" --batch 32 "${common[@]}" --variant dynamic_dns --epochs 1 --out "$work/one" >"$work/one.log" 2>&1
"$mpiexec" -np 2 "$train" --data "$data" --batch 32 "${common[@]}" --variant dynamic_dns --epochs 1 --out "$work/two" >"$work/two.log" 2>&1
check "2 ranks: exit status 0" test $? -eq 0
"$mpiexec" -np 4 "$train" --data "$data" --batch 32 "${common[@]}" --variant dynamic_dns --epochs 1 --out "$work/four" >"$work/four.log" 2>&1
check "4 ranks: exit status 0" test $? -eq 0
first_step_close() {  # first_step_close A B: the first logged losses within 1e-6 relative
  python3 - "$1" "$2" <<'EOF'
import json, sys
a, b = (json.loads(open(p).readline())["train_loss"] for p in sys.argv[1:3])
sys.exit(0 if abs(a - b) <= 1e-6 * abs(b) else 1)
EOF
}
check "2 ranks: the first step's loss is one process's" first_step_close "$work/two/steps.jsonl" "$work/one/steps.jsonl"
check "4 ranks: the first step's loss is one process's" first_step_close "$work/four/steps.jsonl" "$work/one/steps.jsonl"
check "2 ranks: one header line (rank 0 reports)" test "$(grep -c '^nsl-train: dynamic_dns on' "$work/two.log")" -eq 1
check "2 ranks: says so" grep -q "on each of 2 MPI ranks (synchronised BatchNorm)" "$work/two.log"
check "2 ranks: rank 0 wrote the files" test -s "$work/two/model.nslckpt" -a -s "$work/two/metrics.jsonl" \
  -a -s "$work/two/curves.png" -a -s "$work/two/kernel_shapes.png"
check "2 ranks: run.json records the ranks" grep -q '"ranks": 2' "$work/two/run.json"

# One rank is one process: the same model file, bit for bit.
"$mpiexec" -np 1 "$train" --data "$data" --batch 32 "${common[@]}" --variant dynamic_dns --epochs 1 --out "$work/one-rank" \
  >"$work/one-rank.log" 2>&1
check "1 rank: one process's model file" cmp "$work/one/model.nslckpt" "$work/one-rank/model.nslckpt"

# 2. The same command twice: the same model file, bit for bit.
"$mpiexec" -np 2 "$train" --data "$data" --batch 32 "${common[@]}" --variant dynamic_dns --epochs 1 --out "$work/two-again" >"$work/two-again.log" 2>&1
check "2 ranks twice: the same model file" cmp "$work/two/model.nslckpt" "$work/two-again/model.nslckpt"
check "2 ranks twice: the same losses" test "$(losses "$work/two/steps.jsonl")" = "$(losses "$work/two-again/steps.jsonl")"

# 3. Stopped after epoch 1 and resumed: the uninterrupted 2-rank run.
"$mpiexec" -np 2 "$train" --data "$data" --batch 32 "${common[@]}" --variant static_dns --epochs 2 --out "$work/calm" >"$work/calm.log" 2>&1
"$mpiexec" -np 2 "$train" --data "$data" --batch 32 "${common[@]}" --variant static_dns --epochs 2 --stop-after 1 --out "$work/pieces" \
  >"$work/pieces.log" 2>&1
"$mpiexec" -np 2 "$train" --data "$data" --batch 32 "${common[@]}" --variant static_dns --epochs 2 --out "$work/pieces" \
  --resume "$work/pieces/model.nslckpt" >>"$work/pieces.log" 2>&1
check "2 ranks resumed: exit status 0" test $? -eq 0
check "2 ranks resumed: the uninterrupted model file" cmp "$work/calm/model.nslckpt" "$work/pieces/model.nslckpt"
check "2 ranks resumed: the uninterrupted steps.jsonl" cmp "$work/calm/steps.jsonl" "$work/pieces/steps.jsonl"

# 4. Per-rank BatchNorm is another computation.
"$mpiexec" -np 2 "$train" --data "$data" --batch 32 "${common[@]}" --variant dynamic_dns --epochs 1 --no-sync-bn --out "$work/per-rank" \
  >"$work/per-rank.log" 2>&1
check "per-rank BN: exit status 0, and says so" grep -q "(per-rank BatchNorm)" "$work/per-rank.log"
check "per-rank BN: another first step" bash -c "! cmp -s '$work/per-rank/model.nslckpt' '$work/two/model.nslckpt'"

# 5. One rank fed a bad data folder: every rank stops within seconds, with the message.
start=$(date +%s)
timeout 120 "$mpiexec" -np 1 "$train" --data "$data" --batch 32 "${common[@]}" --variant plain --out "$work/bad" : \
  -np 1 "$train" --data "$work/no-such-data" --batch 32 "${common[@]}" --variant plain --out "$work/bad" >"$work/bad.log" 2>&1
status=$?
elapsed=$(($(date +%s) - start))
check "bad data on rank 1: non-zero exit (not the timeout)" test "$status" -ne 0 -a "$status" -ne 124
check "bad data on rank 1: within 60 s" test "$elapsed" -le 60
check "bad data on rank 1: the rank and the file named" grep -q "nsl-train (rank 1 of 2): .*no-such-data" "$work/bad.log"
check "bad data on rank 1: no model file" test ! -e "$work/bad/model.nslckpt"

# 6. Every batch needs an image per rank.
"$mpiexec" -np 4 "$train" --data "$data" --batch 3 --limit-train 6 --limit-test 100 --threads 1 --variant plain \
  --out "$work/small" \
  >"$work/small.log" 2>&1
check "batch smaller than the ranks: non-zero exit" test $? -ne 0
check "batch smaller than the ranks: says why" grep -q "at least one image per rank" "$work/small.log"

if ((failures)); then
  echo "test_nsl_train_mpi: $failures check(s) failed"
  tail -n 5 "$work"/*.log
  exit 1
fi
echo "test_nsl_train_mpi: all checks passed"
