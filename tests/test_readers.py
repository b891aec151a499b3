"""Every reader on the real sample files: aligned pairs, plausible labels, polygon counts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from sitewatch.data.common import IGNORE
from sitewatch.data.masks import colour_mask_to_label
from sitewatch.data.sources import SOURCES, available_sources, read_source
from sitewatch.data.xbd import read_idabd, read_xbd_json
from sitewatch.errors import SitewatchError

# (source, expected images in data/samples, (min, max) building share, (min, max) gsd in m)
EXPECTED = {
    "fair_ramp": (4, (0.05, 0.5), (0.25, 0.30)),
    "fair_banepa": (1, (0.3, 0.8), (0.12, 0.14)),
    "dubai": (1, (0.001, 0.3), (0.6, 0.6)),
    "xbd": (1, (0.05, 0.5), (0.6, 0.6)),
    "joplin": (1, (0.05, 0.4), (0.35, 0.6)),
    "benchmark_samples": (4, (0.01, 0.7), (0.3, 0.6)),
    "inria_austin": (2, (0.1, 0.6), (0.3, 0.3)),
    "shanghai": (1, (0.05, 0.5), (0.8, 0.9)),
    "open_cities": (1, (0.1, 0.9), (0.01, 0.03)),
}


def test_every_source_present_in_samples(samples: Path) -> None:
    assert set(available_sources(samples)) >= set(EXPECTED) | {"spacenet7"}
    assert set(EXPECTED) | {"idabd", "spacenet7"} == set(SOURCES)


def test_spacenet7_months_on_the_working_grid_by_quadrant(samples: Path) -> None:
    """Two real PlanetScope basemap months, resampled to 1 m, footprints burned at 1 m, four quadrants each."""
    images = list(read_source(samples, "spacenet7"))
    quadrants = ("nw", "ne", "sw", "se")
    assert [item.name.rsplit("_", 3)[1:] for item in images[:4]] == [["2018", "01", q] for q in quadrants]
    assert len(images) == 8 and {item.group.rsplit("/", 1)[1] for item in images} == {"nw", "ne", "sw", "se"}
    for item in images:
        assert item.gsd_m == 1.0 and 3.7 < item.extra["sensor_gsd_m"] < 3.8
        assert 478 <= item.image.shape[0] <= 484 and item.image.shape[:2] == item.label.shape  # 128 px of 3.76 m
    share = {item.name[-10:]: item.building_share for item in images}
    assert share["2020_01_nw"] > 2 * share["2018_01_nw"]  # the subdivision built between the two months
    later_nw = images[4]
    _, houses = ndimage.label(later_nw.label == 1)
    assert 110 <= houses <= 160  # 136 footprints of 2020-01 in that quadrant, a few touching


@pytest.mark.parametrize("source", sorted(EXPECTED))
def test_reader_returns_aligned_pairs(samples: Path, source: str) -> None:
    count, (share_lo, share_hi), (gsd_lo, gsd_hi) = EXPECTED[source]
    images = list(read_source(samples, source))
    assert len(images) == count
    for item in images:
        assert item.image.dtype == np.uint8 and item.image.shape[2] == 3
        assert item.image.shape[:2] == item.label.shape
        assert set(np.unique(item.label)) <= {0, 1, IGNORE}
        assert share_lo <= item.building_share <= share_hi, (item.name, item.building_share)
        assert gsd_lo - 1e-3 <= item.gsd_m <= gsd_hi + 1e-3, (item.name, item.gsd_m)
        assert item.source == source and item.group
        # buildings are brighter-edged objects, not noise: labels form compact blobs
        _, blobs = ndimage.label(item.label == 1)
        assert blobs >= 1


def test_banepa_polygon_count_matches_label_file(samples: Path) -> None:
    label_file = next((samples / "fair_banepa" / "osm").glob("*.geojson"))
    features = json.loads(label_file.read_text())["features"]
    (mosaic,) = read_source(samples, "fair_banepa")
    assert mosaic.n_polygons == len(features) == 242
    assert mosaic.crs == "EPSG:3857"
    assert mosaic.image.shape[:2] == (1024, 1024)  # 2 × 2 tiles of 512 px stitched


def test_joplin_polygons_match_json_and_measure_pixel_size(samples: Path) -> None:
    label_file = samples / "xbd/joplin/labels/joplin-tornado_00000000_pre_disaster.json"
    pixel, lonlat, metadata = read_xbd_json(label_file)
    (item,) = read_source(samples, "joplin")
    assert item.n_polygons == len(pixel) == len(lonlat) == 185
    # burned pixels equal the polygons' pixel area within rasterization error (±10 %)
    area = sum(p.area for p in pixel)
    assert abs(int((item.label == 1).sum()) - area) / area < 0.1
    # measured pixel size lies between the pan and multispectral GSD of the sensor
    assert metadata["pan_resolution"] * 0.6 < item.gsd_m < metadata["gsd"]
    assert not item.gsd_estimated


def test_fair_ramp_mosaics_are_per_area_cluster(samples: Path) -> None:
    items = list(read_source(samples, "fair_ramp"))
    assert {i.group for i in items} == {"fair_ramp/area3", "fair_ramp/area4"}
    features = {a: len(json.loads((samples / "fair_ramp" / a / "labels.geojson").read_text())
                       ["features"]) for a in ("area3", "area4")}
    for item in items:
        assert 0 < item.n_polygons <= features[item.group.split("/")[1]]
        assert item.extra["zoom"] == 19


def test_shanghai_footprints_come_from_heights(samples: Path) -> None:
    import rasterio

    (item,) = read_source(samples, "shanghai")
    with rasterio.open(samples / "shanghai/height_0_10.tif") as dataset:
        heights = dataset.read(1)
    assert np.array_equal(item.label == 1, heights != 65535)


def test_dubai_colour_classes() -> None:
    rgb = np.array([[[60, 16, 152], [132, 41, 246]], [[155, 155, 155], [110, 193, 228]]], np.uint8)
    assert colour_mask_to_label(rgb).tolist() == [[1, 0], [IGNORE, 0]]


def test_idabd_layout_reader(samples: Path, tmp_path: Path) -> None:
    target = tmp_path / "xbd" / "idabd"
    shutil.copytree(samples / "xbd" / "xbd", target)
    for path in target.rglob("hurricane-harvey_*"):
        path.rename(path.with_name(path.name.replace("hurricane-harvey_00000001", "AOI2-tile_1-1")))
    (item,) = read_idabd(tmp_path)
    assert item.group == "idabd/AOI2" and item.source == "idabd"


def test_size_mismatch_is_a_clear_error(samples: Path, tmp_path: Path) -> None:
    shutil.copytree(samples / "inria_austin", tmp_path / "inria_austin")
    label = tmp_path / "inria_austin/label/austin3_00294_332_293.png"
    Image.open(label).resize((300, 300), Image.NEAREST).save(label)
    with pytest.raises(SitewatchError, match=r"austin3_00294_332_293.*512×512.*300×300"):
        list(read_source(tmp_path, "inria_austin"))


def test_unknown_source_and_missing_folder(samples: Path, tmp_path: Path) -> None:
    with pytest.raises(SitewatchError, match="unknown data source"):
        read_source(samples, "nowhere")
    with pytest.raises(SitewatchError, match="not found"):
        read_source(tmp_path, "dubai")



def test_a_0_1_mask_with_a_255_ignore_border_keeps_its_buildings(tmp_path: Path) -> None:
    """Issue 33: read as 'value > 127', every building of such a mask became background and only the
    border 'building' (a model exported at validation IoU 0.025)."""
    from sitewatch.data.common import read_binary_mask

    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 20:40] = 1
    mask[:4], mask[-4:], mask[:, :4], mask[:, -4:] = IGNORE, IGNORE, IGNORE, IGNORE
    Image.fromarray(mask).save(tmp_path / "mask.png")
    read = read_binary_mask(tmp_path / "mask.png")
    assert (read[20:40, 20:40] == 1).all() and (read[:4] == IGNORE).all() and int((read == 1).sum()) == 400
    Image.fromarray(np.where(mask == 1, 255, 0).astype(np.uint8)).save(tmp_path / "plain.png")
    assert int((read_binary_mask(tmp_path / "plain.png") == 1).sum()) == 400  # 0/255 as before


def test_training_labels_that_cannot_be_buildings_are_said() -> None:
    from sitewatch.data.datamodule import check_label_shares
    from sitewatch.errors import SitewatchError, SitewatchWarning

    with pytest.raises(SitewatchError, match="no building pixel in any of the 12 training chips"):
        check_label_shares({"own": {"building_share": 0.0, "chips": 12}})
    with pytest.warns(SitewatchWarning, match="own: labels cover 85 % .* mapped-area polygon"):
        check_label_shares({"own": {"building_share": 0.848, "chips": 12}, "xbd": {"building_share": 0.2, "chips": 3}})
    check_label_shares({"own": {"building_share": 0.3, "chips": 12}})  # a dense town: nothing said
