"""Bad input, interrupted runs and untrusted files (docs/RELIABILITY.md lists every case).

Each user mistake gets one line naming the file and the problem, a non-zero exit code and no
partial output. Cases already covered beside the feature they break are listed in the doc
with their test; this file holds the rest.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import REPO, assert_one_line_error, run_sitewatch
from safetensors.torch import save_file

from sitewatch.data.common import read_rgb
from sitewatch.data.levir import read_levir_pair, write_geotiff
from sitewatch.paths import default_model_path

SHANGHAI = "shanghai/google_0_10.tif"
UTM = "EPSG:32615"
GRID = Affine(0.5, 0, 360000, 0, -0.5, 4100000)


def _raster(path: Path, array: np.ndarray, **profile) -> Path:
    count = array.shape[0]
    base = {"driver": "GTiff", "width": array.shape[2], "height": array.shape[1], "count": count,
            "dtype": array.dtype.name, "crs": UTM, "transform": GRID}
    with rasterio.open(path, "w", **{**base, **profile}) as out:
        out.write(array)
    return path


def _real(samples: Path, bands: int = 3, dtype=np.uint8) -> np.ndarray:
    rgb = read_rgb(samples / "xbd/xbd/images/hurricane-harvey_00000001_pre_disaster.png")[:384, :384]
    pixels = np.moveaxis(rgb, -1, 0).astype(dtype)
    extra = [pixels.mean(axis=0, keepdims=True).astype(dtype)] * max(0, bands - 3)
    return np.concatenate([pixels[: min(bands, 3)], *extra]) if bands != 3 else pixels


def _tree(folder: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file below ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _no_partials(folder: Path) -> None:
    leftovers = [p for p in folder.rglob(".*")
                 if re.search(r"\.sitewatch-(\d+-|lock$)", p.name) or ".part" in p.name]
    assert not leftovers, leftovers


# --- segment: rasters -------------------------------------------------------------------------

def test_two_band_raster_needs_band_choice(samples: Path, tmp_path: Path) -> None:
    path = _raster(tmp_path / "two.tif", _real(samples)[:2])
    assert_one_line_error(run_sitewatch("segment", str(path), "--out", str(tmp_path / "o")), "two.tif", "--bands")
    assert not (tmp_path / "o").exists()


def test_eight_band_raster_uses_the_first_three(samples: Path, tmp_path: Path) -> None:
    eight = _raster(tmp_path / "eight.tif", _real(samples, bands=8), photometric="MINISBLACK")
    three = _raster(tmp_path / "three.tif", _real(samples))
    for path in (eight, three):
        assert run_sitewatch("segment", str(path), "--out", str(tmp_path / "o")).returncode == 0
    with rasterio.open(tmp_path / "o/eight/mask.tif") as a, rasterio.open(tmp_path / "o/three/mask.tif") as b:
        assert np.array_equal(a.read(), b.read())


def test_float32_with_nan_pixels_runs(samples: Path, tmp_path: Path) -> None:
    pixels = _real(samples).astype(np.float32) / 255.0
    pixels[:, 100:140, :] = np.nan
    path = _raster(tmp_path / "nan.tif", pixels)
    result = run_sitewatch("segment", str(path), "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    with rasterio.open(tmp_path / "o/nan/probability.tif") as out:
        values = out.read(1)
        assert out.nodata == 255 and out.tags()["SITEWATCH_PRODUCT"] == "probability"
        assert (values[100:140] == 255).all()  # ground not seen is nodata, not "certainly no building" (0)
        assert 0 < values[:100].max() <= 254


def test_one_pixel_raster(tmp_path: Path) -> None:
    path = _raster(tmp_path / "dot.tif", np.full((3, 1, 1), 100, np.uint8))
    assert_one_line_error(run_sitewatch("segment", str(path), "--out", str(tmp_path / "o")), "dot.tif",
                          "smaller than one model tile")


def test_huge_raster_declared_in_metadata(tmp_path: Path) -> None:
    path = tmp_path / "huge.tif"
    with rasterio.open(path, "w", driver="GTiff", width=300_000, height=300_000, count=3, dtype="uint8",
                       crs=UTM, transform=GRID, tiled=True, blockxsize=1024, blockysize=1024, SPARSE_OK="TRUE",
                       BIGTIFF="YES"):
        pass
    assert path.stat().st_size < 10_000_000
    assert_one_line_error(run_sitewatch("segment", str(path), "--out", str(tmp_path / "o")), "huge.tif",
                          "above the limit")
    assert not (tmp_path / "o").exists()


# --- segment: model files -----------------------------------------------------------------------

def test_wrong_architecture_model_file(samples: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    shipped = default_model_path()
    with safe_open(str(shipped), framework="pt") as handle:
        metadata = json.loads(handle.metadata()["sitewatch"])
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 - safe_open is no dict
    metadata["network"]["encoder"] = "resnet18"
    wrong = tmp_path / "wrong.safetensors"
    save_file(tensors, str(wrong), metadata={"sitewatch": json.dumps(metadata)})
    result = run_sitewatch("segment", str(samples / SHANGHAI), "--out", str(tmp_path / "o"), "--model", str(wrong))
    assert_one_line_error(result, "wrong.safetensors", "do not fit")


def test_truncated_checkpoint(samples: Path, tmp_path: Path) -> None:
    import torch

    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"model.x": torch.zeros(1000)}, "sitewatch": {}}, good)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:1500])
    result = run_sitewatch("segment", str(samples / SHANGHAI), "--out", str(tmp_path / "o"), "--model", str(truncated))
    assert_one_line_error(result, "truncated.ckpt", "refused or unreadable")


def test_pickle_checkpoint_with_code_never_runs(samples: Path, tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": {}, "sitewatch": Payload()}))
    result = run_sitewatch("segment", str(samples / SHANGHAI), "--out", str(tmp_path / "o"), "--model", str(evil))
    assert_one_line_error(result, "evil.ckpt", "refused")
    assert not marker.exists()


def test_other_file_types_are_not_models(samples: Path, tmp_path: Path) -> None:
    other = tmp_path / "weights.pt"
    other.write_bytes(b"\x80\x04K\x01.")
    result = run_sitewatch("segment", str(samples / SHANGHAI), "--out", str(tmp_path / "o"), "--model", str(other))
    assert_one_line_error(result, "weights.pt", ".safetensors")


# --- outputs: unwritable, disk full -------------------------------------------------------------------

def test_unwritable_output_folder(samples: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_sitewatch("segment", str(samples / SHANGHAI), "--out", str(blocker / "out"))
    assert_one_line_error(result, "file")


def test_disk_full_leaves_nothing_behind(samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sitewatch.predict

    def full(source: Path, target: Path, **_) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(sitewatch.predict, "write_cog", full)
    out = tmp_path / "out"
    result = run_sitewatch("segment", str(samples / SHANGHAI), "--out", str(out))
    assert_one_line_error(result, "No space left on device")
    assert not out.exists() or not any(out.iterdir())


# --- change and evaluate ---------------------------------------------------------------------------

def _levir(samples: Path, folder: Path, crs_later: str | None = None) -> list[Path]:
    pair = read_levir_pair(samples, "val_27_0000_0256")
    first = write_geotiff(folder / "site_2012-05-01.tif", pair.earlier, pair.transform, pair.crs, {})
    later = write_geotiff(folder / "site_2018-05-01.tif", pair.later, pair.transform, pair.crs, {})
    if crs_later:
        from rasterio.warp import calculate_default_transform, reproject

        with rasterio.open(later) as src:
            transform, width, height = calculate_default_transform(src.crs, crs_later, src.width, src.height,
                                                                   *src.bounds)
            warped = np.zeros((3, height, width), np.uint8)
            reproject(src.read(), warped, src_transform=src.transform, src_crs=src.crs,
                      dst_transform=transform, dst_crs=crs_later)
        later = _raster(folder / "site_2018-05-01_utm.tif", warped, crs=crs_later, transform=transform)
    return [first, later]


def test_crs_mismatch_between_dates_is_aligned(samples: Path, tmp_path: Path) -> None:
    rasters = _levir(samples, tmp_path / "in", crs_later="EPSG:32614")
    result = run_sitewatch("change", *map(str, rasters), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["dates"] == ["2012-05-01", "2018-05-01"]
    assert abs(summary["shift"][0]["dx_m"]) < 3 and abs(summary["shift"][0]["dy_m"]) < 3


@pytest.mark.parametrize("case", ["dates", "same-folder", "occupied"])
def test_change_output_and_dates_mistakes(case: str, samples: Path, tmp_path: Path) -> None:
    rasters = _levir(samples, tmp_path / "in")
    out, extra, needle = tmp_path / "out", [], ""
    if case == "dates":
        extra, needle = ["--dates", "2012-05-01"], "1 dates for 2 rasters"
    elif case == "same-folder":
        out, needle = tmp_path / "in", "output folder holds the input"
    else:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        needle = "holds files sitewatch did not write"
    result = run_sitewatch("change", *map(str, rasters), "--out", str(out), *extra)
    assert_one_line_error(result, needle)
    assert not [p for p in out.parent.iterdir() if re.search(r"\.sitewatch-(\d+-|lock$)", p.name)]


@pytest.mark.parametrize("case", ["suffix", "missing", "sizes"])
def test_evaluate_mistakes(case: str, tmp_path: Path) -> None:
    a = _raster(tmp_path / "a.tif", np.zeros((1, 50, 50), np.uint8))
    b = _raster(tmp_path / "b.tif", np.zeros((1, 60, 60), np.uint8), crs=None, transform=None)
    args, needle = {"suffix": ([str(a), str(tmp_path / "x.txt")], "give a mask"),
                    "missing": ([str(a), str(tmp_path / "none.gpkg")], "file not found"),
                    "sizes": ([str(_raster(tmp_path / "c.tif", np.zeros((1, 50, 50), np.uint8), crs=None,
                                           transform=None)), str(b), "--gsd", "0.5"],
                              "without georeferencing both need the same grid")}[case]
    assert_one_line_error(run_sitewatch("evaluate", *args), needle)


# --- interruptions and determinism -------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_raster(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1536² real-pixel raster (3 × 3 copies of a Harvey tile at 0.5 m): a few seconds' work."""
    return _harvey_mosaic(samples, tmp_path_factory.mktemp("big") / "big.tif", copies=3)


@pytest.fixture(scope="module")
def long_raster(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3072² real-pixel raster (6 × 6 Harvey tiles): a run long enough to be interrupted mid-way."""
    return _harvey_mosaic(samples, tmp_path_factory.mktemp("long") / "big.tif", copies=6)


def _harvey_mosaic(samples: Path, path: Path, copies: int) -> Path:
    """``copies × copies`` 512² crops of a real Harvey tile (alternate ones mirrored) at 0.5 m."""
    tile = np.moveaxis(read_rgb(samples / "xbd/xbd/images/hurricane-harvey_00000001_pre_disaster.png")[:512, :512],
                       -1, 0)
    rows = [np.concatenate([tile if (r + c) % 2 else tile[:, ::-1] for c in range(copies)], axis=2)
            for r in range(copies)]
    return _raster(path, np.concatenate(rows, axis=1))


def _restore_ctrl_c() -> None:
    """In the child: Ctrl-C handled as a user's terminal would (a suite started in the background
    by a shell inherits SIGINT ignored, and Python then never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _segment_process(raster: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "infer.py", "segment", str(raster), "--out", str(out), "--quiet"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"}, preexec_fn=_restore_ctrl_c)


def test_same_input_gives_byte_identical_outputs(big_raster: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert run_sitewatch("segment", str(big_raster), "--out", str(tmp_path / name)).returncode == 0
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")


def test_ctrl_c_exits_130_and_leaves_nothing(long_raster: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = _segment_process(long_raster, out)
    deadline = time.time() + 120
    while time.time() < deadline and not any(out.glob(".big.sitewatch-*.staging")):
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_kill_and_rerun_is_byte_identical(big_raster: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    assert run_sitewatch("segment", str(big_raster), "--out", str(reference)).returncode == 0
    out = tmp_path / "out"
    rng = random.Random(7)
    for _ in range(3):  # kill -9 at random moments of a run
        process = _segment_process(big_raster, out)
        time.sleep(rng.uniform(2.0, 8.0))
        process.kill()
        process.wait()
    result = _segment_process(big_raster, out)
    result.communicate(timeout=300)
    assert result.returncode == 0
    assert _tree(out) == _tree(reference)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # stale partials were removed


@pytest.mark.slow
def test_batch_kill_and_resume(samples: Path, tmp_path: Path) -> None:
    folder = tmp_path / "sites"
    lines = ["sites:"]
    for name in ("train_36_0512_0512", "val_27_0000_0256"):
        pair = read_levir_pair(samples, name)
        for date, image in (("2012-05-01", pair.earlier), ("2018-05-01", pair.later)):
            write_geotiff(folder / f"{name}_{date}.tif", image, pair.transform, pair.crs, {})
        lines.append(f"  - {{id: {name}, rasters: [{name}_2012-05-01.tif, {name}_2018-05-01.tif]}}")
    (folder / "manifest.yaml").write_text("\n".join(lines) + "\n")
    reference = tmp_path / "reference"
    assert run_sitewatch("batch", str(folder / "manifest.yaml"), "--out", str(reference)).returncode == 0
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "infer.py", "batch", str(folder / "manifest.yaml"), "--out", str(out)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(9)
    process.kill()
    process.wait()
    assert run_sitewatch("batch", str(folder / "manifest.yaml"), "--out", str(out)).returncode == 0
    for site in ("train_36_0512_0512", "val_27_0000_0256"):
        assert _tree(out / site) == _tree(reference / site)
    _no_partials(out)
