#!/usr/bin/env bash
# Runs nsl-train for the results table (docs/RESULTS.md), evaluates each
# model a second time with re-estimated BatchNorm statistics (nsl-eval
# --precise-bn 100, written to eval_precise_bn.json), and prints the table.
# Usage: bash scripts/results.sh VARIANT:EPOCHS:SEED[:EXTRA] ...
#   e.g. bash scripts/results.sh plain:15:1 dynamic_dns:1:1 "plain:3:2:--lr 0.05"
# Each run writes runs/results/VARIANT-eEPOCHS-sSEED[-TAG]/ (run.json,
# metrics.jsonl, model.nslckpt, pictures; TAG is EXTRA without dashes, e.g.
# "lr-0.05") and its console output to train.log there; a run
# whose metrics already hold all its epochs is skipped, a partial one is
# resumed from its checkpoint; a finished run's run.json and metrics.jsonl
# are copied to docs/runs/<its folder>/. Expects build/release/nsl-train (scripts/demo.sh
# builds it). Settings other than the three fields are those of nsl-train's
# --recipe reference (the table's recipe; EXTRA may override any of them).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TRAIN=build/release/nsl-train
EVAL=build/release/nsl-eval
for tool in "$TRAIN" "$EVAL"; do
  [[ -x $tool ]] || { echo "results: $tool missing: run scripts/demo.sh (it builds both) first" >&2; exit 1; }
done
(($# > 0)) || { sed -n '2,9p' "$0" >&2; exit 2; }

# nsl-eval with BatchNorm statistics re-estimated on 100 training batches
# (nsl/train/precise_bn.hpp), once per finished run.
evaluate_precise_bn() {
  local out="$1"
  # nsl-train --precise-bn already tested with re-estimated statistics.
  grep -Eq '"precise_bn": *[1-9]' "$out/run.json" && return 0
  [[ -f $out/eval_precise_bn.json && $out/eval_precise_bn.json -nt $out/model.nslckpt ]] && return 0
  "$EVAL" --model "$out/model.nslckpt" --precise-bn 100 --json "$out/eval_precise_bn.json" >"$out/eval_precise_bn.log" 2>&1
  grep "test accuracy" "$out/eval_precise_bn.log" | sed "s|^|results: $out: precise BN: |"
}

# A finished run's settings and per-epoch results (run.json, metrics.jsonl:
# a few kB) are kept in docs/runs/<run folder>/, committed with the table, so
# that the table's figures can be redrawn (nsl-curves reads these two files)
# where runs/ is not at hand.
keep_record() {
  local out="$1" name
  name=$(basename "$out")
  grep -q . "$out/metrics.jsonl" 2>/dev/null || return 0
  mkdir -p "docs/runs/$name"
  cp "$out/run.json" "$out/metrics.jsonl" "docs/runs/$name/"
}

dirs=()
for spec in "$@"; do
  IFS=: read -r variant epochs seed extra <<<"$spec"
  [[ -n $variant && $epochs =~ ^[0-9]+$ && $seed =~ ^[0-9]+$ ]] ||
    { echo "results: bad run '$spec' (expected VARIANT:EPOCHS:SEED[:EXTRA])" >&2; exit 2; }
  out="runs/results/$variant-e$epochs-s$seed"
  if [[ -n ${extra:-} ]]; then
    tag=$(sed -E 's/(^| )-+/ /g; s/^ +//; s/[^A-Za-z0-9.]+/-/g' <<<"$extra")
    out+="-$tag"
  fi
  dirs+=("$out")
  done_epochs=0
  [[ -f $out/metrics.jsonl ]] && done_epochs=$(grep -c . "$out/metrics.jsonl" || true)
  if ((done_epochs >= epochs)); then
    echo "results: $out: all $epochs epochs done"
    evaluate_precise_bn "$out"
    keep_record "$out"
    continue
  fi
  args=(--variant "$variant" --epochs "$epochs" --seed "$seed" --recipe reference --out "$out")
  # shellcheck disable=SC2206  # EXTRA is a list of options
  [[ -n ${extra:-} ]] && args+=($extra)
  if ((done_epochs > 0)) && [[ -f $out/model.nslckpt ]]; then
    args+=(--resume "$out/model.nslckpt")
  fi
  mkdir -p "$out"
  echo "results: $TRAIN ${args[*]}   (log: $out/train.log)"
  "$TRAIN" "${args[@]}" >>"$out/train.log" 2>&1
  tail -n 1 "$out/train.log"
  evaluate_precise_bn "$out"
  keep_record "$out"
done

python3 scripts/results_table.py "${dirs[@]}"
