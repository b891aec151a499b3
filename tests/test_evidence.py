"""Flags an analyst can trust (issue 23), on real pixels: the picture must show a change, a re-imaged
site shows none, a rebuilt building is "replaced", an edge-cut hall is a hall, similar blocks are housing."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.transform
from conftest import SAMPLES, chosen
from PIL import Image
from rasterio.features import rasterize
from scipy import ndimage
from shapely.geometry import box

from sitewatch.change import ChangeRules, compare_dates
from sitewatch.checkpoint import load_model
from sitewatch.data.dsifn import read_dsifn_pair
from sitewatch.data.levir import read_levir_pair
from sitewatch.data.pairs import write_pair_rasters
from sitewatch.footprints import measure
from sitewatch.paths import default_model_path
from sitewatch.pipeline import run_site
from sitewatch.predict import Predictor
from sitewatch.products import encode_probability

DEMO = default_model_path().parent / "demo_site"


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(load_model(default_model_path()), device="cpu", backend="auto")


def reimaged(image: np.ndarray, shift_px: int) -> np.ndarray:
    """The same ground imaged again: moved by ``shift_px`` along both axes, hazed, re-exposed, JPEG."""
    moved = np.pad(image, ((0, shift_px), (0, shift_px), (0, 0)), mode="edge")[shift_px:, shift_px:]
    values = moved.astype(np.float32) / 255 * 0.65 + 0.35 * 0.85
    values = np.clip(1.15 * values, 0, 1) ** 0.9
    buffer = io.BytesIO()
    Image.fromarray((values * 255).round().astype(np.uint8)).save(buffer, format="JPEG", quality=60)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def _demo_images() -> tuple[list[np.ndarray], rasterio.Affine, str]:
    images = []
    for path in sorted(DEMO.glob("*.tif")):
        with rasterio.open(path) as dataset:
            images.append(np.moveaxis(dataset.read([1, 2, 3]), 0, -1))
            transform, crs = dataset.transform, dataset.crs.to_string()
    return images, transform, crs


@pytest.mark.parametrize("pair", ["demo", "train_386_0512_0768"])
def test_the_same_ground_reimaged_is_no_change(pair: str, tmp_path: Path, predictor: Predictor) -> None:
    """Later image = the earlier one moved by ~25-30 m, hazed, re-exposed and JPEG-recompressed."""
    if pair == "demo":
        (earlier, _), transform, crs = _demo_images()
        shift = 50  # px of 0.52 × 0.59 m: 25.8 m east-west, 29.7 m north-south
    else:
        levir = read_levir_pair(SAMPLES, pair)
        earlier, transform, crs, shift = levir.earlier, levir.transform, levir.crs, 48
    rasters = write_pair_rasters(pair, earlier, reimaged(earlier, shift), transform, crs, tmp_path / "in")
    summary = run_site(rasters, tmp_path / "out", chosen(rasters)).summary
    assert summary.shift[0].applied and summary.shift[0].response > 0.3
    assert (summary.shift[0].dx_px, summary.shift[0].dy_px) == pytest.approx((-shift, -shift), abs=1)
    counts = summary.counts
    assert (counts.new, counts.expanded, counts.shrunk, counts.replaced, counts.demolished) == (0, 0, 0, 0, 0)
    assert summary.flags.assembly_hall == 0 and summary.flags.housing_clusters == 0


def test_demo_site_reports_no_demolition(tmp_path: Path, predictor: Predictor) -> None:
    """The model takes a sand pad and dirt yards of 2002 for roofs; the pictures do not show a building."""
    summary = run_site(sorted(DEMO.glob("*.tif")), tmp_path / "out", chosen(DEMO.glob("*.tif"))).summary
    assert summary.counts.demolished == 0
    assert summary.counts.new >= 12 and summary.flags.housing_clusters >= 1  # the new houses stay
    assert all(b.image_similarity is not None and b.image_similarity < 0.45 for b in summary.new_buildings)


def test_demolished_and_rebuilt_is_replaced(tmp_path: Path, predictor: Predictor) -> None:
    """LEVIR train_386 at both dates, its 1,300 m² warehouse replaced by a patch of real houses and
    lawn from the demo site's later date."""
    pair = read_levir_pair(SAMPLES, "train_386_0512_0768")
    (_, demo_later), _, _ = _demo_images()
    later = pair.earlier.copy()
    later[60:116, 55:173] = demo_later[8:64, 40:158]
    rasters = write_pair_rasters("rebuilt", pair.earlier, later, pair.transform, pair.crs, tmp_path / "in")
    summary = run_site(rasters, tmp_path / "out", chosen(rasters)).summary
    assert summary.counts.replaced == 1
    assert (summary.counts.new, summary.counts.demolished, summary.counts.expanded) == (0, 0, 0)
    (record,) = [b for b in summary.new_buildings if b.change_class == "replaced"]
    assert record.area_before_m2 == pytest.approx(1312, rel=0.2) and record.before_outline.startswith("POLYGON")
    assert record.image_similarity < 0.2
    report = (tmp_path / "out" / "report.html").read_text()
    assert "those replaced later in pink" in report  # the warehouse's outline drawn at the first date


@pytest.mark.parametrize("size", [None, 3.0])
def test_village_blocks_retraced_are_not_replaced(size: float | None, tmp_path: Path, predictor: Predictor) -> None:
    """DSIFN 0_2 (~2 m, another season and sensor): village blocks traced with other outlines at each
    date (merged, grown, split). Before the stricter rule 36 (native) and 27 (3 m) of them were
    "replaced", none right; a block that still stands on its ground is not a rebuilt one."""
    pair = read_dsifn_pair(SAMPLES, "0_2")
    rasters = write_pair_rasters("village", pair.earlier, pair.later, pair.transform, pair.crs, tmp_path / "in",
                                 coarsen_to_m=size, native_gsd_m=2.0)
    summary = run_site(rasters, tmp_path / "out", chosen(rasters)).summary
    assert summary.counts.replaced <= 3


@pytest.mark.parametrize("size", [None, 3.0])
def test_row_of_touching_apartment_blocks_is_housing_not_a_hall(size: float | None, tmp_path: Path,
                                                                  predictor: Predictor) -> None:
    """A real 74 × 22 m apartment block of DSIFN 8_3 (~2 m, its later image, rows 233-246, cols
    135-173) placed five times side by side, touching, on real scrub of the same image: the model
    traces the row as one 6,700 m² footprint (a hall by size and shape) but its probability dips
    along the party walls; the row is housing, not a hall."""
    pair = read_dsifn_pair(SAMPLES, "8_3")
    ground = pair.later[100:228, 100:228].copy()
    later = ground.copy()
    for k in range(5):
        later[30 + 13 * k: 43 + 13 * k, 45:83] = pair.later[233:246, 135:173]
    transform = pair.transform * rasterio.Affine.translation(100, 100)
    rasters = write_pair_rasters("row", ground, later, transform, pair.crs, tmp_path / "in", coarsen_to_m=size,
                                 native_gsd_m=2.0)
    summary = run_site(rasters, tmp_path / "out", chosen(rasters)).summary
    assert summary.flags.assembly_hall == 0
    assert summary.flags.housing_clusters >= 1
    assert sum(b.area_m2 for b in summary.new_buildings if b.flag == "housing") > 3000


def _add_paving(mask_path: Path, probability_path: Path) -> None:
    """A paved yard the segmentation took in with the hall at about (430367, 3499863) of DSIFN 6_3
    (EPSG:32650): 24 m deep along the hall's north side, over its western 36 m and 34 m beyond its
    western end, in the mask and at probability 0.65 (paving, less sure than the roof)."""
    with rasterio.open(mask_path) as dataset:
        mask, transform = dataset.read(1) == 1, dataset.transform
    labels, _ = ndimage.label(mask)
    row, col = rasterio.transform.rowcol(transform, 430367, 3499863)
    rows, cols = np.nonzero(labels == labels[row, col])
    west, north = transform @ (int(cols.min()), int(rows.min()))
    yard = box(west - 34, north - 2, west + 36, north + 24)
    for path, value in ((mask_path, 1), (probability_path, encode_probability(np.array(0.65)))):
        with rasterio.open(path, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dataset:
            band = dataset.read(1)
            band[rasterize([(yard, 1)], out_shape=band.shape, transform=dataset.transform) > 0] = value
            dataset.write(band, 1)


@pytest.mark.parametrize("size", [None, 3.0])
def test_hall_with_paving_in_its_outline_is_flagged(size: float | None, tmp_path: Path, predictor: Predictor,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """DSIFN 6_3's 7,900 m² hall with a paved yard taken into its later outline (an L of rectangularity
    about 0.6): judged on its roof core, it is still a hall, at 2 m and at 3 m."""
    import sitewatch.pipeline

    segment, calls = sitewatch.pipeline.segment_raster, []

    def with_paving(path: Path, out_dir: Path, *args, **options):
        result = segment(path, out_dir, *args, **options)
        calls.append(path)
        if len(calls) == 2:  # the later date
            _add_paving(result.mask_path, result.probability_path)
        return result

    monkeypatch.setattr(sitewatch.pipeline, "segment_raster", with_paving)
    pair = read_dsifn_pair(SAMPLES, "6_3")
    rasters = write_pair_rasters("paved", pair.earlier, pair.later, pair.transform, pair.crs, tmp_path / "in",
                                 coarsen_to_m=size, native_gsd_m=2.0)
    run_site(rasters, tmp_path / "out", chosen(rasters))
    changes = gpd.read_file(tmp_path / "out" / "changes.gpkg", layer="changes").to_crs(32650)
    (paved,) = changes[changes.intersects(box(430300, 3499905, 430310, 3499915))].itertuples()
    assert paved.rectangularity < 0.75  # the outline alone is no hall
    assert paved.flag == "assembly_hall" and paved.area_m2 > 7000


def _wedge(image: np.ndarray) -> np.ndarray:
    """The lower-left corner beyond a 45° line set to 0 (declared nodata): a diagonal image edge."""
    rows, cols = np.indices(image.shape[:2])
    cut = image.copy()
    cut[(rows - cols) > 0.65 * image.shape[0]] = 0
    return cut


@pytest.mark.parametrize("size", [None, 3.0])
def test_hall_cut_diagonally_by_the_edge_is_flagged(size: float | None, tmp_path: Path,
                                                    predictor: Predictor) -> None:
    """DSIFN 6_3 (new industrial park, ~2 m) with both dates cut diagonally through its halls."""
    pair = read_dsifn_pair(SAMPLES, "6_3")
    rasters = write_pair_rasters("cut", _wedge(pair.earlier), _wedge(pair.later), pair.transform, pair.crs,
                                 tmp_path / "in", coarsen_to_m=size, native_gsd_m=2.0)
    for path in rasters:
        with rasterio.open(path, "r+") as dataset:
            dataset.nodata = 0
    summary = run_site(rasters, tmp_path / "out", chosen(rasters)).summary
    halls = [b for b in summary.new_buildings if b.flag == "assembly_hall"]
    assert any(b.cut_by_edge and b.area_m2 > 3000 for b in halls)


def _rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    """The image turned by ``degrees`` (bilinear, canvas grown; the corners outside it 0 = nodata)."""
    turned = ndimage.rotate(image, degrees, axes=(0, 1), reshape=True, order=1, mode="constant", cval=0)
    return np.where(turned.sum(axis=2, keepdims=True) == 0, 0, np.clip(turned, 1, 255)).astype(np.uint8)


@pytest.mark.parametrize("size", [None, 3.0])
def test_new_halls_at_an_angle_to_the_pixel_grid_are_flagged(size: float | None, tmp_path: Path) -> None:
    """Issue 32: DSIFN 6_3's new industrial park (~2 m) turned by 33°, so its halls lie at an angle to
    the pixel grid at both dates: their footprints are right-angled rectangles, not staircases, and the
    halls are flagged at 2 m and at 3 m."""
    pair = read_dsifn_pair(SAMPLES, "6_3")
    rasters = write_pair_rasters("turned", _rotated(pair.earlier, 33), _rotated(pair.later, 33), pair.transform,
                                 pair.crs, tmp_path / "in", coarsen_to_m=size, native_gsd_m=2.0)
    for path in rasters:
        with rasterio.open(path, "r+") as dataset:
            dataset.nodata = 0
    run_site(rasters, tmp_path / "out", chosen(rasters))
    changes = gpd.read_file(tmp_path / "out" / "changes.gpkg", layer="changes")
    halls = changes[changes["flag"] == "assembly_hall"]
    simple = [g for g in halls.geometry if len(g.exterior.coords) - 1 <= 8]
    assert len(simple) >= 3 and halls["regularized"].all()  # merged halls at 3 m may be one larger L or U
    for outline in simple:
        edges = np.diff(np.asarray(outline.exterior.coords), axis=0)
        directions = np.degrees(np.arctan2(edges[:, 1], edges[:, 0])) % 90
        assert np.all(np.minimum(directions, 90 - directions) > 10)  # off the grid, as turned: no staircase
        assert outline.area > 3000


def test_row_of_similar_blocks_is_housing_not_halls() -> None:
    """Five 70 × 18 m apartment slabs 10 m apart (1,260 m² each: each a hall by size and shape alone)."""
    utm = "EPSG:32650"

    def layer(polygons: list) -> gpd.GeoDataFrame:
        frame = gpd.GeoDataFrame(geometry=polygons, crs=utm)
        return frame.assign(**measure(frame.geometry), mean_probability=0.9)

    existing = [box(500, 500, 520, 520)]
    slabs = [box(0, 28 * i, 70, 28 * i + 18) for i in range(5)]
    hall = box(300, 0, 350, 40)  # a lone 2,000 m² hall beside them stays a hall
    changes = compare_dates([layer(existing), layer(existing + slabs + [hall])],
                            [dt.date(2020, 1, 1), dt.date(2024, 1, 1)], ChangeRules.default()).changes
    flags = changes.set_index(changes.geometry.bounds["minx"].round())["flag"]
    assert (flags.loc[0.0] == "housing").all() and flags.loc[300.0] == "assembly_hall"
