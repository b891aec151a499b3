"""Batch runs over a manifest of real sites: local and Ray agree, resume, failures, manifests; DDP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli, run_sitewatch

from sitewatch.batch import read_manifest
from sitewatch.data.levir import levir_names, read_levir_pair, write_geotiff
from sitewatch.errors import SitewatchError


@pytest.fixture()
def sites(samples: Path, tmp_path: Path) -> Path:
    """The LEVIR-CD sample pairs as three georeferenced sites, with a YAML manifest."""
    folder = tmp_path / "sites"
    lines = ["sites:"]
    for name in levir_names(samples)[:3]:
        pair = read_levir_pair(samples, name)
        write_geotiff(folder / name / f"{name}_2012-05-01.tif", pair.earlier, pair.transform, pair.crs, {})
        write_geotiff(folder / name / f"{name}_2018-05-01.tif", pair.later, pair.transform, pair.crs, {})
        lines.append(f"  - {{id: {name}, rasters: [{name}/{name}_2012-05-01.tif, {name}/{name}_2018-05-01.tif]}}")
    (folder / "manifest.yaml").write_text("\n".join(lines) + "\n")
    return folder / "manifest.yaml"


def _summaries(out: Path) -> dict[str, dict]:
    rows = json.loads((out / "batch_summary.json").read_text())["sites"]
    return {row["site"]: row for row in rows}


def _site_outputs(out: Path, site: str) -> dict[str, bytes]:
    folder = out / site
    summary = json.loads((folder / "summary.json").read_text())
    summary["model"].pop("device")
    return {"summary": json.dumps(summary, sort_keys=True).encode(),
            "changes": (folder / "changes.geojson").read_bytes()}


@pytest.mark.slow
def test_local_batch_resume_and_changed_input(sites: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_sitewatch("batch", str(sites), "--out", str(out))
    assert first.returncode == 0, first.stderr
    rows = _summaries(out)
    assert len(rows) == 3 and {r["status"] for r in rows.values()} == {"done"}
    assert (out / "batch_summary.csv").read_text().count("\n") == 4
    for site in rows:
        assert json.loads((out / site / "inputs.json").read_text())["model_sha256"]
    # a rerun after success does no work
    again = run_sitewatch("batch", str(sites), "--out", str(out))
    assert {r["status"] for r in _summaries(out).values()} == {"skipped"}, again.stdout
    # a changed input redoes only that site
    changed = sorted(rows)[0]
    later = next((sites.parent / changed).glob("*2018*.tif"))
    data = bytearray(later.read_bytes())
    later.write_bytes(bytes(data))  # same bytes: still skipped
    import rasterio

    with rasterio.open(later, "r+") as dataset:
        pixels = dataset.read()
        pixels[:, :40, :40] = 0
        dataset.write(pixels)
    third = run_sitewatch("batch", str(sites), "--out", str(out))
    assert third.returncode == 0, third.stderr
    statuses = {site: row["status"] for site, row in _summaries(out).items()}
    assert statuses == {site: ("done" if site == changed else "skipped") for site in rows}


def _free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on this machine now (bound together, then released)."""
    import socket

    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


@pytest.mark.slow
def test_ray_executors_match_local(sites: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same manifest locally, on a local Ray the command starts with 2 workers, and on an
    existing cluster (``ray start --head`` beforehand, then ``--ray-address``): identical outputs.

    The head and the client share a token (Ray's token authentication), as cluster nodes do.
    """
    import secrets
    import sys

    local = tmp_path / "local"
    assert run_sitewatch("batch", str(sites), "--out", str(local)).returncode == 0
    result = run_sitewatch("batch", str(sites), "--out", str(tmp_path / "ray"), "--executor", "ray", "--workers", "2")
    assert result.returncode == 0, result.stderr[-2000:]

    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(16))
    # free ports for the head's GCS and agents: the local Ray above may still be releasing the
    # default agent ports (52365...) while its processes exit, on a loaded machine
    port, agent, agent_grpc, metrics, runtime_env = _free_ports(5)
    ray_cli = str(Path(sys.executable).with_name("ray"))
    head = run_cli(ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                   f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
                   f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}",
                   "--disable-usage-stats", timeout=180)
    assert head.returncode == 0, head.stderr[-2000:]
    try:
        # a fresh process, as a user's: Ray reads its authentication settings once per process
        result = run_cli("infer.py", "batch", str(sites), "--out", str(tmp_path / "cluster"), "--executor", "ray",
                         "--ray-address", "auto")
        assert result.returncode == 0, result.stderr[-2000:]
    finally:
        run_cli(ray_cli, "stop", "--force", timeout=120)
    for site in _summaries(local):
        reference = _site_outputs(local, site)
        assert _site_outputs(tmp_path / "ray", site) == reference
        assert _site_outputs(tmp_path / "cluster", site) == reference


@pytest.mark.slow
def test_failing_site_does_not_stop_the_others(sites: Path, tmp_path: Path) -> None:
    broken = sites.parent / "broken"
    broken.mkdir()
    (broken / "broken_2012-05-01.tif").write_bytes(b"II*\x00" + b"\x00" * 500)
    (broken / "broken_2018-05-01.tif").write_bytes(b"II*\x00" + b"\x00" * 500)
    entry = "  - {id: broken, rasters: [broken/broken_2012-05-01.tif, broken/broken_2018-05-01.tif]}\n"
    text = sites.read_text() + entry
    sites.write_text(text)
    out = tmp_path / "out"
    result = run_sitewatch("batch", str(sites), "--out", str(out))
    assert result.returncode == 1
    rows = _summaries(out)
    assert rows["broken"]["status"] == "failed" and "broken_2012-05-01.tif" in rows["broken"]["reason"]
    assert sum(r["status"] == "done" for r in rows.values()) == 3
    assert not (out / "broken").exists()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("sites: [{id: a, rasters: [missing_2020-01-01.tif, x_2021-01-01.tif]}]", "not found"),
        ("sites: [{id: a, rasters: [one.tif, two.tif]}, {id: a, rasters: [one.tif, two.tif]}]", "duplicate site id"),
        ("sites: [{id: a, rasters: [one.tif, two.tif], colour: red}]", "unknown key"),
        ("sites: [{id: a, rasters: [../outside.tif, two.tif]}]", "escapes the manifest"),
        ("sites: [{id: a, rasters: [one.tif, two.tif]\n", "not valid YAML"),
        ("places: []", "needs a 'sites:' list"),
    ],
)
def test_bad_manifests_fail_before_work(text: str, needle: str, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    for name in ("one.tif", "two.tif", "x_2021-01-01.tif"):
        (folder / name).write_bytes(b"x")
    (tmp_path / "outside.tif").write_bytes(b"x")
    manifest = folder / "manifest.yaml"
    manifest.write_text(text)
    with pytest.raises(SitewatchError, match=needle):
        read_manifest(manifest, strict_paths=True)
    result = run_sitewatch("batch", str(manifest), "--out", str(tmp_path / "out"),
                     "--strict-paths")
    assert_one_line_error(result, needle)
    assert not (tmp_path / "out").exists()


def test_csv_manifest(sites: Path, tmp_path: Path) -> None:
    yaml_sites = read_manifest(sites)
    rows = ["site_id,raster,date"] + [f"{s.id},{p},{d}" for s in yaml_sites
                                      for p, d in zip(s.rasters, ("2012-05-01", "2018-05-01"), strict=True)]
    csv_file = sites.parent / "manifest.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    from_csv = read_manifest(csv_file)
    assert [s.id for s in from_csv] == [s.id for s in yaml_sites]
    assert from_csv[0].dates == ["2012-05-01", "2018-05-01"]


@pytest.mark.slow
def test_ddp_smoke_on_cpu_with_gloo(tmp_path: Path) -> None:
    """Two CPU processes train a few steps through Lightning's DDP strategy (gloo backend)."""
    result = run_cli(
        "train.py", "fit", "--config", "configs/cpu_smoke.yaml", "--trainer.accelerator=cpu",
        "--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.max_steps=3",
        "--trainer.limit_val_batches=2", "--trainer.max_epochs=1",
        f"--data.cache_dir={tmp_path / 'cache'}", f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distributed_backend=gloo" in result.stderr or "gloo" in result.stderr
    assert list(tmp_path.glob("logs/version_*/checkpoints/latest.ckpt"))
