"""Footprints from real labels and constructed masks; evaluation on hand-checked cases."""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from conftest import assert_one_line_error, run_sitewatch
from rasterio.features import rasterize
from shapely.geometry import box

from sitewatch.data.geodata import read_footprints
from sitewatch.data.slippy import read_fair_banepa
from sitewatch.errors import SitewatchError
from sitewatch.evaluate import match_polygons, object_scores, pixel_scores
from sitewatch.footprints import (
    ATTRIBUTES,
    FootprintOptions,
    vectorize_raster,
    write_footprints,
)


def _write_mask(path: Path, mask: np.ndarray, crs, transform: Affine, nodata=255) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=mask.shape[1], height=mask.shape[0], count=1,
                       dtype="uint8", crs=crs, transform=transform, nodata=nodata) as out:
        out.write(mask.astype(np.uint8)[None])
    return path


def _separated(polygons: gpd.GeoDataFrame, gap: float) -> gpd.GeoDataFrame:
    """Buildings farther than ``gap`` (CRS units) from every other one."""
    grown = polygons.buffer(gap / 2)
    left, right = shapely.STRtree(grown.values).query(grown.values, predicate="intersects")
    return polygons.drop(index=list(set(left[left != right].tolist()))).reset_index(drop=True)


def _banepa(samples: Path):
    """Real OSM buildings of the dense Banepa sample (0.13 m pixels, EPSG:3857)."""
    (mosaic,) = read_fair_banepa(samples)
    label_file = next((samples / "fair_banepa" / "osm").glob("*.geojson"))
    polygons = read_footprints(label_file).to_crs(3857)
    grid = box(*rasterio.transform.array_bounds(*mosaic.label.shape, mosaic.transform))
    polygons = polygons[polygons.within(grid)].reset_index(drop=True)
    return _separated(polygons, 0.35), mosaic.transform, mosaic.label.shape, "EPSG:3857"


def _joplin(samples: Path):
    """Real xBD Joplin buildings (pixel WKT), placed on a UTM grid at their measured 0.45 m."""
    from shapely import affinity

    from sitewatch.data.xbd import gsd_from_polygon_pairs, read_xbd_json

    pixel, lonlat, _ = read_xbd_json(samples / "xbd/joplin/labels/joplin-tornado_00000000_pre_disaster.json")
    gsd = gsd_from_polygon_pairs(pixel, lonlat)
    transform = Affine(gsd, 0, 360000, 0, -gsd, 4100000)
    placed = [affinity.affine_transform(p, [gsd, 0, 0, -gsd, 360000, 4100000]) for p in pixel]
    polygons = gpd.GeoDataFrame(geometry=placed, crs="EPSG:32615")
    return _separated(polygons, 1.0), transform, (1024, 1024), "EPSG:32615"


@pytest.mark.parametrize("source", ["banepa", "joplin"])
def test_real_labels_round_trip(source: str, samples: Path, tmp_path: Path) -> None:
    separated, transform, shape, crs = {"banepa": _banepa, "joplin": _joplin}[source](samples)
    assert len(separated) >= 20
    mask = rasterize([(g, 1) for g in separated.geometry], out_shape=shape, transform=transform)
    path = _write_mask(tmp_path / "mask.tif", mask, crs, transform)
    footprints = vectorize_raster(path, options=FootprintOptions(min_area_m2=2.0))
    assert footprints.crs == separated.crs
    assert list(footprints.columns[:-1]) == ATTRIBUTES
    scores = object_scores(footprints, separated)
    assert scores.f1 >= 0.95, scores.as_dict()
    # areas in true ground m² (UTM), against the label polygons measured the same way
    utm = separated.estimate_utm_crs()
    truth_area = separated.to_crs(utm).area.sum()
    assert abs(footprints["area_m2"].sum() - truth_area) / truth_area <= 0.05
    # regularized buildings have right angles (within 2°)
    for polygon in footprints[footprints.regularized].to_crs(utm).geometry:
        ring = np.asarray(polygon.exterior.coords)[:-1]
        edges = np.roll(ring, -1, axis=0) - ring
        for a, b in zip(edges, np.roll(edges, -1, axis=0), strict=True):
            cosine = np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)
            angle = math.degrees(math.acos(np.clip(cosine, -1, 1)))
            assert min(abs(angle - 90), abs(angle), abs(angle - 180)) <= 2.0
    assert footprints.regularized.mean() > 0.5


def test_building_across_a_strip_seam_stays_whole(tmp_path: Path) -> None:
    mask = np.zeros((200, 200), np.uint8)
    mask[40:120, 50:150] = 1  # crosses the strip border at row 64
    path = _write_mask(tmp_path / "m.tif", mask, "EPSG:32633", Affine(0.5, 0, 500000, 0, -0.5, 5000000))
    footprints = vectorize_raster(path, options=FootprintOptions(strip_rows=64))
    assert len(footprints) == 1
    assert footprints.area_m2.iloc[0] == pytest.approx(80 * 100 * 0.25, rel=0.01)
    assert footprints.length_m.iloc[0] == pytest.approx(50, rel=0.01)
    assert footprints.width_m.iloc[0] == pytest.approx(40, rel=0.01)


def test_square_in_geographic_raster_has_true_area(tmp_path: Path) -> None:
    # a 40 m × 40 m square near 47° N, rasterized on a 4326 grid of ~0.25 m pixels
    from pyproj import Transformer

    to_geo = Transformer.from_crs(32632, 4326, always_xy=True)
    x0, y0 = 500000.0, 5205000.0
    square = shapely.transform(box(x0, y0, x0 + 40, y0 + 40), lambda xy: np.column_stack(to_geo.transform(*xy.T)))
    left, bottom, right, top = square.buffer(0.0003).bounds
    res_x, res_y = 0.25 / (111320 * math.cos(math.radians((top + bottom) / 2))), 0.25 / 111320
    width, height = int((right - left) / res_x), int((top - bottom) / res_y)
    transform = Affine(res_x, 0, left, 0, -res_y, top)
    mask = rasterize([(square, 1)], out_shape=(height, width), transform=transform)
    footprints = vectorize_raster(_write_mask(tmp_path / "geo.tif", mask, "EPSG:4326", transform))
    assert footprints.crs.to_epsg() == 4326 and len(footprints) == 1
    assert footprints.area_m2.iloc[0] == pytest.approx(1600, rel=0.01)
    assert footprints.regularized.iloc[0]


def test_touching_buildings_are_split(tmp_path: Path) -> None:
    mask = np.zeros((120, 220), np.uint8)
    mask[20:100, 20:100] = 1
    mask[20:100, 120:200] = 1
    mask[55:65, 100:120] = 1  # a 5 m wide neck joins two 40 m houses
    path = _write_mask(tmp_path / "two.tif", mask, "EPSG:32633", Affine(0.5, 0, 500000, 0, -0.5, 5000000))
    assert len(vectorize_raster(path)) == 2
    assert len(vectorize_raster(path, options=FootprintOptions(split_touching=False))) == 1


def test_empty_mask_gives_empty_layer_with_schema(tmp_path: Path) -> None:
    path = _write_mask(tmp_path / "empty.tif", np.zeros((64, 64)), "EPSG:32633",
                       Affine(0.5, 0, 500000, 0, -0.5, 5000000))
    frame = vectorize_raster(path)
    assert frame.empty and frame.crs.to_epsg() == 32633
    write_footprints(frame, tmp_path / "e.gpkg", tmp_path / "e.geojson")
    back = gpd.read_file(tmp_path / "e.gpkg", layer="footprints")
    assert list(back.columns[:-1]) == ATTRIBUTES and len(back) == 0
    assert gpd.read_file(tmp_path / "e.geojson").empty


@pytest.mark.timeout(300)  # a hang guard only: speed is measured in bench/vectorize.py
def test_hundred_thousand_specks_leave_one_building(tmp_path: Path) -> None:
    mask = np.zeros((640, 640), np.uint8)
    mask[::2, ::2] = 1  # 102,400 isolated one-pixel specks
    mask[100:160, 100:200] = 1  # and one real building
    path = _write_mask(tmp_path / "specks.tif", mask, "EPSG:32633", Affine(0.5, 0, 500000, 0, -0.5, 5000000))
    frame = vectorize_raster(path)
    assert len(frame) == 1


def test_pixel_scores_by_hand() -> None:
    predicted = np.array([[1, 1, 0], [0, 1, 0]])
    reference = np.array([[1, 0, 0], [0, 1, 1]])
    scores = pixel_scores(predicted, reference)
    assert (scores.true_positive, scores.false_positive, scores.false_negative) == (2, 1, 1)
    assert scores.iou == pytest.approx(2 / 4) and scores.f1 == pytest.approx(4 / 6)


def test_object_scores_by_hand() -> None:
    reference = [box(0, 0, 10, 10), box(20, 0, 30, 10), box(40, 0, 50, 10)]
    predicted = [box(0, 0, 10, 8),      # IoU 0.8: match
                 box(20, 0, 30, 4),     # IoU 0.4: no match
                 box(0, 0, 10, 10),     # duplicate of a matched building: false positive
                 box(100, 0, 110, 10)]  # nothing there
    scores = match_polygons(predicted, reference)
    assert (scores.true_positive, scores.false_positive, scores.false_negative) == (1, 3, 2)
    assert scores.precision == pytest.approx(0.25) and scores.recall == pytest.approx(1 / 3)
    assert scores.f1 == pytest.approx(2 * 0.25 * (1 / 3) / (0.25 + 1 / 3))
    assert scores.reference_iou.tolist() == [1.0, 0.0, 0.0]  # the exact copy wins the match


def test_evaluate_cli_on_masks(tmp_path: Path) -> None:
    transform = Affine(0.5, 0, 500000, 0, -0.5, 5000000)
    reference = np.zeros((100, 100), np.uint8)
    reference[10:30, 10:30] = 1
    reference[50:90, 50:90] = 1
    predicted = np.zeros_like(reference)
    predicted[10:30, 12:30] = 1  # IoU 0.9 with the first
    ref = _write_mask(tmp_path / "ref.tif", reference, "EPSG:32633", transform)
    pred = _write_mask(tmp_path / "pred.tif", predicted, "EPSG:32633", transform)
    result = run_sitewatch("evaluate", str(pred), str(ref), "--out", str(tmp_path / "ev"))
    assert result.returncode == 0, result.stderr
    import json

    report = json.loads((tmp_path / "ev" / "scores.json").read_text())
    assert report["pixel"]["iou"] == pytest.approx(360 / 2000)
    assert report["object"]["true_positive"] == 1 and report["object"]["false_negative"] == 1
    per_building = gpd.read_file(tmp_path / "ev" / "buildings.gpkg")
    assert sorted(per_building.iou.round(2).tolist()) == [0.0, 0.9]


def test_bad_masks(tmp_path: Path) -> None:
    transform = Affine(0.5, 0, 500000, 0, -0.5, 5000000)
    noisy = (np.arange(64 * 64).reshape(64, 64) % 7).astype(np.uint8)
    bad = _write_mask(tmp_path / "noisy.tif", noisy, "EPSG:32633", transform, nodata=255)
    with pytest.raises(SitewatchError, match="not a binary mask"):
        vectorize_raster(bad)
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00garbage" * 100)
    result = run_sitewatch("vectorize", str(corrupt))
    assert_one_line_error(result, "corrupt.tif")
    assert not list(tmp_path.glob("footprints*"))


def _hall_at_3m(path: Path, angle_deg: float) -> Path:
    """A 60 × 25 m hall turned ``angle_deg`` off the grid, seen by a 3 m sensor: each pixel's probability is
    the share of it the roof covers (a 0.25 m rendering averaged into 3 m pixels), UTM 10N."""
    import cv2

    fine = 0.25
    rows, cols = np.mgrid[0:960, 0:960] * fine
    turn = np.deg2rad(angle_deg)
    along = (cols - 120) * np.cos(turn) + (rows - 120) * np.sin(turn)
    across = -(cols - 120) * np.sin(turn) + (rows - 120) * np.cos(turn)
    roof = ((np.abs(along) < 30) & (np.abs(across) < 12.5)).astype(np.float32)
    probability = cv2.resize(roof, (80, 80), interpolation=cv2.INTER_AREA)
    with rasterio.open(path, "w", driver="GTiff", width=80, height=80, count=1, dtype="float32",
                       crs="EPSG:32610", transform=Affine(3, 0, 500000, 0, -3, 4200000)) as out:
        out.write(probability, 1)
    return path


@pytest.mark.parametrize("angle_deg", [30.0, 12.0])
def test_a_hall_off_a_coarse_grid_is_traced_straight_not_as_a_staircase(tmp_path: Path, angle_deg: float) -> None:
    raster = _hall_at_3m(tmp_path / "hall.tif", angle_deg)
    hall = vectorize_raster(raster).iloc[0]
    assert hall["rectangularity"] > 0.97 and hall["regularized"]
    assert hall["area_m2"] == pytest.approx(1500, rel=0.04)
    assert hall["length_m"] == pytest.approx(60, abs=1.5) and hall["width_m"] == pytest.approx(25, abs=1.5)
    on_grid = vectorize_raster(raster, options=FootprintOptions(subpixel_from_m=math.inf)).iloc[0]
    # traced on its own 3 m grid the outline is a staircase, which regularization now straightens too
    assert on_grid["rectangularity"] > 0.95 and on_grid["regularized"]


def _probability_raster(path: Path, values: np.ndarray, pixel_m: float) -> Path:
    transform = rasterio.Affine(pixel_m, 0, 500000.0, 0, -pixel_m, 4000000.0)
    with rasterio.open(path, "w", driver="GTiff", width=values.shape[1], height=values.shape[0], count=1,
                       dtype="float32", crs="EPSG:32633", transform=transform) as out:
        out.write(values.astype("float32"), 1)
    return path


def test_a_roof_is_cut_from_the_paving_it_touches(tmp_path: Path) -> None:
    """Issue 32: a 60 x 60 m hall roof (probability 0.95) with a 30 x 60 m yard beside it that the network
    scored 0.7: the outline is the hall, not hall and yard; a building with no confident roof keeps its outline,
    and a building under roof_core_min_m2 is never cut."""
    pixel_m = 0.5
    values = np.zeros((240, 240), np.float32)
    values[40:160, 40:160] = 0.95  # the roof, 60 x 60 m
    values[40:160, 160:220] = 0.7  # the yard, 30 x 60 m, touching it
    (hall,) = vectorize_raster(_probability_raster(tmp_path / "hall.tif", values, pixel_m)).itertuples()
    assert hall.area_m2 == pytest.approx(3600, rel=0.04)  # the roof (its 1 m rim grown back), not 5,400 m²
    unsure = np.where(values > 0, 0.7, 0.0)  # no roof core: kept as found
    (whole,) = vectorize_raster(_probability_raster(tmp_path / "unsure.tif", unsure, pixel_m)).itertuples()
    assert whole.area_m2 == pytest.approx(5400, rel=0.02)
    small = np.zeros((240, 240), np.float32)
    small[40:100, 40:80], small[40:100, 80:110] = 0.95, 0.7  # 600 + 450 m²: below 2,000 m², not cut
    (house,) = vectorize_raster(_probability_raster(tmp_path / "small.tif", small, pixel_m)).itertuples()
    assert house.area_m2 == pytest.approx(1050, rel=0.03)
    kept = vectorize_raster(_probability_raster(tmp_path / "off.tif", values, pixel_m),
                            options=FootprintOptions(roof_core_p=None))
    assert kept.area_m2.iloc[0] == pytest.approx(5400, rel=0.02)  # the cut can be switched off
    coarse = values[::4, ::4]  # the same ground at 2 m: not cut (measured to cost pixel IoU at 2-3 m)
    (blurred,) = vectorize_raster(_probability_raster(tmp_path / "coarse.tif", coarse, 2.0)).itertuples()
    assert blurred.area_m2 == pytest.approx(5400, rel=0.06)
