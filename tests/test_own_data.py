"""Training on one's own GeoTIFFs and footprints: labels in m², the area split, the README command, errors.

The sample (``data/samples/own_data``) is a real GeoTIFF in UTM 45N (EPSG:32645, 0.25 m) and the
OSM footprints of that ground as a GeoPackage in EPSG:4326, with the mapped area as a GeoJSON.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from conftest import REPO, SAMPLES, assert_one_line_error, run_cli, run_sitewatch
from rasterio.features import shapes
from shapely.geometry import box, shape
from shapely.ops import unary_union

from sitewatch.checkpoint import file_sha256, read_model_metadata
from sitewatch.data.common import IGNORE
from sitewatch.data.owndata import OwnData, read_own_data
from sitewatch.paths import default_model_path

OWN = SAMPLES / "own_data"
RASTER = OWN / "banepa_utm45n.tif"
FOOTPRINTS = OWN / "banepa_buildings_4326.gpkg"
MAPPED = OWN / "banepa_mapped_area.geojson"


def _imagery_area() -> tuple[object, float]:
    """The raster's ground with imagery (a polygon in its CRS) and its pixel area (m²)."""
    with rasterio.open(RASTER) as dataset:
        mask, transform = dataset.dataset_mask(), dataset.transform
    polygons = [shape(g) for g, v in shapes((mask > 0).astype(np.uint8), transform=transform) if v]
    return unary_union(polygons), abs(transform.a * transform.e)


@pytest.mark.parametrize("form", ["gpkg", "geojson", "shp", "parquet"])
def test_rasterized_labels_match_the_footprints_area_in_square_metres(form: str, tmp_path: Path) -> None:
    """Footprints in EPSG:4326 burned onto the UTM raster: building m² = footprint m² (within 1.5 %)."""
    labels = FOOTPRINTS
    if form == "parquet":
        labels = tmp_path / "buildings.parquet"
        gpd.read_file(FOOTPRINTS).to_parquet(labels)
    elif form != "gpkg":
        labels = tmp_path / f"buildings.{form}"
        gpd.read_file(FOOTPRINTS).to_file(labels)
    spec = OwnData(images=(str(RASTER),), labels=(str(labels),))
    train, val = read_own_data(spec)
    assert gpd.read_file(FOOTPRINTS).crs.to_epsg() == 4326 and train.crs == "EPSG:32645"
    imagery, pixel_m2 = _imagery_area()
    footprint_m2 = gpd.read_file(FOOTPRINTS).to_crs(32645).clip(imagery).area.sum()
    label_m2 = ((train.label == 1).sum() + (val.label == 1).sum()) * pixel_m2
    assert footprint_m2 > 9_000
    assert label_m2 == pytest.approx(footprint_m2, rel=0.015)
    assert train.gsd_m == pytest.approx(0.25, rel=1e-3) and train.n_polygons == 242


def test_validation_block_is_never_in_the_training_part() -> None:
    spec = OwnData(images=(str(OWN),), labels=(str(FOOTPRINTS),), label_extent=str(MAPPED), val_share=0.2)
    train, val = read_own_data(spec)
    assert (train.group, val.group) == ("own/banepa_utm45n", "own/banepa_utm45n/val")
    height, width = train.label.shape
    rows, cols = val.label.shape
    assert rows * cols == pytest.approx(0.2 * height * width, rel=0.02)
    block = (slice(height - rows, height), slice(width - cols, width))
    assert (train.label[block] == IGNORE).all() and (train.image[block] == 0).all()
    with rasterio.open(RASTER) as dataset:
        assert np.array_equal(val.image, np.moveaxis(dataset.read(), 0, -1)[block])
        assert val.transform == dataset.transform @ rasterio.Affine.translation(width - cols, height - rows)
    assert (val.label == 1).any() and (train.label == 1).any()


def test_ground_outside_the_label_extent_is_unlabelled(tmp_path: Path) -> None:
    with rasterio.open(RASTER) as dataset:
        west, south, east, north = dataset.bounds
    west_half = box(west, south, (west + east) / 2, north)
    extent = gpd.GeoDataFrame(geometry=[west_half], crs=32645).to_crs(4326)
    extent.to_file(tmp_path / "west.gpkg")
    spec = OwnData(images=(str(RASTER),), labels=(str(FOOTPRINTS),), label_extent=str(tmp_path / "west.gpkg"))
    train, _ = read_own_data(spec)
    width = train.label.shape[1]
    assert (train.label[:, int(width * 0.6):] == IGNORE).all()  # east of the extent: not background
    assert (train.label[:, : int(width * 0.4)] != IGNORE).mean() > 0.9


def test_whole_rasters_split(tmp_path: Path) -> None:
    with rasterio.open(RASTER) as dataset:
        profile, pixels = dataset.profile, dataset.read()
    for index, cols in enumerate((slice(0, 273), slice(273, 549))):
        part = pixels[:, :, cols]
        transform = profile["transform"] @ rasterio.Affine.translation(cols.start, 0)
        with rasterio.open(tmp_path / f"part{index}.tif", "w", **{**profile, "width": part.shape[2],
                                                                  "transform": transform}) as out:
            out.write(part)
    spec = OwnData(images=(str(tmp_path / "part*.tif"),), labels=(str(FOOTPRINTS),), val_split="rasters")
    groups = [sample.group for sample in read_own_data(spec)]
    assert groups == ["own/part0", "own/part1/val"]


README_HEADING = "## Train on your own data"


def readme_command() -> list[str]:
    """The first command of the README's own-data section, as a user would paste it."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(README_HEADING):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    command = block.split("\n\n")[0].replace("\\\n", " ")
    return shlex.split(command, comments=True)


@pytest.mark.slow
def test_readme_command_fine_tunes_the_default_model_on_the_sample(tmp_path: Path) -> None:
    """The README's command as written (outputs redirected to a temporary folder) trains and exports."""
    command = readme_command()
    assert command[:2] == [".venv/bin/python", "train.py"] and "configs/own_data.yaml" in command
    result = run_cli(*command[1:], f"--data.cache_dir={tmp_path / 'cache'}", f"--trainer.default_root_dir={tmp_path}",
                     f"--trainer.logger.init_args.save_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final validation" in result.stdout
    (version,) = (tmp_path / "logs").glob("version_*")
    meta = read_model_metadata(version / "model.safetensors")
    training = meta["training"]
    assert training["init_weights"] == "default"
    assert training["init_weights_sha256"] == file_sha256(default_model_path())
    own = training["data"]["own_data"]
    assert own["labels"] == [str(FOOTPRINTS.resolve())] and own["images"] == [str(RASTER.resolve())]
    assert training["data"]["sources"] == ["own"] and training["data"]["val_groups"] == ["own/*/val"]
    assert meta["work_gsd_rule"] == {"upsample": 2.0, "range_m": [0.5, 1.0]}  # same inference rule as shipped
    metrics = (version / "metrics.csv").read_text()
    assert "val/own/iou" in metrics


@pytest.mark.parametrize("case", ["no_crs", "far_away", "empty_labels", "missing_labels", "labels_only", "no_rasters"])
def test_own_data_mistakes_are_one_line_errors(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = str(RASTER), str(FOOTPRINTS)
    if case == "no_crs":
        with rasterio.open(RASTER) as dataset:
            profile, pixels = dataset.profile, dataset.read()
        profile.pop("crs")
        with rasterio.open(tmp_path / "plain.tif", "w", **profile) as out:
            out.write(pixels)
        images, needle = str(tmp_path / "plain.tif"), "raster has no CRS"
    elif case == "far_away":
        moved = gpd.read_file(FOOTPRINTS)
        moved["geometry"] = moved.geometry.translate(xoff=20.0)  # 20° east: another country
        moved.to_file(tmp_path / "moved.gpkg")
        labels, needle = str(tmp_path / "moved.gpkg"), "do not overlap any of the 1 raster"
    elif case == "empty_labels":
        gpd.read_file(FOOTPRINTS).iloc[:0].to_file(tmp_path / "empty.gpkg")
        labels, needle = str(tmp_path / "empty.gpkg"), "holds no building polygons"
    elif case == "missing_labels":
        labels, needle = str(tmp_path / "nothing.gpkg"), "label file not found"
    elif case == "labels_only":
        images, needle = None, "data.labels given without data.images"
    else:
        (tmp_path / "empty_dir").mkdir()
        images, needle = str(tmp_path / "empty_dir"), "no rasters found"
    monkeypatch.chdir(REPO)
    args = ["train", "fit", "--config", "configs/own_data.yaml", "--trainer.fast_dev_run=true",
            f"--data.cache_dir={tmp_path / 'cache'}", f"--trainer.default_root_dir={tmp_path}",
            f"--trainer.logger.init_args.save_dir={tmp_path}", f"--data.labels={labels}"]
    if images is not None:
        args.append(f"--data.images={images}")
    assert_one_line_error(run_sitewatch(*args), needle)


def test_evaluate_accepts_footprints_as_the_reference(tmp_path: Path) -> None:
    """A mask made from the footprints themselves scores IoU 1 against them, whatever their CRS."""
    spec = OwnData(images=(str(RASTER),), labels=(str(FOOTPRINTS),), val_share=1e-6)
    train, _ = read_own_data(spec)
    with rasterio.open(RASTER) as dataset:
        profile = {**dataset.profile, "count": 1, "nodata": 255}
    with rasterio.open(tmp_path / "mask.tif", "w", **profile) as out:
        out.write(np.where(train.label == 1, 1, np.where(train.label == IGNORE, 255, 0)).astype(np.uint8)[None])
    result = run_sitewatch("evaluate", str(tmp_path / "mask.tif"), str(FOOTPRINTS), "--out", str(tmp_path / "ev"))
    assert result.returncode == 0, result.stderr
    assert '"iou": 1.0' in result.stdout.split('"object"')[0]
    assert (tmp_path / "ev" / "scores.json").is_file()
