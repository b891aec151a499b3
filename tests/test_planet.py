"""Planet products as analysts receive them, on a real Planet order and on analytic files written
from real pixels.

* ``data/samples/planet_order``: a real PlanetScope order (its UDM2, item metadata JSON and product
  XML; ``tools/make_planet_sample.py``);
* analytic files written here from the demo site's real RGB pixels (LEVIR-CD, ~0.55 m): 4-band
  (blue, green, red, NIR) and 8-band SuperDove uint16 surface reflectance (× 10,000), named as
  Planet names them, the 8-band one with Planet's band descriptions, a ``_metadata.json`` and a
  ``_udm2.tif`` beside them.

Floors are set with margin under what the shipped model scores (measured values in comments), so a
retrained model with the same interface passes them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from conftest import chosen
from rasterio.enums import ColorInterp

from sitewatch.paths import DEMO_SITE
from sitewatch.planet import BANDS_8, item_id, scene_info, usable_data_mask

DEMO = sorted(DEMO_SITE.glob("*.tif"))  # texas_train36_2002-01-01.tif, texas_train36_2018-01-01.tif
ORDER = Path(__file__).resolve().parents[1] / "data/samples/planet_order/PSScene"
SCENE = "20151119_025740_0c74"
UDM2_NAMES = ("clear", "snow", "shadow", "haze_light", "haze_heavy", "cloud", "confidence", "udm1")
#: IoU of a 4-/8-band file's mask against its RGB version (same reflectance, read as RGB); measured 1.000
SAME_SCENE_IOU_FLOOR = 0.95


def reflectance(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Plausible surface reflectance (0-1) of every SuperDove band from 8-bit RGB pixels (3×H×W)."""
    red, green, blue = (0.02 + 0.30 * rgb[k].astype(np.float64) / 255 for k in range(3))
    vegetation = np.clip((2 * green - red - blue) / np.maximum(red + green + blue, 1e-3), 0, 1)
    nir = 0.6 * green + 0.3 * red + 0.1 + 0.6 * vegetation
    return {"coastal_blue": 0.95 * blue, "blue": blue, "green_i": 0.97 * green, "green": green,
            "yellow": 0.5 * (green + red), "red": red, "rededge": 0.5 * (red + nir), "nir": nir}


def write_bands(path: Path, profile: dict, names: tuple[str, ...], values: dict[str, np.ndarray],
                describe: bool, **extra) -> Path:
    """A uint16 reflectance × 10,000 GeoTIFF of the bands ``names`` (band descriptions if ``describe``)."""
    stack = np.stack([np.rint(values[n] * 10_000) for n in names]).astype(np.uint16)
    settings = {**profile, "count": len(names), "dtype": "uint16", "nodata": 0, "photometric": "MINISBLACK", **extra}
    with rasterio.open(path, "w", **settings) as out:
        out.write(stack)
        if describe:
            out.descriptions = names
        out.colorinterp = [ColorInterp.gray] + [ColorInterp.undefined] * (len(names) - 1)
    return path


def write_metadata(folder: Path, scene: str, acquired: str, instrument: str, satellite: str) -> None:
    properties = {"acquired": acquired, "cloud_cover": 0.12, "gsd": 3.7, "instrument": instrument,
                  "item_type": "PSScene", "pixel_resolution": 3, "provider": "planetscope",
                  "satellite_id": satellite, "sun_elevation": 21.5}
    (folder / f"{scene}_metadata.json").write_text(json.dumps({"id": scene, "properties": properties}))


def write_udm2(path: Path, profile: dict, cloud: np.ndarray) -> Path:
    """A UDM2 as Planet writes it (8 bands, uint8, band descriptions) with ``cloud`` marked."""
    bands = np.zeros((8, *cloud.shape), np.uint8)
    bands[0] = ~cloud
    bands[5] = cloud
    bands[6] = 80
    settings = {**profile, "count": 8, "dtype": "uint8", "nodata": None, "photometric": "MINISBLACK"}
    with rasterio.open(path, "w", **settings) as out:
        out.write(bands)
        out.descriptions = UDM2_NAMES
    return path


def _profile(raster: Path) -> tuple[dict, np.ndarray]:
    with rasterio.open(raster) as source:
        return {key: source.profile[key] for key in ("driver", "width", "height", "crs", "transform")}, source.read()


# --- the real order -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def order(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real order, with a 4-band analytic file on its UDM2's grid (the order's image is not shipped)."""
    folder = tmp_path_factory.mktemp("order")
    for path in ORDER.iterdir():
        shutil.copyfile(path, folder / path.name)
    with rasterio.open(folder / f"{SCENE}_3B_udm2_clip.tif") as udm:
        profile = {key: udm.profile[key] for key in ("driver", "width", "height", "crs", "transform")}
        seen = udm.read(8) == 0
    values = {name: np.where(seen, 0.05 + 0.01 * k, 0) for k, name in enumerate(BANDS_8)}
    write_bands(folder / f"{SCENE}_3B_AnalyticMS_clip.tif", profile, ("blue", "green", "red", "nir"), values,
                describe=False, compress="deflate", tiled=True)
    return folder


def test_planet_order_gives_date_provenance_bands_and_mask(order: Path) -> None:
    from sitewatch.dates import raster_date
    from sitewatch.prepare import DateOptions, ground_mask
    from sitewatch.radiometry import RGB, band_choice

    image = order / f"{SCENE}_3B_AnalyticMS_clip.tif"
    assert item_id(image) == SCENE
    assert raster_date(image) == (__import__("datetime").date(2015, 11, 19), f"Planet metadata {SCENE}_metadata.json")
    info = scene_info(image)
    assert (info.satellite, info.instrument, info.provider) == ("0c74", "PS2", "planetscope")
    assert info.sun_elevation_deg == pytest.approx(39.4) and info.cloud_cover == 0
    assert info.acquired.isoformat().startswith("2015-11-19T02:57:40")
    assert info.band_count == 4  # the product XML
    with rasterio.open(image) as dataset:
        choice = band_choice(dataset, list(RGB), None)
        assert choice.bands == [3, 2, 1] and not choice.guessed, choice.describe()
        assert "Planet 4-band" in choice.describe()
        assert usable_data_mask(image) == order / f"{SCENE}_3B_udm2_clip.tif"
        ground, used, removed = ground_mask(dataset, image, DateOptions(), True, order / "ground.tif")
    assert used == [f"{SCENE}_3B_udm2_clip.tif"]
    # the real UDM2: 37,381 of 2,133,456 px unusable (the black fill outside the scene), no cloud, no snow
    assert removed["unusable"] == pytest.approx(37_381 / 2_133_456, abs=1e-4)
    assert removed["cloud"] == removed["snow"] == removed["heavy haze"] == 0
    with rasterio.open(ground) as mask:
        assert (mask.read(1) == 0).sum() == 37_381


def test_planet_xml_alone_gives_provenance(order: Path, tmp_path: Path) -> None:
    for name in (f"{SCENE}_3B_AnalyticMS_metadata_clip.xml", f"{SCENE}_3B_AnalyticMS_clip.tif"):
        shutil.copyfile(order / name, tmp_path / name)
    info = scene_info(tmp_path / f"{SCENE}_3B_AnalyticMS_clip.tif")
    assert info.sun_elevation_deg == pytest.approx(39.42, abs=0.01)
    assert info.cloud_cover == pytest.approx(0.0079)
    assert (info.satellite, info.instrument, info.band_count) == ("0c74", "PS2", 4)


# --- analytic files from real pixels ---------------------------------------------------------------

@pytest.fixture(scope="module")
def analytic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo site's later date (many buildings) as Planet analytic products and as plain RGB."""
    folder = tmp_path_factory.mktemp("analytic")
    profile, rgb = _profile(DEMO[1])
    values = reflectance(rgb)
    files = {
        "rgb16": write_bands(folder / "site_rgb16.tif", profile, ("red", "green", "blue"), values, describe=False,
                             photometric="RGB"),
        "4b": write_bands(folder / "20230514_101112_12_2480_3B_AnalyticMS_SR.tif", profile,
                          ("blue", "green", "red", "nir"), values, describe=False),
        "8b": write_bands(folder / "20240514_101112_31_24ab_3B_AnalyticMS_SR_8b.tif", profile, BANDS_8, values,
                          describe=True),
    }
    write_metadata(folder, "20230514_101112_12_2480", "2023-05-14T10:11:12.5Z", "PS2.SD", "2480")
    write_metadata(folder, "20240514_101112_31_24ab", "2024-05-14T10:11:12.5Z", "PSB.SD", "24ab")
    return files


@pytest.fixture(scope="module")
def predictor():
    from sitewatch.checkpoint import load_model
    from sitewatch.paths import default_model_path
    from sitewatch.predict import Predictor

    return Predictor(load_model(default_model_path()), device="cpu", backend="auto")


def _mask(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read(1) == 1


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_4_and_8_band_files_segment_like_their_rgb_version(analytic: dict[str, Path], predictor,
                                                          tmp_path: Path) -> None:
    from sitewatch.pipeline import segment_one

    runs = {name: segment_one(path, tmp_path / name, predictor, footprints=False) for name, path in analytic.items()}
    reference = _mask(runs["rgb16"].result.mask_path)
    assert reference.mean() > 0.05  # the scene has buildings
    for name in ("4b", "8b"):
        score = _iou(_mask(runs[name].result.mask_path), reference)
        assert score >= SAME_SCENE_IOU_FLOOR, (name, score)
    assert runs["4b"].result.bands.startswith("3,2,1 (red, green, blue; Planet 4-band analytic product")
    assert runs["8b"].result.bands.startswith("6,4,2 (red, green, blue; band descriptions")
    assert runs["rgb16"].result.bands.startswith("1,2,3 (red, green, blue; colour interpretation")


@pytest.fixture(scope="module")
def clouded_series(analytic: dict[str, Path],
                   tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], np.ndarray]:
    """The same standing buildings at two dates (4-band, then 8-band SuperDove), the later one with a
    cloud over the right half of the scene and a UDM2 that marks it."""
    folder = tmp_path_factory.mktemp("clouded")
    profile, rgb = _profile(DEMO[1])
    values = reflectance(rgb)
    cloud = np.zeros(rgb.shape[1:], bool)
    cloud[:, 128:] = True
    rows, cols = np.mgrid[: cloud.shape[0], : cloud.shape[1]]
    puff = 0.55 + 0.1 * np.sin(rows / 9.0) * np.cos(cols / 13.0)  # a bright, textured cloud top
    clouded = {name: np.where(cloud, puff, band) for name, band in values.items()}
    first = shutil.copyfile(analytic["4b"], folder / analytic["4b"].name)
    later = write_bands(folder / "20240514_101112_31_24ab_3B_AnalyticMS_SR_8b.tif", profile, BANDS_8, clouded,
                        describe=True)
    write_udm2(folder / "20240514_101112_31_24ab_3B_udm2.tif", profile, cloud)
    write_metadata(folder, "20230514_101112_12_2480", "2023-05-14T10:11:12.5Z", "PS2.SD", "2480")
    write_metadata(folder, "20240514_101112_31_24ab", "2024-05-14T10:11:12.5Z", "PSB.SD", "24ab")
    return [first, later], cloud


def test_udm2_cloud_over_standing_buildings_is_not_observed(clouded_series, predictor, tmp_path: Path) -> None:
    from sitewatch.pipeline import run_site

    rasters, cloud = clouded_series
    summary = run_site(rasters, tmp_path / "site", chosen(rasters)).summary
    assert summary.counts.demolished == 0, summary.counts
    assert summary.counts.not_observed >= 1, summary.counts  # the buildings under the cloud
    first, later = summary.images
    assert later.mask_removed["cloud"] == pytest.approx(cloud.mean(), abs=0.01)
    assert later.masks == ["20240514_101112_31_24ab_3B_udm2.tif"] and first.masks == []
    assert first.bands.startswith("3,2,1 (red, green, blue; Planet 4-band") and later.bands.startswith("6,4,2")
    assert (first.date_source, later.date_source) == ("Planet metadata 20230514_101112_12_2480_metadata.json",
                                                     "Planet metadata 20240514_101112_31_24ab_metadata.json")
    assert later.provenance["instrument"] == "PSB.SD" and later.provenance["sun_elevation_deg"] == 21.5
    page = (tmp_path / "site" / "report.html").read_text()
    for text in ("6,4,2 (red, green, blue; band descriptions)", "Planet 4-band analytic product", "cloud 50",
                 "20240514_101112_31_24ab_3B_udm2.tif", "PSB.SD"):
        assert text in page, text


# --- one value mapping for the site ----------------------------------------------------------------

def test_site_stretch_maps_8_and_16_bit_copies_alike_and_pools_one_value_type(tmp_path: Path) -> None:
    from sitewatch.modelfile import InputMapping
    from sitewatch.radiometry import site_stretch

    profile, rgb = _profile(DEMO[0])
    eight = tmp_path / "a8.tif"
    sixteen = tmp_path / "a16.tif"
    hazy = tmp_path / "hazy16.tif"
    with rasterio.open(eight, "w", **profile, count=3, dtype="uint8") as out:
        out.write(rgb)
    with rasterio.open(sixteen, "w", **profile, count=3, dtype="uint16") as out:
        out.write(rgb.astype(np.uint16) * 40 + 300)
    with rasterio.open(hazy, "w", **profile, count=3, dtype="uint16") as out:
        out.write((rgb.astype(np.float64) * 30 + 2500).astype(np.uint16))
    mapping = InputMapping("percentile", 1.0, 99.0)
    a, b = site_stretch([eight, sixteen], [[1, 2, 3]] * 2, [None, None], mapping)
    mapped_8 = (rgb.reshape(3, -1) - a.low[:, None]) / (a.high - a.low)[:, None]
    mapped_16 = (rgb.reshape(3, -1) * 40.0 + 300 - b.low[:, None]) / (b.high - b.low)[:, None]
    assert np.abs(mapped_8 - mapped_16).max() < 1e-9  # the same picture reaches the network
    clear, clouded = site_stretch([sixteen, hazy], [[1, 2, 3]] * 2, [None, None], mapping)
    assert np.array_equal(clear.low, clouded.low) and np.array_equal(clear.high, clouded.high)
    assert "one for all 2 dates" in clear.note
    assert site_stretch([eight, sixteen], [[1, 2, 3]] * 2, [None, None], InputMapping()) is None  # legacy: as today


# --- mixed sensors --------------------------------------------------------------------------------

def test_skysat_then_planetscope_is_judged_at_the_coarser_date(analytic: dict[str, Path], predictor,
                                                               tmp_path: Path) -> None:
    """The same ground as SkySat (~0.55 m, 4-band pansharpened) then PlanetScope (3 m): what the 3 m
    date cannot resolve is no demolition."""
    from affine import Affine

    from sitewatch.pipeline import run_site

    profile, rgb = _profile(DEMO[1])
    values = reflectance(rgb)
    skysat = write_bands(tmp_path / "20230101_101112_ssc2d1_0010_pansharpened.tif", profile,
                         ("blue", "green", "red", "nir"), values, describe=False)
    factor = 3.0 / 0.554  # 0.554 m → 3 m: average the fine pixels
    size = int(profile["width"] / factor)
    coarse = {name: _block_mean(band, size) for name, band in values.items()}
    t = profile["transform"]
    scale = profile["width"] / size
    coarse_profile = {**profile, "width": size, "height": size, "transform": Affine(t.a * scale, 0, t.c, 0,
                                                                                   t.e * scale, t.f)}
    planetscope = write_bands(tmp_path / "20240101_101112_12_2480_3B_AnalyticMS_SR.tif", coarse_profile,
                              ("blue", "green", "red", "nir"), coarse, describe=False)
    summary = run_site([skysat, planetscope], tmp_path / "site", chosen([skysat, planetscope])).summary
    assert [image.pixel_m for image in summary.images] == [pytest.approx(0.554, abs=0.01), pytest.approx(3.0, abs=0.1)]
    assert summary.model.gsd_m >= 1.0  # both dates seen at what the 3 m date resolves (measured: 1 m)
    assert summary.counts.unchanged >= 5 and summary.counts.demolished + summary.counts.new <= 2, summary.counts
    changes = gpd.read_file(tmp_path / "site" / "changes.gpkg", layer="changes")
    assert len(changes) and np.allclose(changes["judged_at_m"], 3.02, atol=0.05)


def test_a_building_the_coarse_date_cannot_resolve_is_not_a_demolition() -> None:
    from sitewatch.coverage import judge_at_resolution

    frame = gpd.GeoDataFrame({"change": ["demolished", "demolished", "new", "unchanged"],
                              "area_m2": [60.0, 400.0, 100.0, 50.0], "flag": [None, None, "housing", None]},
                             geometry=[shapely.box(0, 0, 1, 1)] * 4, crs=32614)
    judged = judge_at_resolution(frame, [0.5, 3.0])
    assert judged["change"].tolist() == ["not_observed", "demolished", "not_observed", "unchanged"]
    assert judged["flag"].isna().tolist() == [True, True, True, True] and set(judged["judged_at_m"]) == {3.0}
    assert "judged_at_m" not in judge_at_resolution(frame, [0.5, 0.55]).columns  # one sensor: as it was


def _block_mean(band: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(band.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA).astype(np.float64)


# --- the command line -----------------------------------------------------------------------------

def test_change_takes_bands_per_date_and_refuses_a_count_that_fits_no_raster(analytic: dict[str, Path],
                                                                              tmp_path: Path) -> None:
    from conftest import assert_one_line_error, run_sitewatch

    rasters = [str(analytic["4b"]), str(analytic["8b"])]
    result = run_sitewatch("change", *rasters, "--bands", "3,2,1", "--bands", "6,4,2", "--bands", "1,2,3",
                           "--out", str(tmp_path / "o"))
    assert_one_line_error(result, "--bands given 3 times for 2 rasters")
    result = run_sitewatch("change", *rasters, "--bands", "3,2,1", "--bands", "9,4,2", "--out", str(tmp_path / "o"))
    assert_one_line_error(result, "bands [9, 4, 2] outside 1..8", "20240514_101112_31_24ab_3B_AnalyticMS_SR_8b.tif")


def test_batch_manifest_takes_bands_per_date(analytic: dict[str, Path], tmp_path: Path) -> None:
    from conftest import assert_one_line_error, run_sitewatch

    from sitewatch.summary import SiteSummary

    folder = analytic["4b"].parent
    manifest = folder / "sites.yaml"
    manifest.write_text(f"sites:\n  - id: mixed\n    rasters: [{analytic['4b'].name}, {analytic['8b'].name}]\n"
                        "    bands: ['3,2,1', '6,4,2']\n    udm: false\n")
    result = run_sitewatch("batch", str(manifest), "--out", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr
    summary = SiteSummary.from_json((tmp_path / "runs" / "mixed" / "summary.json").read_text())
    assert [image.bands.split(";")[1].strip() for image in summary.images] == ["--bands)", "--bands)"]
    assert summary.counts.new + summary.counts.demolished <= 2  # one scene at both dates (measured: 0)
    bad = folder / "bad.yaml"
    bad.write_text(f"sites:\n  - id: mixed\n    rasters: [{analytic['4b'].name}, {analytic['8b'].name}]\n"
                   "    bands: ['3,2,1', '9,4,2']\n")
    assert_one_line_error(run_sitewatch("batch", str(bad), "--out", str(tmp_path / "bad")),
                          "site mixed", "bands [9, 4, 2] outside 1..8")


def test_a_msk_sidecar_is_ground_not_seen_in_change_too(tmp_path: Path) -> None:
    from sitewatch.prepare import DateOptions, ground_mask

    profile, rgb = _profile(DEMO[1])
    image = tmp_path / "site_2024-01-01.tif"
    hidden = np.zeros(rgb.shape[1:], bool)
    hidden[:64] = True
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=False), rasterio.open(image, "w", **profile, count=3,
                                                                      dtype="uint8") as out:
        out.write(rgb)
        out.write_mask(np.where(hidden, 0, 255).astype(np.uint8))
    assert image.with_suffix(".tif.msk").is_file()
    with rasterio.open(DEMO[0]) as reference:
        path, used, removed = ground_mask(reference, image, DateOptions(), True, tmp_path / "ground.tif")
    assert used == ["mask band of the image"] and removed["all"] == pytest.approx(0.25, abs=0.01)


def test_8_bit_and_16_bit_copies_of_one_scene_give_the_same_buildings(predictor, tmp_path: Path) -> None:
    """With a ``percentile`` model (the retrained one's mapping) the dates of a site share one mapping
    measured on their common clear ground: an 8-bit and a 16-bit copy of one scene are no change."""
    import dataclasses

    from sitewatch.modelfile import InputMapping
    from sitewatch.pipeline import run_site

    profile, rgb = _profile(DEMO[1])
    eight, sixteen = tmp_path / "site_2023-01-01.tif", tmp_path / "site_2024-01-01.tif"
    with rasterio.open(eight, "w", **profile, count=3, dtype="uint8", photometric="RGB") as out:
        out.write(rgb)
    with rasterio.open(sixteen, "w", **profile, count=3, dtype="uint16", photometric="RGB") as out:
        out.write(rgb.astype(np.uint16) * 37 + 410)
    model = predictor.model
    metadata = dataclasses.replace(model.metadata, input_mapping=InputMapping("percentile", 1.0, 99.0))
    predictor.model = dataclasses.replace(model, metadata=metadata)
    try:
        summary = run_site([eight, sixteen], tmp_path / "site", predictor).summary
    finally:
        predictor.model = model
    assert summary.counts.new == summary.counts.demolished == 0, summary.counts
    assert all("1-99% stretch measured on the ground clear at every date" in i.input_mapping for i in summary.images)


def test_change_mask_per_date_is_checked_before_the_model_loads(analytic: dict[str, Path], tmp_path: Path) -> None:
    from conftest import assert_one_line_error, run_sitewatch

    rasters = [str(analytic["4b"]), str(analytic["8b"])]
    result = run_sitewatch("change", *rasters, "--mask", "none", "--mask", str(tmp_path / "clouds.tif"),
                           "--out", str(tmp_path / "o"))
    assert_one_line_error(result, f"{tmp_path / 'clouds.tif'}: mask raster not found")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("name", "count", "bands"), [
    ("20230514_101112_12_2480_3B_AnalyticMS_SR_8b_clip.tif", 8, BANDS_8),
    ("20151119_025740_0c74_3B_AnalyticMS_SR.tif", 4, ("blue", "green", "red", "nir")),
    ("20200101_083456_ssc2d1_0010_pansharpened.tif", 4, ("blue", "green", "red", "nir")),
    ("20151119_025740_0c74_3B_Visual.tif", 3, ("red", "green", "blue")),
    ("20240827_120000_site_rgbn.tif", 4, None),  # a date-time name is not a Planet product
    ("site_2024-08-27.tif", 4, None),
])
def test_planet_file_names_give_the_band_order(name: str, count: int, bands, tmp_path: Path) -> None:
    from sitewatch.planet import product_bands

    found = product_bands(tmp_path / name, count)
    assert (found[0] if found else None) == bands


def _mask_like(image: Path, target: Path, values: np.ndarray, *, georeferenced: bool = True,
               crs: str | None = None, shift_m: float = 0.0) -> Path:
    with rasterio.open(image) as source:
        profile = {"driver": "GTiff", "width": source.width, "height": source.height, "count": 1, "dtype": "uint8"}
        if georeferenced:
            transform = source.transform @ rasterio.Affine.translation(shift_m / source.res[0], 0)
            profile.update(crs=crs or source.crs, transform=transform)
    with rasterio.open(target, "w", **profile) as out:
        out.write(values.astype(np.uint8), 1)
    return target


def test_masks_that_would_be_misread_are_refused_before_the_model_loads(analytic: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    """Issue 33: a 0-99 cloud probability read as a 0/1 mask, a mask of another scene that masks nothing,
    a mask without georeferencing of another size: each one line, naming the file, before any work."""
    from conftest import assert_one_line_error, run_sitewatch

    image = analytic["4b"]
    with rasterio.open(image) as source:
        shape = (source.height, source.width)
    probability = _mask_like(image, tmp_path / "cloud_probability.tif", np.arange(shape[0] * shape[1]).reshape(
        shape) % 100)
    elsewhere = _mask_like(image, tmp_path / "other_scene_udm.tif", np.ones(shape), shift_m=50_000)
    loose = tmp_path / "loose.tif"
    with rasterio.open(loose, "w", driver="GTiff", width=100, height=80, count=1, dtype="uint8") as out:
        out.write(np.ones((1, 80, 100), np.uint8))
    for mask, needle in ((probability, "holds 100 different values (0-99)"),
                         (elsewhere, "covers none of"), (loose, "no georeferencing, and 100×80 px")):
        result = run_sitewatch("change", str(analytic["4b"]), str(analytic["8b"]), "--mask", str(mask),
                               "--out", str(tmp_path / "o"))
        assert_one_line_error(result, str(mask), needle)
        assert "model" not in result.stderr.split("error:")[0] and not (tmp_path / "o").exists()


def test_a_mask_without_georeferencing_on_the_images_own_grid_masks_where_it_says(analytic: dict[str, Path],
                                                                                  tmp_path: Path) -> None:
    from sitewatch.prepare import DateOptions, ground_mask

    image = analytic["4b"]
    with rasterio.open(image) as source:
        shape = (source.height, source.width)
        unseen = np.ones(shape, np.uint8)
        unseen[:, : shape[1] // 4] = 0  # the western quarter not seen
        mask = _mask_like(image, tmp_path / "plain_mask.tif", unseen, georeferenced=False)
        written, used, removed = ground_mask(source, image, DateOptions(mask=mask), False, tmp_path / "ground.tif")
    assert used == ["plain_mask.tif"] and removed["all"] == pytest.approx(0.25, abs=0.01)
    with rasterio.open(written) as ground:
        seen = ground.read(1)
    assert (seen[:, : shape[1] // 4] == 0).all() and (seen[:, shape[1] // 4:] == 255).all()


def test_a_date_its_masks_hide_entirely_is_refused_not_diffed(analytic: dict[str, Path], tmp_path: Path) -> None:
    """Issue 33: a fully masked date made every earlier building vanish from every count (20 'unconfirmed')."""
    from conftest import assert_one_line_error, run_sitewatch

    from sitewatch.errors import SitewatchError
    from sitewatch.prepare import check_some_ground_seen

    image = analytic["4b"]
    with rasterio.open(image) as source:
        shape = (source.height, source.width)
    zero = _mask_like(image, tmp_path / "all_clouds.tif", np.zeros(shape))
    result = run_sitewatch("change", str(analytic["4b"]), str(analytic["8b"]), "--mask", "none", "--mask", str(zero),
                           "--out", str(tmp_path / "o"))
    assert_one_line_error(result, str(zero), "is 0 everywhere", "nothing to compare")
    assert not (tmp_path / "o").exists()
    with pytest.raises(SitewatchError, match=r"0\.4 % of the site seen \(cloud 99 %, shadow 1 %\)"):
        check_some_ground_seen(image, {"cloud": 0.99, "shadow": 0.006, "all": 0.996})
    check_some_ground_seen(image, {"cloud": 0.95, "all": 0.95})  # 5 % seen: compared where it saw


def test_the_files_own_colour_interpretation_outranks_a_planet_like_name(tmp_path: Path) -> None:
    """Issue 33: an RGBA drone ortho named by its time stamp was read as a Planet BGRN product (blue as red);
    a 3-band file that names none of its bands is read in order with the guess said, not silently."""
    from rasterio.enums import ColorInterp

    from sitewatch.radiometry import RGB, band_choice

    profile, rgb = _profile(DEMO[1])
    ortho = tmp_path / "20240827_101112_ortho.tif"  # a Planet-like item id and an asset word, no metadata
    rgba = {**profile, "count": 4, "dtype": "uint8", "photometric": "RGB", "alpha": "YES"}
    with rasterio.open(ortho, "w", **rgba) as out:
        out.write(np.concatenate([rgb, np.full((1, *rgb.shape[1:]), 255, np.uint8)]))
    with rasterio.open(ortho) as dataset:
        assert dataset.colorinterp[3] == ColorInterp.alpha
        choice = band_choice(dataset, list(RGB), None)
    assert choice.bands == [1, 2, 3] and choice.source == "colour interpretation" and not choice.guessed
    plain = tmp_path / "site_2024-08-27.tif"
    with rasterio.open(plain, "w", **{**profile, "count": 3, "dtype": "uint8", "photometric": "MINISBLACK"}) as out:
        out.write(rgb[::-1])  # blue, green, red, named nowhere
    with rasterio.open(plain) as dataset:
        guess = band_choice(dataset, list(RGB), None)
    assert guess.bands == [1, 2, 3] and guess.guessed and "3,2,1 for a blue, green, red file" in guess.describe()


def test_an_8_bit_analytic_product_that_gdal_calls_rgba_keeps_its_planet_order(tmp_path: Path) -> None:
    """GDAL gives every 8-bit 4-band GeoTIFF the colour interpretation red, green, blue, alpha: a name only
    Planet products carry (3B_AnalyticMS) still reads blue, green, red, NIR."""
    from sitewatch.radiometry import RGB, band_choice

    profile, rgb = _profile(DEMO[1])
    analytic = tmp_path / "20230101_101010_12_2456_3B_AnalyticMS_SR.tif"
    with rasterio.open(analytic, "w", **{**profile, "count": 4, "dtype": "uint8"}) as out:
        out.write(np.concatenate([rgb[::-1], rgb[:1]]))  # blue, green, red, "nir"
    with rasterio.open(analytic) as dataset:
        choice = band_choice(dataset, list(RGB), None)
    assert choice.bands == [3, 2, 1] and choice.has_nir() == 4


def test_a_0_1_mask_with_nodata_outside_is_read_not_refused(analytic: dict[str, Path], tmp_path: Path) -> None:
    from sitewatch.prepare import check_mask

    image = analytic["4b"]
    with rasterio.open(image) as source:
        shape = (source.height, source.width)
        profile = {"driver": "GTiff", "width": shape[1], "height": shape[0], "count": 1, "dtype": "uint8",
                   "crs": source.crs, "transform": source.transform, "nodata": 255}
    values = np.ones(shape, np.uint8)
    values[:, : shape[1] // 3] = 0
    values[: shape[0] // 5] = 255  # outside the mask's footprint
    with rasterio.open(tmp_path / "clouds.tif", "w", **profile) as out:
        out.write(values, 1)
    check_mask(tmp_path / "clouds.tif", image, generic=True)  # two values and nodata: a mask
