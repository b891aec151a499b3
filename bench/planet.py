"""Planet products on real pixels: the numbers of docs/BENCHMARKS.md, "Planet products".

    python bench/planet.py [--out bench/results/planet.json]

Writes the demo site's later date (LEVIR-CD, ~0.55 m, real RGB pixels) as Planet analytic files
(``tests/test_planet.py`` writes the same): 4-band and 8-band SuperDove uint16 reflectance,
RGB uint16, and segments each as a new user would (no ``--bands``) and with the naive first three
bands. Then runs the clouded two-date series (a cloud over the right half of the later date, marked
in its UDM2) with and without the UDM2, and SkySat 0.55 m then PlanetScope 3 m (the same ground) at
the working size of the coarsest date (the default) and at 0.5 m (the first date's, as before).
Prints the masks' IoU against the RGB version and the change counts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import test_planet as T  # noqa: E402

from sitewatch.checkpoint import load_model  # noqa: E402
from sitewatch.paths import default_model_path  # noqa: E402
from sitewatch.pipeline import run_site, segment_one  # noqa: E402
from sitewatch.predict import Predictor  # noqa: E402


class _Folders:
    def __init__(self, root: Path) -> None:
        self.root = root

    def mktemp(self, name: str) -> Path:
        folder = self.root / name
        folder.mkdir()
        return folder


def _mixed_pair(root: Path) -> tuple[Path, Path]:
    """The demo site's later date as SkySat-like 0.55 m and as PlanetScope-like 3 m (area-averaged)."""
    from affine import Affine

    profile, rgb = T._profile(T.DEMO[1])
    values = T.reflectance(rgb)
    bands = ("blue", "green", "red", "nir")
    skysat = T.write_bands(root / "20230101_101112_ssc2d1_0010_pansharpened.tif", profile, bands, values,
                           describe=False)
    size = int(profile["width"] / (3.0 / 0.554))
    t, scale = profile["transform"], profile["width"] / size
    coarse = {**profile, "width": size, "height": size, "transform": Affine(t.a * scale, 0, t.c, 0, t.e * scale, t.f)}
    planetscope = T.write_bands(root / "20240101_101112_12_2480_3B_AnalyticMS_SR.tif", coarse, bands,
                                {n: T._block_mean(b, size) for n, b in values.items()}, describe=False)
    return skysat, planetscope


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/planet.json")
    args = parser.parse_args()
    predictor = Predictor(load_model(default_model_path()), device="cpu", backend="auto")
    results: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        files = T.analytic.__wrapped__(_Folders(root))
        masks = {name: T._mask(segment_one(path, root / f"seg_{name}", predictor, footprints=False).result.mask_path)
                 for name, path in files.items()}
        for name, bands in (("8b", [1, 2, 3]), ("4b", [1, 2, 3])):
            run = segment_one(files[name], root / f"naive_{name}", predictor, footprints=False, bands=bands)
            masks[f"{name} bands 1,2,3"] = T._mask(run.result.mask_path)
        results["iou_against_rgb16"] = {name: round(T._iou(mask, masks["rgb16"]), 3) for name, mask in masks.items()}
        rasters, _ = T.clouded_series.__wrapped__(files, _Folders(root))
        for udm in (True, False):
            summary = run_site(rasters, root / f"clouded_{udm}", predictor, use_udm=udm).summary
            results[f"clouded_udm_{'on' if udm else 'off'}"] = summary.counts.as_dict()
        skysat, planetscope = _mixed_pair(root)
        for label, work in (("at the coarsest date's working size", None), ("at 0.5 m", 0.5)):
            summary = run_site([skysat, planetscope], root / f"mixed_{work}", predictor, work_gsd_m=work).summary
            results[f"skysat_then_planetscope {label}"] = {**summary.counts.as_dict(),
                                                          "work_gsd_m": summary.model.gsd_m}
    print(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
