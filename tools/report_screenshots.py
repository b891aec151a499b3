"""Screenshots of the report in headless Chromium, for docs/report/.

    python tools/report_screenshots.py

Runs the demo site (two dates), the same site with a third date (the 2018 image re-graded and
moved by two pixels, as tests/test_timeseries.py builds it) and the DSIFN pair 0_2 (fields
cleared beside a growing village: the land_cleared flag), and photographs each report.html with
Debian's chromium (no network: the page is self-contained).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sitewatch.checkpoint import load_for_inference  # noqa: E402
from sitewatch.data.dsifn import read_dsifn_pair  # noqa: E402
from sitewatch.data.pairs import write_pair_rasters  # noqa: E402
from sitewatch.paths import DEMO_SITE  # noqa: E402
from sitewatch.pipeline import run_site  # noqa: E402
from sitewatch.predict import Predictor  # noqa: E402

OUT = REPO / "docs" / "report"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--virtual-time-budget=5000", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars"]


def third_date(folder: Path, later: Path) -> Path:
    with rasterio.open(later) as source:
        profile, pixels = source.profile, source.read().astype(np.float64)
    regraded = np.clip(255 * (pixels / 255) ** 0.8 * 1.1 + 6, 0, 255)
    target = folder / "texas_train36_2019-01-01.tif"
    with rasterio.open(target, "w", **profile) as out:
        out.write(np.roll(regraded, (1, 2), axis=(1, 2)).astype(np.uint8))
    return target


def shoot(page: Path, target: Path, height: int, work: Path) -> None:
    png = work / f"{target.stem}.png"
    subprocess.run([shutil.which("chromium"), *FLAGS, f"--user-data-dir={work / 'profile'}",
                    f"--screenshot={png}", f"--window-size=1400,{height}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    Image.open(png).convert("RGB").save(target, quality=80, optimize=True)
    print(f"{target.relative_to(REPO)}: {target.stat().st_size // 1024} KiB")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    predictor = Predictor(load_for_inference(), device="cpu", backend="auto")
    earlier, later = sorted(DEMO_SITE.glob("*.tif"))
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        run_site([earlier, later], work / "demo", predictor, site="demo_site")
        shoot(work / "demo" / "report.html", OUT / "demo_two_dates.jpg", 3400, work)
        run_site([earlier, later, third_date(work, later)], work / "series", predictor, site="demo_site_three_dates")
        shoot(work / "series" / "report.html", OUT / "demo_three_dates.jpg", 4000, work)
        pair = read_dsifn_pair(REPO / "data" / "samples", "0_2")
        rasters = write_pair_rasters("0_2", pair.earlier, pair.later, pair.transform, pair.crs, work / "0_2")
        run_site(rasters, work / "cleared", predictor, site="dsifn_0_2")
        shoot(work / "cleared" / "report.html", OUT / "land_cleared.jpg", 4200, work)


if __name__ == "__main__":
    main()
