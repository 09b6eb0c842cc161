#!/usr/bin/env bash
# Runs nsl-fewshot for the few-shot table of docs/RESULTS.md and prints it.
# Usage: bash scripts/fewshot.sh [BACKBONE:HEAD[:EXTRA] ...]
#   default: plain and dynamic_dns Conv-4, each with the euclidean, cosine,
#   static_ns and dynamic_ns heads (8 runs); e.g. "plain:static_ns:--rank 16"
#   adds nsl-fewshot options.
# Each run writes runs/fewshot/BACKBONE-HEAD[-TAG]/ (TAG is EXTRA without
# dashes, e.g. "rank-16"; run.json, metrics.jsonl,
# results.json, model.nslckpt) and its console output to train.log there;
# a run with a results.json is skipped. Every run meta-trains with
# nsl-fewshot's defaults (400 episodes of 20-way 5-shot, 5 queries per
# class) and meta-tests on the same 1000 episodes of each of 5w1s, 5w5s and
# 20w1s (15 queries per class). Expects build/release/nsl-fewshot
# (cmake --build build/release --target nsl-fewshot).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
FEWSHOT=build/release/nsl-fewshot
[[ -x $FEWSHOT ]] || { echo "fewshot: $FEWSHOT missing: build it first (see the top of this script)" >&2; exit 1; }

runs=("$@")
if ((${#runs[@]} == 0)); then
  for backbone in plain dynamic_dns; do
    for head in euclidean cosine static_ns dynamic_ns; do runs+=("$backbone:$head"); done
  done
fi
dirs=()
for run in "${runs[@]}"; do
  IFS=: read -r backbone head extra <<<"$run"
  [[ -n $backbone && -n $head ]] || { echo "fewshot: bad run '$run' (expected BACKBONE:HEAD[:EXTRA])" >&2; exit 2; }
  out="runs/fewshot/$backbone-$head"
  if [[ -n $extra ]]; then
    tag="$(echo "$extra" | sed -E 's/^-+//; s/ +-*/-/g')"
    out="$out-$tag"
  fi
  dirs+=("$out")
  if [[ -f $out/results.json ]]; then
    echo "fewshot: $out done, skipped"
    continue
  fi
  mkdir -p "$out"
  echo "fewshot: $backbone Conv-4, $head head -> $out"
  start=$(date +%s)
  # shellcheck disable=SC2086  # EXTRA is a list of options
  "$FEWSHOT" --backbone "$backbone" --head "$head" $extra --out "$out" > "$out/train.log" 2>&1 ||
    { echo "fewshot: $out failed; see $out/train.log" >&2; tail -3 "$out/train.log" >&2; exit 1; }
  echo "fewshot: $out: $(( $(date +%s) - start )) s"
  grep -E "^[0-9]+w[0-9]+s" "$out/train.log" | sed "s|^|fewshot:   |"
done

python3 - "${dirs[@]}" <<'PY'
import json, sys
settings = ["5w1s", "5w5s", "20w1s"]
print("| Conv-4 | head | " + " | ".join(settings) + " | meta-train | meta-test |")
print("|---|---|" + "---|" * (len(settings) + 2))
for d in sys.argv[1:]:
    try:
        r = json.load(open(d + "/results.json"))
    except OSError:
        continue
    run = json.load(open(d + "/run.json"))
    head = r["head"] + (f" (rank {run['rank']})" if r["head"] == "static_ns" else "")
    by = {t["setting"]: t for t in r["tests"]}
    cells = [f"{100 * by[s]['accuracy']:.2f} ± {100 * by[s]['ci95']:.2f}" if s in by else "–" for s in settings]
    m, s = divmod(round(r["train_seconds"]), 60)
    print(f"| {r['backbone']} | {head} | " + " | ".join(cells) + f" | {m}:{s:02d} | {round(r['test_seconds'])} s |")
PY
