"""Leave-one-source-out learning curves: what a CPU-hour of training buys with each encoder (issue 31).

    python bench/loso_curves.py [--runs runs/loso_lite0 runs/loso_lite2] [--out bench/results/loso_encoders.json]

Reads the CSV logs of the runs of ``configs/loso_*.yaml`` (trained from ImageNet on every source but the
held-out ones: shanghai, inria_austin and the Inria crops of benchmark_samples) and, per validation
(one per epoch of 50 steps), the held-out IoU per source and their mean; runs are compared on the
mean of their last validations. Steps are turned into
CPU-hours with the training-step time ``bench/encoders.py`` measured for each encoder on this machine
(``bench/results/encoders.json``), so the runs compare at equal compute whatever else shared the machine
while they trained. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sitewatch.files import atomic_path  # noqa: E402

SOURCES = ("shanghai", "inria_austin", "benchmark_samples")
#: The held-out IoU swings from one validation to the next (0.01-0.36 on shanghai for lite0): runs are
#: compared on the mean of their last validations, not on the best one (which would be picked on the
#: held-out sources themselves).
LAST = 5


def curve(run: Path) -> tuple[str, list[dict]]:
    """(encoder, one row per validation: step, held-out IoU per source and mean) of a run folder."""
    logs = sorted(run.glob("logs/version_*/metrics.csv"))
    if not logs:
        sys.exit(f"{run}: no logs/version_*/metrics.csv (train it with its configs/loso_*.yaml first)")
    config = (logs[-1].parent / "hparams.yaml").read_text()
    encoder = next((line.split(":", 1)[1].strip() for line in config.splitlines()
                    if line.strip().startswith("encoder:")), run.name)
    rows = []
    with open(logs[-1], newline="") as handle:
        for record in csv.DictReader(handle):
            if not record.get("val/iou"):
                continue
            row = {"epoch": int(record["epoch"]), "step": int(record["step"]) + 1}
            for source in SOURCES:
                value = record.get(f"val/{source}/iou")
                row[source] = float(value) if value else None
            known = [row[s] for s in SOURCES if row[s] is not None]
            row["mean"] = sum(known) / len(known) if known else None
            rows.append(row)
    return encoder, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, nargs="+", default=[REPO / "runs/loso_lite0", REPO / "runs/loso_lite2"])
    parser.add_argument("--speeds", type=Path, default=REPO / "bench/results/encoders.json")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/loso_encoders.json")
    args = parser.parse_args()
    step_s = {row["encoder"]: row["train_step_s"] for row in json.loads(args.speeds.read_text())["rows"]}
    result = {"command": " ".join(["python", "bench/loso_curves.py", *sys.argv[1:]]), "held_out": SOURCES,
              "runs": {}}
    for run in args.runs:
        encoder, rows = curve(run)
        for row in rows:
            row["cpu_hours"] = row["step"] * step_s.get(encoder, float("nan")) / 3600
        result["runs"][run.name] = {"encoder": encoder, "train_step_s": step_s.get(encoder), "curve": rows}
        best = max(rows, key=lambda r: r["mean"] or 0.0)
        last = [r["mean"] for r in rows[-LAST:] if r["mean"] is not None]
        result["runs"][run.name]["last_mean"] = sum(last) / len(last) if last else None
        print(f"\n{run.name} ({encoder}, {step_s.get(encoder, float('nan')):.2f} s/step): best mean held-out IoU "
              f"{best['mean']:.3f} at step {best['step']} ({best['cpu_hours']:.2f} CPU-h); mean of the last {LAST} "
              f"validations {result['runs'][run.name]['last_mean']:.3f}")
        print(f"{'step':>6} {'CPU-h':>6} " + " ".join(f"{s[:12]:>12}" for s in SOURCES) + f" {'mean':>6}")
        for row in rows:
            print(f"{row['step']:>6} {row['cpu_hours']:>6.2f} " + " ".join(
                f"{row[s]:>12.3f}" if row[s] is not None else f"{'-':>12}" for s in SOURCES) + f" {row['mean']:>6.3f}")
    with atomic_path(args.out) as tmp:  # a JSON whole or not at all
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
