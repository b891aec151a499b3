"""Readers of the full public datasets in their official layouts, on real sample pixels.

Each fixture arranges real files from ``data/samples`` the way the dataset publishes them
(folder names, file names, band count and order, bit depth, CRS) and the test reads them back
through the layout's reader: labels against the source's own labels, groups, pixel sizes.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import SAMPLES
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import rasterize, shapes
from rasterio.warp import Resampling, calculate_default_transform, reproject
from shapely.geometry import shape

from sitewatch.data.common import IGNORE, read_binary_mask, read_rgb
from sitewatch.data.layouts import LAYOUTS, read_layout
from sitewatch.errors import SitewatchError

OWN = SAMPLES / "own_data"
BANEPA_TIF = OWN / "banepa_utm45n.tif"
BANEPA_GPKG = OWN / "banepa_buildings_4326.gpkg"


def _write(path: Path, pixels: np.ndarray, crs=None, transform=None, **extra) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = pixels if pixels.ndim == 3 else pixels[None]
    profile = {"driver": "GTiff", "width": pixels.shape[2], "height": pixels.shape[1], "count": pixels.shape[0],
               "dtype": pixels.dtype.name, **extra}
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as out:
            out.write(pixels)
    return path


def _banepa_in(crs: str) -> tuple[np.ndarray, Affine]:
    """The own-data sample's real pixels warped to ``crs`` (RGB uint8, nodata 0)."""
    with rasterio.open(BANEPA_TIF) as source:
        transform, width, height = calculate_default_transform(source.crs, crs, source.width, source.height,
                                                               *source.bounds)
        out = np.zeros((3, height, width), np.uint8)
        reproject(source.read(), out, src_transform=source.transform, src_crs=source.crs, dst_transform=transform,
                  dst_crs=crs, resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
    return out, transform


def _geojson(path: Path, frame: gpd.GeoDataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_file(path, driver="GeoJSON")
    return path


def _burned(frame: gpd.GeoDataFrame, crs, transform, shape_hw) -> np.ndarray:
    """Pixels whose centre falls inside a footprint (the readers' rule), computed independently."""
    moved = frame.to_crs(crs)
    return rasterize([(g, 1) for g in moved.geometry], out_shape=shape_hw, transform=transform) == 1


@pytest.fixture(scope="module")
def spacenet2(tmp_path_factory) -> Path:
    """``AOI_2_Vegas_Train``: 3-band 16-bit pan-sharpened RGB in EPSG:4326 + building GeoJSON."""
    root = tmp_path_factory.mktemp("sn2") / "AOI_2_Vegas_Train"
    pixels, transform = _banepa_in("EPSG:4326")
    _write(root / "RGB-PanSharpen" / "RGB-PanSharpen_AOI_2_Vegas_img1.tif", pixels.astype(np.uint16) * 8,
           "EPSG:4326", transform, nodata=0)
    _geojson(root / "geojson" / "buildings" / "buildings_AOI_2_Vegas_img1.geojson", gpd.read_file(BANEPA_GPKG))
    # a tile without buildings: SpaceNet publishes an empty FeatureCollection for it
    _write(root / "RGB-PanSharpen" / "RGB-PanSharpen_AOI_2_Vegas_img2.tif", pixels[:, :64, :64].astype(np.uint16) * 8,
           "EPSG:4326", transform @ Affine.translation(0, -64))
    (root / "geojson" / "buildings" / "buildings_AOI_2_Vegas_img2.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": []}))
    return root


def test_spacenet2_reads_16bit_rgb_and_geojson(spacenet2: Path) -> None:
    samples = list(read_layout("spacenet2", spacenet2.parent))  # the folder above the AOI works too
    assert [s.name for s in samples] == ["AOI_2_Vegas_img1", "AOI_2_Vegas_img2"]
    first, empty = samples
    with rasterio.open(spacenet2 / "RGB-PanSharpen" / "RGB-PanSharpen_AOI_2_Vegas_img1.tif") as dataset:
        expected = _burned(gpd.read_file(BANEPA_GPKG), dataset.crs, dataset.transform, first.label.shape)
        valid = dataset.dataset_mask() > 0
    assert np.array_equal(first.label == 1, expected & valid)  # footprints burned where there is imagery
    assert np.all(first.label[~valid] == IGNORE) and expected.sum() > 150_000
    assert first.image.dtype == np.uint8 and first.image[valid].std() > 20  # 16-bit stretched, not flat
    assert first.group == empty.group and first.group.startswith("spacenet2/AOI_2_Vegas/")
    assert 0.2 < first.gsd_m < 0.3 and first.crs == "EPSG:4326"
    assert empty.n_polygons == 0 and not (empty.label == 1).any()


@pytest.fixture(scope="module")
def spacenet4(tmp_path_factory) -> Path:
    """Two looks of one tile: 4-band 16-bit blue-green-red-NIR + the tile's shared GeoJSON."""
    root = tmp_path_factory.mktemp("sn4") / "SN4_buildings_AOI_6_Atlanta_train"
    with rasterio.open(BANEPA_TIF) as source:
        rgb, crs, transform = source.read(), source.crs, source.transform
    bgrn = np.stack([rgb[2], rgb[1], rgb[0], rgb.mean(axis=0).astype(np.uint8)]).astype(np.uint16) * 8
    for look in ("Atlanta_nadir7_catid_1030010003D22F00", "Atlanta_nadir44_catid_10300100062D2C00"):
        _write(root / look / "Pan-Sharpen" / f"Pan-Sharpen_{look}_733601_3724689.tif", bgrn, crs, transform,
               photometric="MINISBLACK")
    _geojson(root / "geojson" / "spacenet-buildings" / "spacenet-buildings_733601_3724689.geojson",
             gpd.read_file(BANEPA_GPKG))
    return root


def test_spacenet4_looks_share_one_group_and_bands_come_back_in_rgb_order(spacenet4: Path) -> None:
    samples = list(read_layout("spacenet4", spacenet4))
    assert len(samples) == 2
    assert {s.group for s in samples} == {"spacenet4/733601_3724689"}  # the same ground: never split
    assert sorted(s.extra["nadir_deg"] for s in samples) == [7, 44]
    with rasterio.open(BANEPA_TIF) as source:
        rgb = np.moveaxis(source.read(), 0, -1).astype(float)
        valid = source.dataset_mask() > 0
    image = samples[0].image.astype(float)
    # red comes from band 3, blue from band 1: each output band tracks its own source band
    for band in range(3):
        corr = np.corrcoef(image[valid][:, band], rgb[valid][:, band])[0, 1]
        assert corr > 0.99, (band, corr)
    assert (samples[0].label == 1).sum() > 0.2 * valid.sum()


@pytest.fixture(scope="module")
def spacenet7(tmp_path_factory) -> Path:
    """One area, two months: RGBA uint8 mosaics in EPSG:3857, monthly GeoJSON, a UDM cloud mask."""
    aoi = tmp_path_factory.mktemp("sn7") / "train" / "L15-1690E-1211N_6763_3346_13"
    with rasterio.open(SAMPLES / "shanghai" / "google_0_10.tif") as source:
        rgba, crs, transform = source.read(), source.crs, source.transform
    with rasterio.open(SAMPLES / "shanghai" / "height_0_10.tif") as heights:
        building = ((heights.read(1) != 65535) & (heights.read(1) > 0)).astype(np.uint8)
    polygons = [shape(g) for g, v in shapes(building, mask=building > 0, transform=transform) if v]
    frame = gpd.GeoDataFrame(geometry=polygons, crs=crs)
    cloud = np.zeros(building.shape, np.uint8)
    cloud[:100, :100] = 255
    for month in ("2018_01", "2018_02"):
        stem = f"global_monthly_{month}_mosaic_{aoi.name}"
        _write(aoi / "images" / f"{stem}.tif", rgba, crs, transform, photometric="RGB", alpha="YES")
        _geojson(aoi / "labels" / f"{stem}_Buildings.geojson", frame)
        _write(aoi / "UDM_masks" / f"{stem}_UDM.tif", cloud if month == "2018_02" else cloud * 0, crs, transform)
    return aoi.parents[1]


def test_spacenet7_months_of_one_area_share_a_group_and_clouds_are_unlabelled(spacenet7: Path) -> None:
    clear, cloudy = read_layout("spacenet7", spacenet7)
    with rasterio.open(SAMPLES / "shanghai" / "height_0_10.tif") as heights:
        building = (heights.read(1) != 65535) & (heights.read(1) > 0)
    assert np.array_equal(clear.label == 1, building)  # polygons traced from the raster burn back exactly
    assert clear.group == cloudy.group == "spacenet7/L15-1690E-1211N_6763_3346_13"
    assert (cloudy.label[:100, :100] == IGNORE).all() and (clear.label != IGNORE).all()
    assert 0.8 < clear.gsd_m < 0.9  # EPSG:3857 at 31° N: 1 m units are ~0.86 m on the ground


@pytest.fixture(scope="module")
def inria(tmp_path_factory) -> Path:
    """``AerialImageDataset``: georeferenced RGB GeoTIFFs (UTM, 0.3 m) with 0/255 ``gt``; test has no gt."""
    root = tmp_path_factory.mktemp("inria") / "AerialImageDataset"
    image = read_rgb(SAMPLES / "inria_austin" / "img" / "austin3_00294_332_293.png")
    mask = read_binary_mask(SAMPLES / "inria_austin" / "label" / "austin3_00294_332_293.png") * 255
    transform = Affine(0.3, 0, 620000, 0, -0.3, 3350000)
    _write(root / "train" / "images" / "austin3.tif", np.moveaxis(image, -1, 0), "EPSG:26914", transform,
           photometric="RGB")
    _write(root / "train" / "gt" / "austin3.tif", mask, "EPSG:26914", transform)
    _write(root / "test" / "images" / "bellingham1.tif", np.moveaxis(image, -1, 0), "EPSG:26910", transform)
    return root


def test_inria_reads_train_with_gt_and_skips_test(inria: Path) -> None:
    (sample,) = read_layout("inria", inria)
    expected = read_binary_mask(SAMPLES / "inria_austin" / "label" / "austin3_00294_332_293.png")
    assert np.array_equal(sample.label, expected)
    assert sample.group == "inria/austin3" and sample.gsd_m == pytest.approx(0.3, rel=1e-3)
    assert not sample.gsd_estimated


@pytest.fixture(scope="module")
def whu(tmp_path_factory) -> Path:
    """WHU building: ``{train,val}/{image,label}/*.tif`` without georeferencing."""
    root = tmp_path_factory.mktemp("whu") / "WHU-Building"
    image = read_rgb(SAMPLES / "benchmark_samples" / "whu_sample" / "ottawa.png")
    mask = read_binary_mask(SAMPLES / "benchmark_samples" / "whu_sample" / "ottawa_gt.png") * 255
    for split in ("train", "val"):
        _write(root / split / "image" / "1.tif", np.moveaxis(image, -1, 0), photometric="RGB")
        _write(root / split / "label" / "1.tif", mask)
    return root


def test_whu_reads_each_split_as_a_group(whu: Path) -> None:
    samples = list(read_layout("whu", whu))
    assert [s.group for s in samples] == ["whu/train", "whu/val"]
    expected = read_binary_mask(SAMPLES / "benchmark_samples" / "whu_sample" / "ottawa_gt.png")
    assert np.array_equal(samples[0].label, expected)
    assert samples[0].gsd_m == 0.3 and samples[0].gsd_estimated


@pytest.fixture(scope="module")
def massachusetts(tmp_path_factory) -> Path:
    """Massachusetts Buildings: ``tiff/train/*.tiff`` and ``tiff/train_labels/*.tif``, white = no imagery."""
    root = tmp_path_factory.mktemp("mass") / "massachusetts-buildings"
    image = read_rgb(SAMPLES / "benchmark_samples" / "inria" / "images" / "austin3_45.png").copy()
    image[:40, :] = 255  # how the dataset marks ground outside the aerial survey
    mask = read_binary_mask(SAMPLES / "benchmark_samples" / "inria" / "gt" / "austin3_45.png") * 255
    _write(root / "tiff" / "train" / "22678915_15.tiff", np.moveaxis(image, -1, 0), photometric="RGB")
    _write(root / "tiff" / "train_labels" / "22678915_15.tif", mask)
    return root


def test_massachusetts_white_ground_is_unlabelled(massachusetts: Path) -> None:
    (sample,) = read_layout("massachusetts", massachusetts)
    expected = read_binary_mask(SAMPLES / "benchmark_samples" / "inria" / "gt" / "austin3_45.png")
    assert (sample.label[:40] == IGNORE).all()
    assert np.array_equal(sample.label[40:], expected[40:])
    assert sample.group == "massachusetts/train" and sample.gsd_m == 1.0


@pytest.fixture(scope="module")
def xbd(tmp_path_factory) -> Path:
    """xBD: ``train`` and ``hold`` splits of ``images/*_pre_disaster.png`` + ``labels/*.json``."""
    root = tmp_path_factory.mktemp("xbd") / "xview2"
    stem = "joplin-tornado_00000000_pre_disaster"
    for split in ("train", "hold"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        shutil.copy(SAMPLES / "xbd" / "joplin" / "images" / f"{stem}.png", root / split / "images")
        shutil.copy(SAMPLES / "xbd" / "joplin" / "labels" / f"{stem}.json", root / split / "labels")
    return root


def test_xbd_official_layout_groups_by_split_and_disaster(xbd: Path) -> None:
    samples = list(read_layout("xbd", xbd))
    assert [s.group for s in samples] == ["xbd/train/joplin-tornado", "xbd/hold/joplin-tornado"]
    assert samples[0].n_polygons == 185 and 0.4 < samples[0].gsd_m < 0.5
    assert (samples[0].label == 1).sum() > 10_000


def test_every_layout_has_a_test_here() -> None:
    tested = {"spacenet2", "spacenet4", "spacenet7", "inria", "whu", "massachusetts", "xbd", "marked"}
    assert set(LAYOUTS) == tested


def test_layout_mistakes_are_one_line_errors(tmp_path: Path, spacenet2: Path) -> None:
    with pytest.raises(SitewatchError, match="unknown dataset layout"):
        read_layout("spacenet9", tmp_path)
    with pytest.raises(SitewatchError, match="not found"):
        read_layout("inria", tmp_path / "missing")
    with pytest.raises(SitewatchError, match="no SpaceNet 2 AOI folder"):
        list(read_layout("spacenet2", tmp_path))
    broken = tmp_path / "AOI_2_Vegas_Train"
    shutil.copytree(spacenet2, broken)
    (broken / "geojson" / "buildings" / "buildings_AOI_2_Vegas_img2.geojson").unlink()
    with pytest.raises(SitewatchError, match="no building GeoJSON for img2"):
        list(read_layout("spacenet2", broken))


def test_marked_crops_are_sparse_labels_on_the_working_grid(samples: Path, tmp_path: Path) -> None:
    """The by-eye marks of a real PlanetScope crop as training labels: buildings 1, marked open ground
    (apron, aircraft...) 0, the rest unlabelled; a crop whose image is not in the folder is left to the report."""
    from shapely.geometry import mapping

    from sitewatch.marks import read_marks

    marks = read_marks(samples / "planetscope_dev/reference.json", "planesnet_scene_2", (256, 0, 768, 512))
    crop = {"file": "w.png", "large_buildings": [], "open_ground": []}
    for mark in marks:
        outline = [list(point) for point in mapping(mark.outline)["coordinates"][0]]
        entry = {"id": mark.id, "kind": mark.kind, "polygon": outline}
        crop["large_buildings" if mark.building else "open_ground"].append(entry)
    other = {"file": "absent.png", "large_buildings": [], "open_ground": []}
    reference = {"pixel_size_m": 3.0, "crops": {"planesnet_scene_2_w": crop, "elsewhere": other}}
    (tmp_path / "reference.json").write_text(json.dumps(reference))
    shutil.copyfile(samples / "planetscope_dev/planesnet_scene_2_w.png", tmp_path / "w.png")
    (image,) = read_layout("marked", tmp_path)
    assert image.group == "marked/planesnet_scene_2_w" and image.gsd_m == 1.0 and image.extra["sensor_gsd_m"] == 3.0
    assert image.image.shape[:2] == (1536, 1536) == image.label.shape  # 512 px of 3 m shown at 1 m
    building_m2 = sum(m.outline.area for m in marks if m.building) * 9
    assert (image.label == 1).sum() == pytest.approx(building_m2, rel=0.05)
    assert (image.label == 0).sum() > 0 and (image.label == IGNORE).mean() > 0.7
    assert len(crop["open_ground"]) >= 17 and any(m.kind == "aircraft" for m in marks if not m.building)
    (tmp_path / "reference.json").unlink()
    with pytest.raises(SitewatchError, match="no reference.json"):
        list(read_layout("marked", tmp_path))
