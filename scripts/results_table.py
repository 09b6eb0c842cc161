#!/usr/bin/env python3
"""Prints the Markdown results table of nsl-train runs.

Usage: python3 scripts/results_table.py RUN_DIR...

Each RUN_DIR is an nsl-train --out directory: run.json (the command and
settings), metrics.jsonl (one object per epoch) and, if scripts/results.sh
made it, eval_precise_bn.json (nsl-eval --precise-bn 100). One row per run,
sorted by variant, epochs and seed; the accuracies are those after the last
epoch (not the best epoch): with BatchNorm's moving-average statistics (the
recipe) and with statistics re-estimated for the final weights (precise BN);
the time is the sum of the epochs' wall times (training and evaluation).
A run trained with --precise-bn evaluated with re-estimated statistics
already, so its moving-average column is "-", unless it also ran
--test-both-bn, which tests with both. The test loss is the one with the
moving averages (nsl-train's, with its label smoothing), "-" where the run
did not test with them.
"""
import json
import sys
from pathlib import Path

VARIANTS = ["plain", "static_dns", "static_uns", "dynamic_dns", "dynamic_uns", "dynamic_dns_sphere", "sphere_attention"]


def load(run_dir):
    run_dir = Path(run_dir)
    settings = json.loads((run_dir / "run.json").read_text())
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if not epochs:
        raise SystemExit(f"results_table: {run_dir}: metrics.jsonl holds no epoch")
    return settings, epochs


def minutes(seconds):
    return f"{seconds / 60:.1f}"


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    rows = []
    for run_dir in argv[1:]:
        settings, epochs = load(run_dir)
        last = epochs[-1]
        precise = Path(run_dir) / "eval_precise_bn.json"
        precise_acc = f"{100 * json.loads(precise.read_text())['accuracy']:.2f}" if precise.exists() else "-"
        moving_acc, moving_loss = f"{100 * last['test_acc']:.2f}", f"{last['test_loss']:.4f}"
        if settings.get("precise_bn", 0) > 0:  # nsl-train re-estimated the statistics itself
            moving_acc, moving_loss, precise_acc = "-", "-", moving_acc
            if "test_acc_moving_bn" in last:  # --test-both-bn: and tested with the moving averages first
                moving_acc = f"{100 * last['test_acc_moving_bn']:.2f}"
                moving_loss = f"{last['test_loss_moving_bn']:.4f}"
        key = (VARIANTS.index(settings["variant"]) if settings["variant"] in VARIANTS else 99,
               settings["epochs"], settings["seed"])
        rows.append((key, [
            f"`{settings['variant']}`",
            str(settings["seed"]),
            f"{len(epochs)}/{settings['epochs']}",
            f"{settings['lr']} {settings['schedule']}, warm-up {settings['warmup']}",
            moving_acc,
            precise_acc,
            f"{100 * last['train_acc']:.2f}",
            moving_loss,
            minutes(sum(e["seconds"] for e in epochs)),
            f"{sum(e['images_per_second'] for e in epochs) / len(epochs):.0f}",
            f"`{Path(run_dir).name}`",
        ]))
    print("| variant | seed | epochs | lr, schedule | test acc % (moving-average BN) | test acc % (precise BN) "
          "| train acc % | test loss (moving-average BN) | minutes | img/s (train) | run |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for _, cells in sorted(rows):
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv)
