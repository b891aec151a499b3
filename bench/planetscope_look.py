"""How real PlanetScope looks, measured: radiometry and sharpness of the visual-product crops.

The numbers the training recipe's PlanetScope degradation is matched to
(``sitewatch.data.transforms.SensorView``):

* radiometry per crop: per-band 1st / 50th / 99th percentiles of the 8-bit values, the dark
  offset (haze) and the usable range;
* sharpness: the ratio of fine to coarser band-pass detail of the grey image,
  ``std(g - G1(g)) / std(G1(g) - G2(g))`` (``Gs``: Gaussian blur of ``s`` pixels), scale-free for
  natural scenes and lowered by a wider point-spread function. The same ratio is measured on
  the 0.5 m satellite sources (xBD) area-averaged to 3 m after a Gaussian point-spread function of
  ``sigma`` pixels (at 3 m), for several ``sigma``: the one matching PlanetScope is the PSF to
  simulate. Sharpening halos raise the ratio; the measurement takes them as part of the look.

``python bench/planetscope_look.py --out bench/results/planetscope_look.json`` prints a table and
writes JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

CROPS = ["planesnet_scene_2", "planesnet_scene_3", "planesnet_scene_4",
         "shipsnet_scene_2", "shipsnet_scene_3", "shipsnet_scene_4"]
SIGMAS_PX = [0.0, 0.3, 0.5, 0.7, 0.9, 1.1, 1.4]


def load_rgb(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """8-bit RGB and a mask of real pixels (alpha > 0 and not the white no-data corner)."""
    image = np.asarray(Image.open(path))
    valid = np.ones(image.shape[:2], bool)
    if image.shape[2] == 4:
        valid &= image[..., 3] > 0
    rgb = image[..., :3]
    valid &= ~(rgb == 255).all(axis=2)
    return rgb, valid


def sharpness_ratio(grey: np.ndarray) -> float:
    """``std(g - G1(g)) / std(G1(g) - G2(g))`` on the central part of a grey float image."""
    g1 = cv2.GaussianBlur(grey, (0, 0), 1.0)
    g2 = cv2.GaussianBlur(grey, (0, 0), 2.0)
    inner = (slice(8, -8), slice(8, -8))
    return float(np.std((grey - g1)[inner]) / max(np.std((g1 - g2)[inner]), 1e-6))


def stretched_grey(rgb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    grey = rgb.astype(np.float32).mean(axis=2)
    low, high = np.percentile(grey[valid], [1, 99])
    return np.clip((grey - low) / max(high - low, 1.0), 0, 1)


def planetscope_rows(folder: Path) -> list[dict[str, object]]:
    rows = []
    for name in CROPS:
        rgb, valid = load_rgb(folder / f"{name}.png")
        pct = np.percentile(rgb[valid], [1, 50, 99], axis=0)
        rows.append({"crop": name, "size": list(rgb.shape[:2]),
                     "p1": pct[0].round(1).tolist(), "p50": pct[1].round(1).tolist(), "p99": pct[2].round(1).tolist(),
                     "range": (pct[2] - pct[0]).round(1).tolist(),
                     "sharpness": round(sharpness_ratio(stretched_grey(rgb, valid)), 3)})
    return rows


def degraded_ratios(data_root: Path, native_m: float = 0.5, target_m: float = 3.0) -> dict[str, float]:
    """Sharpness ratio of xBD pre-disaster images degraded to 3 m with each PSF sigma (3 m pixels)."""
    images = sorted((data_root / "xbd" / "xbd").glob("**/images/*pre_disaster.png"))[:8]
    factor = target_m / native_m
    out: dict[str, float] = {}
    for sigma in SIGMAS_PX:
        ratios = []
        for path in images:
            rgb = np.asarray(Image.open(path).convert("RGB"))
            grey = rgb.astype(np.float32).mean(axis=2) / 255.0
            if sigma > 0:
                grey = cv2.GaussianBlur(grey, (0, 0), sigma * factor)
            small = cv2.resize(grey, None, fx=1 / factor, fy=1 / factor, interpolation=cv2.INTER_AREA)
            low, high = np.percentile(small, [1, 99])
            ratios.append(sharpness_ratio(np.clip((small - low) / max(high - low, 1e-3), 0, 1)))
        out[f"{sigma:g}"] = round(float(np.median(ratios)), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", default="bench/results/planetscope_look.json")
    args = parser.parse_args()
    root = Path(args.data)
    rows = planetscope_rows(root / "planetscope_dev")
    print(f"{'crop':20} {'p1 (R,G,B)':22} {'p99 (R,G,B)':22} {'sharpness':>9}")
    for row in rows:
        print(f"{row['crop']:20} {str(row['p1']):22} {str(row['p99']):22} {row['sharpness']:9.3f}")
    reference = degraded_ratios(root)
    print("xBD 0.5 m area-averaged to 3 m after a Gaussian PSF of sigma (3 m px): sharpness")
    for sigma, ratio in reference.items():
        print(f"  sigma {sigma:>4}: {ratio:.3f}")
    result = {"planetscope": rows, "xbd_degraded_to_3m": reference,
              "command": "python bench/planetscope_look.py"}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
