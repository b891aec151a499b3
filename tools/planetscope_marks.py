"""Views and overlays for marking the by-eye PlanetScope reference (``data/samples/planetscope_dev/reference.json``).

    python tools/planetscope_marks.py view CROP X0 Y0 W H --zoom 4 --out view.png
    python tools/planetscope_marks.py overlay REFERENCE.json CROP --out overlay.png [--window X0 Y0 W H --zoom Z]

``view`` renders a window of a crop enlarged (nearest neighbour), contrast-stretched per band (2-98 %), with a
pixel grid labelled in original crop coordinates. ``overlay`` draws the reference polygons of that crop on the
stretched image: large buildings in red, open ground in cyan, each with its id. Without ``--window`` the whole
crop is drawn, downscaled so its longest side is at most ``--max-side`` pixels. Needs only pillow and numpy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

BUILDING = (255, 40, 40)
GROUND = (0, 230, 255)


def stretched(crop: Path) -> Image.Image:
    """The crop as RGB, each band stretched linearly from its 2nd to its 98th percentile."""
    rgb = np.asarray(Image.open(crop).convert("RGB"), dtype=np.float32)
    out = np.empty_like(rgb)
    for band in range(3):
        lo, hi = np.percentile(rgb[..., band], (2, 98))
        out[..., band] = (rgb[..., band] - lo) / max(hi - lo, 1.0) * 255
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))


def render(crop: Path, window: list[int] | None, zoom: float, max_side: int) -> tuple[Image.Image, int, int, float]:
    """The stretched window (whole crop when ``None``) enlarged ``zoom`` times, with its origin and scale."""
    image = stretched(crop)
    x0, y0, w, h = window or (0, 0, image.width, image.height)
    x0, y0 = max(x0, 0), max(y0, 0)
    w, h = min(w, image.width - x0), min(h, image.height - y0)
    if window is None:
        zoom = min(zoom, max_side / max(w, h))
    size = (round(w * zoom), round(h * zoom))
    part = image.crop((x0, y0, x0 + w, y0 + h)).resize(size, Image.NEAREST if zoom >= 1 else Image.LANCZOS)
    return part, x0, y0, zoom


def grid(image: Image.Image, x0: int, y0: int, zoom: float) -> Image.Image:
    """Add a margin with tick labels and a grid every 10, 50 or 100 crop pixels (by zoom), every fifth line strong."""
    pad = 34
    canvas = Image.new("RGB", (image.width + 2 * pad, image.height + 2 * pad), (0, 0, 0))
    canvas.paste(image, (pad, pad))
    draw = ImageDraw.Draw(canvas, "RGBA")
    w, h = image.width / zoom, image.height / zoom
    step = 10 if zoom >= 2 else 50 if zoom >= 0.5 else 100
    for axis, (start, length) in enumerate(((x0, w), (y0, h))):
        for value in range(-(-start // step) * step, int(start + length) + 1, step):
            pos = pad + (value - start) * zoom
            strong = value % (5 * step) == 0 or step > 10 and value % 100 == 0
            colour = (255, 255, 0, 170) if strong else (255, 255, 255, 60)
            if axis == 0:
                draw.line([(pos, pad), (pos, pad + image.height)], fill=colour)
                for ty in (2, pad + image.height + 12):
                    draw.text((pos - 10, ty), str(value), fill=(255, 255, 0) if strong else (200, 200, 200))
            else:
                draw.line([(pad, pos), (pad + image.width, pos)], fill=colour)
                for tx in (1, pad + image.width + 2):
                    draw.text((tx, pos - 5), str(value), fill=(255, 255, 0) if strong else (200, 200, 200))
    return canvas


def draw_marks(canvas: Image.Image, marks: dict, x0: int, y0: int, zoom: float, pad: int) -> None:
    """Draw the building and open-ground polygons of one crop's reference entry on ``canvas``."""
    draw = ImageDraw.Draw(canvas)
    width = 2 if zoom >= 2 else 1
    for key, colour in (("large_buildings", BUILDING), ("open_ground", GROUND)):
        for mark in marks.get(key, []):
            points = [(pad + (x - x0) * zoom, pad + (y - y0) * zoom) for x, y in mark["polygon"]]
            draw.line(points + points[:1], fill=colour, width=width)
            cx = sum(p[0] for p in points) / len(points)
            cy = sum(p[1] for p in points) / len(points)
            label = mark["id"].split("-")[-1]
            draw.text((cx - 8, cy - 5), label, fill=(0, 0, 0))
            draw.text((cx - 9, cy - 6), label, fill=colour)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    view = sub.add_parser("view", help="a stretched, gridded, enlarged window of a crop")
    view.add_argument("crop", type=Path)
    view.add_argument("window", type=int, nargs=4, help="X0 Y0 W H: the window in crop pixels")
    overlay = sub.add_parser("overlay", help="the reference polygons of one crop drawn on it")
    overlay.add_argument("reference", type=Path)
    overlay.add_argument("crop", type=Path)
    overlay.add_argument("--window", type=int, nargs=4, metavar=("X0", "Y0", "W", "H"))
    for command in (view, overlay):
        command.add_argument("--zoom", type=float, default=3.0)
        command.add_argument("--max-side", type=int, default=1600, help="longest side of a whole-crop picture")
        command.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    image, x0, y0, zoom = render(args.crop, args.window, args.zoom, args.max_side)
    canvas = grid(image, x0, y0, zoom)
    if args.command == "overlay":
        crops = json.loads(args.reference.read_text())["crops"]
        draw_marks(canvas, crops.get(args.crop.stem, {}), x0, y0, zoom, pad=34)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)


if __name__ == "__main__":
    main()
