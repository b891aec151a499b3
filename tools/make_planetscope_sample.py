"""Cut the PlanetScope test sample out of ``../shared/data/planetscope_dev``.

    python tools/make_planetscope_sample.py [--data ../shared/data/planetscope_dev]

Writes ``data/samples/planetscope_dev/planesnet_scene_3_ne.png``: the north-east block of
``planesnet_scene_3`` (LAX, real PlanetScope visual product, ~3 m), columns 780-1418 and rows
0-340 of the crop, as RGB. The block holds marked large buildings (terminals' car parks, hotels,
offices, hangar-side sheds) and open ground of ``reference.json``; the test of the model on real
PlanetScope scores the marks lying wholly inside it (``SAMPLE_WINDOW``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE_WINDOW = (780, 0, 1418, 340)  # left, top, right, bottom in planesnet_scene_3 pixels
TARGET = REPO / "data/samples/planetscope_dev/planesnet_scene_3_ne.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/planetscope_dev")
    args = parser.parse_args()
    image = np.asarray(Image.open(args.data / "planesnet_scene_3.png").convert("RGB"))
    left, top, right, bottom = SAMPLE_WINDOW
    Image.fromarray(image[top:bottom, left:right]).save(TARGET, optimize=True)
    print(f"wrote {TARGET} ({TARGET.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
