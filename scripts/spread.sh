#!/usr/bin/env bash
# How much a short run's result depends on the seed and on the machine's
# order of floating-point sums (docs/training.md, "How chaotic a run is").
#
#   bash scripts/spread.sh [BUILD_DIR ...]      (default: build/release build/avx2)
#
# For each build's nsl-train (e.g. one built with -march=native on an AVX-512
# machine and one with -march=haswell: the two kernel paths), each variant
# (SPREAD_VARIANTS, default "plain dynamic_dns") and each seed (SPREAD_SEEDS,
# default "1 2 3") it trains one epoch on 20 000 Fashion-MNIST images with
# the default recipe and the loss of every step logged, into
# runs/spread/BUILD-VARIANT-sSEED/ (a finished run is kept). Then it prints
# each run's test accuracy, the spread over seeds and paths, and the step at
# which two builds' runs of the same seed part (relative loss difference above
# 1e-3). SPREAD_ARGS adds nsl-train options to every run, and SPREAD_TAG
# (e.g. -g1) goes after the variant in the folder names, so that runs with
# other options do not take the default runs' folders.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
builds=("$@")
((${#builds[@]})) || builds=(build/release build/avx2)
variants=(${SPREAD_VARIANTS:-plain dynamic_dns})
seeds=(${SPREAD_SEEDS:-1 2 3})
extra=(${SPREAD_ARGS:-})
tag="${SPREAD_TAG:-}"
[[ $tag =~ ^[A-Za-z0-9._-]*$ ]] || { echo "spread: SPREAD_TAG '$tag': letters, digits, '.', '_' and '-' only" >&2; exit 1; }
for build in "${builds[@]}"; do
  [[ -x $build/nsl-train ]] || { echo "spread: $build/nsl-train missing (cmake --build $build --target nsl-train)" >&2; exit 1; }
done

for variant in "${variants[@]}"; do
  for seed in "${seeds[@]}"; do
    for build in "${builds[@]}"; do
      out="runs/spread/$(basename "$build")-$variant$tag-s$seed"
      if [[ -s $out/metrics.jsonl ]]; then continue; fi
      echo "spread: $out"
      "$build/nsl-train" --variant "$variant" --epochs 1 --limit-train 20000 --seed "$seed" --threads 2 \
        --log-every 1 "${extra[@]}" --out "$out" >"$out.log" 2>&1 || { echo "spread: $out failed, see $out.log" >&2; exit 1; }
    done
  done
done

SPREAD_TAG="$tag" python3 - "${builds[@]}" -- "${variants[@]}" -- "${seeds[@]}" <<'EOF'
import json, statistics, sys, os
args = sys.argv[1:]
i = args.index("--"); builds = [os.path.basename(b) for b in args[:i]]; rest = args[i + 1:]
j = rest.index("--"); variants, seeds = rest[:j], rest[j + 1:]

def run(build, variant, seed):
    folder = f"runs/spread/{build}-{variant}{os.environ['SPREAD_TAG']}-s{seed}"
    metrics = json.loads(open(f"{folder}/metrics.jsonl").readline())
    losses = [json.loads(line)["train_loss"] for line in open(f"{folder}/steps.jsonl")]
    return metrics["test_acc"] * 100, losses

for variant in variants:
    accuracies = []
    print(f"{variant}{os.environ['SPREAD_TAG']}:")
    for seed in seeds:
        runs = [run(b, variant, seed) for b in builds]
        accuracies += [acc for acc, _ in runs]
        parts = ""
        if len(runs) > 1:
            a, b = runs[0][1], runs[1][1]
            step = next((k + 1 for k, (x, y) in enumerate(zip(a, b)) if abs(x - y) > 1e-3 * abs(y)), None)
            first = abs(a[0] - b[0]) / abs(b[0])
            parts = f"   {builds[0]} and {builds[1]}: step 1 differs by {first:.1e}, part at step {step}"
        print(f"  seed {seed}: " + "  ".join(f"{b} {acc:.2f}%" for b, (acc, _) in zip(builds, runs)) + parts)
    print(f"  mean {statistics.mean(accuracies):.2f}%, min {min(accuracies):.2f}%, max {max(accuracies):.2f}%, "
          f"range {max(accuracies) - min(accuracies):.2f} points over {len(accuracies)} runs")
EOF
