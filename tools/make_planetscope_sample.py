"""Cut the PlanetScope test samples out of ``../shared/data/planetscope_dev``.

    python tools/make_planetscope_sample.py [--data ../shared/data/planetscope_dev]

Writes, as RGB PNG (real PlanetScope visual product, ~3 m, as delivered):

* ``data/samples/planetscope_dev/planesnet_scene_3_ne.png``: the north-east block of
  ``planesnet_scene_3`` (LAX), columns 780-1418 and rows 0-340: terminals' car parks, hotels,
  offices, hangar-side sheds; 23 marked large buildings and 8 open-ground spots lie wholly inside.
* ``data/samples/planetscope_dev/planesnet_scene_2_w.png``: columns 256-768 and rows 0-512 of
  ``planesnet_scene_2``: hangars and warehouses between aprons and roads; 24 marked large buildings
  and 17 open-ground spots lie wholly inside.

The tests of the model on real PlanetScope score the marks of ``reference.json`` lying wholly
inside each window (``SAMPLES``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "data/samples/planetscope_dev"
# sample file name -> (crop of planetscope_dev, window: left, top, right, bottom in its pixels)
SAMPLES = {
    "planesnet_scene_3_ne.png": ("planesnet_scene_3", (780, 0, 1418, 340)),
    "planesnet_scene_2_w.png": ("planesnet_scene_2", (256, 0, 768, 512)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/planetscope_dev")
    args = parser.parse_args()
    for name, (crop, (left, top, right, bottom)) in SAMPLES.items():
        image = np.asarray(Image.open(args.data / f"{crop}.png").convert("RGB"))
        target = FOLDER / name
        Image.fromarray(image[top:bottom, left:right]).save(target, optimize=True)
        print(f"wrote {target} ({target.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
