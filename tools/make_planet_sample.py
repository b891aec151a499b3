"""Copy the real Planet order of the tests out of ``../shared/data/planetscope_dev/order_20151119``.

    python tools/make_planet_sample.py [--order ../shared/data/planetscope_dev/order_20151119]

Writes ``data/samples/planet_order/``: the order's ``manifest.json`` and, under ``PSScene/``, the
scene's usable-data mask (``20151119_025740_0c74_3B_udm2_clip.tif``, a 1,578 × 1,352 px GeoTIFF at
3 m, 0.35 MB: small enough to keep whole, georeference untouched), its item metadata
(``_metadata.json``) and product metadata (``_3B_AnalyticMS_metadata_clip.xml``). The analytic
image itself is not in the order here; the tests write analytic files from real sample pixels
(``tests/test_planet.py``). Source: Planet's notebooks repository (Apache-2.0), see
``data/README.md``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "data/samples/planet_order"
FILES = ("manifest.json", "PSScene/20151119_025740_0c74_3B_udm2_clip.tif",
         "PSScene/20151119_025740_0c74_metadata.json", "PSScene/20151119_025740_0c74_3B_AnalyticMS_metadata_clip.xml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--order", type=Path, default=REPO.parent / "shared/data/planetscope_dev/order_20151119")
    args = parser.parse_args()
    for name in FILES:
        target = TARGET / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.order / name, target)
        print(f"wrote {target} ({target.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
