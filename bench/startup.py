"""Start-up benchmark: how fast the command line answers when there is no heavy work to do.

    python bench/startup.py [--runs 7] [--out bench/results/startup.json]

Each command runs in a fresh interpreter (the installed ``sitewatch`` console script), as a user
types it; the table gives the median and the slowest wall time of ``--runs`` runs after one
warm-up run (file cache). Goal: each answers in under 1 s.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sitewatch.paths import default_model_path  # noqa: E402


def console_script() -> list[str]:
    script = Path(sys.executable).parent / "sitewatch"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "sitewatch.cli"]


def time_command(command: list[str], runs: int, cwd: Path) -> dict[str, object]:
    subprocess.run(command, capture_output=True, cwd=cwd)  # warm-up
    seconds, codes = [], set()
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, cwd=cwd)
        seconds.append(time.perf_counter() - start)
        codes.add(result.returncode)
    return {"median_s": statistics.median(seconds), "max_s": max(seconds), "exit_codes": sorted(codes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/startup.json")
    args = parser.parse_args()
    exe = console_script()
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "sitewatch --help": [*exe, "--help"],
            "sitewatch info <shipped model>": [*exe, "info", str(default_model_path())],
            "sitewatch segment missing.tif --out o (refused)": [*exe, "segment", "missing.tif", "--out", "o"],
            "sitewatch change a.tif b.tif --out o (refused)": [*exe, "change", "a.tif", "b.tif", "--out", "o"],
            "sitewatch segmnt (usage error)": [*exe, "segmnt"],
        }
        rows = {name: time_command(command, args.runs, Path(tmp)) for name, command in cases.items()}
    print(f"{'command':52s} {'median s':>8s} {'max s':>6s}  exit")
    for name, row in rows.items():
        print(f"{name:52s} {row['median_s']:8.2f} {row['max_s']:6.2f}  {row['exit_codes']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": "python " + " ".join(sys.argv), "runs": args.runs,
                                    "machine": platform.processor() or platform.machine(), "results": rows},
                                   indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
