"""Change on real PlanetScope months against labelled footprints (SpaceNet 7, ids across months).

    python bench/spacenet7.py --model auto [--model planetscope ...] [--pairs two-year consecutive series]
                              [--out bench/results/spacenet7.json]

Each pair of months (and, with ``series``, all months as one site) runs through the same job as
``sitewatch change`` (``run_site``), with the network
``--model`` names (``auto``: sitewatch's own choice, as a user gets it). The records are scored by
:mod:`sitewatch.labelled_change` in three regions of the AOI, kept apart as the training is:

- ``held_out``: the north-west quadrant (the new subdivision, most of the labelled change), which no
  training run and no rule or threshold here was chosen on: **report** figures;
- ``tuned``: the other three quadrants (south-west and south-east train ``configs/spacenet7.yaml``,
  north-east chooses its checkpoint), where rules may be tuned;
- ``all``: the whole AOI.

Prints a table and writes JSON (``bench/results/spacenet7.json`` by default).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import rasterio
import shapely

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from recorded import command_line, repo_path  # noqa: E402

from sitewatch.batch import Predictors  # noqa: E402
from sitewatch.choice import choose_model, look_at_site  # noqa: E402
from sitewatch.data.spacenet7 import Month, months, read_month_buildings  # noqa: E402
from sitewatch.footprints import utm_crs  # noqa: E402
from sitewatch.labelled_change import score_labelled_change  # noqa: E402
from sitewatch.paths import DEFAULT_MODEL_NAME, MODELS_DIR  # noqa: E402
from sitewatch.pipeline import run_site  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "spacenet7_dev"
ROWS = ("labelled_new", "found", "recall", "new_records", "right_new_records", "precision", "area_recall",
        "area_precision", "housing_areas", "right_housing_areas", "halls_flagged", "false_halls",
        "demolished_records", "false_demolitions", "expanded_records")


def regions(image: Path, crs: object) -> dict[str, shapely.Geometry]:
    """The held-out quadrant, the tuned rest and the whole AOI, in ``crs``."""
    with rasterio.open(image) as dataset:
        left, bottom, right, top = dataset.bounds
        frame = gpd.GeoSeries([shapely.box(left, bottom, right, top),
                               shapely.box(left, (bottom + top) / 2, (left + right) / 2, top)], crs=dataset.crs)
    whole, north_west = frame.to_crs(crs).values
    return {"held_out": north_west, "tuned": whole.difference(north_west), "all": whole}


def pairs_of(found: list[Month], kinds: list[str]) -> list[list[Month]]:
    """The runs asked for: ``two-year`` (first and last month), ``consecutive`` (each month and the next),
    ``series`` (every month as one site: a building new from the month it appears and stays)."""
    pairs = []
    if "two-year" in kinds:
        pairs.append([found[0], found[-1]])
    if "consecutive" in kinds:
        pairs += [[a, b] for a, b in zip(found[:-1], found[1:], strict=True)]
    if "series" in kinds:
        pairs.append(list(found))
    return pairs


def run_pair(dated: list[Month], model: str, folder: Path, predictors: Predictors) -> tuple[dict, str, float]:
    """Months through the change job (each network loaded once by ``predictors``); its changes and housing
    layers, the model's label and seconds."""
    rasters = [month.image for month in dated]
    given = None if model == "auto" else str(MODELS_DIR / DEFAULT_MODEL_NAME) if model == "default" else model
    choice = choose_model(given, look_at_site(rasters))
    predictor = predictors(choice.path)
    started = time.perf_counter()
    run_site(rasters, folder, predictor, model_choice=choice)  # the basemap names date the months
    seconds = time.perf_counter() - started
    layers = {name: gpd.read_file(folder / "changes.gpkg", layer=name) for name in ("changes", "housing_clusters")}
    return layers, choice.label, seconds


def score_pair(layers: dict, earlier: Month, later: Month) -> dict[str, dict]:
    changes = layers["changes"]
    metric = utm_crs(changes.crs or "EPSG:3857", tuple(changes.to_crs(4326).total_bounds)) \
        if len(changes) else "EPSG:32610"
    earlier_labels = read_month_buildings(earlier, metric)
    later_labels = read_month_buildings(later, metric)
    housing = layers["housing_clusters"].to_crs(metric)
    return {name: score_labelled_change(changes.to_crs(metric), housing, earlier_labels, later_labels,
                                        region=area).as_dict()
            for name, area in regions(earlier.image, metric).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="auto, default, planetscope or a model file (repeat)")
    parser.add_argument("--pairs", nargs="+", default=["two-year", "consecutive"])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "spacenet7.json")
    args = parser.parse_args()
    results = {"command": command_line(), "regions": {"held_out": "north-west quadrant", "tuned": "the rest"},
               "runs": []}
    predictors = Predictors("cpu", "auto")
    for aoi in sorted(p for p in args.data.iterdir() if p.is_dir()):
        for dated in pairs_of(months(aoi), args.pairs):
            earlier, later = dated[0], dated[-1]
            for model in args.model or ["auto"]:
                with tempfile.TemporaryDirectory(prefix="sitewatch-sn7-") as scratch:
                    layers, label, seconds = run_pair(dated, model, Path(scratch) / "site", predictors)
                scores = score_pair(layers, earlier, later)
                row = {"aoi": aoi.name, "earlier": earlier.key, "later": later.key, "dates": len(dated),
                       "model": repo_path(model) if Path(model).exists() else model, "network": label,
                       "seconds": round(seconds, 1), "scores": scores}
                results["runs"].append(row)
                held = scores["held_out"]
                print(f"{earlier.key}->{later.key} ({len(dated)} dates) {model:>12}: held-out new "
                      f"{held['found']}/{held['labelled_new']} "
                      f"found, {held['right_new_records']}/{held['new_records']} records right, "
                      f"area P {held['area_precision']:.2f} R {held['area_recall']:.2f}, "
                      f"housing {held['right_housing_areas']}/{held['housing_areas']}, false halls "
                      f"{held['false_halls']}, false demolitions {held['false_demolitions']}/"
                      f"{held['demolished_records']} ({seconds:.0f} s)", flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results, indent=2))
    print_table(results["runs"])
    print(f"wrote {repo_path(args.out)}")


def print_table(runs: list[dict]) -> None:
    """Per model and region: sums over the pairs."""
    for region in ("held_out", "tuned"):
        print(f"\n{region}: " + " | ".join(ROWS))
        for model in dict.fromkeys(row["model"] for row in runs):
            rows = [row["scores"][region] for row in runs if row["model"] == model]
            total = {key: sum(row[key] for row in rows) for key in ROWS if not isinstance(rows[0][key], float)}
            total["recall"] = total["found"] / max(total["labelled_new"], 1)
            total["precision"] = total["right_new_records"] / max(total["new_records"], 1)
            print(f"{model}: " + " | ".join(f"{total.get(key, float('nan')):.2f}" if key in (
                "recall", "precision") else str(total.get(key, "-")) for key in ROWS))


if __name__ == "__main__":
    main()
