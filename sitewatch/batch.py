"""Many sites at many dates: a manifest, resumable per-site runs, local or Ray executors.

Manifest (YAML), paths relative to the manifest's folder::

    sites:
      - id: taesong
        rasters: [taesong_2023-11-01.tif, taesong_2024-08-27.tif]
        dates: [2023-11-01, 2024-08-27]      # optional, as in `change`
        rules: {hall_min_area_m2: 800}       # optional per-site change rules
        bands: ["3,2,1", "6,4,2"]            # optional: "6,4,2" for every raster, or one per raster
        masks: [null, clouds_2024.tif]       # optional: a mask raster (0 = not seen) per raster
        udm: false                           # optional: ignore Planet usable-data masks (default true)

or CSV with the columns ``site_id,raster[,date]`` (one row per raster).

Each site runs segment → footprints → change into ``DIR/<id>/`` (atomically) with a record of
its inputs (``inputs.json``: paths, sizes, SHA-256 of every raster, model checksum, rules). A
rerun skips sites whose record matches and redoes the others. One failing site never stops the
rest; ``DIR/batch_summary.json`` and ``.csv`` list every site with status, counts, flags and,
for failures, the reason.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import socket
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sitewatch.choice import ModelChoice
from sitewatch.dates import parse_date
from sitewatch.errors import SitewatchError
from sitewatch.files import atomic_path
from sitewatch.modelfile import file_sha256
from sitewatch.outputs import record_files
from sitewatch.rules import ChangeRules, load_yaml
from sitewatch.summary import CHANGE_CLASSES, FLAGS, ChangeCounts, FlagCounts, SiteSummary

RECORD = "inputs.json"
SITE_KEYS = {"id", "rasters", "dates", "rules", "bands", "masks", "udm"}
SITE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class Site:
    """One site of a manifest: id, absolute raster paths, optional dates and rule overrides."""

    id: str
    rasters: list[Path]
    dates: list[str] | None = None
    rules: dict[str, Any] = field(default_factory=dict)
    bands: list[list[int] | None] | None = None  # per raster (one for all is repeated): --bands
    masks: list[Path | None] | None = None  # per raster: a mask raster of ground not seen (0)
    udm: bool = True  # use the Planet usable-data mask beside each image

    def date_options(self) -> list | None:
        """Per raster, its bands and mask (:class:`sitewatch.prepare.DateOptions`), or None."""
        from sitewatch.prepare import DateOptions

        if not self.bands and not self.masks:
            return None
        bands = self.bands or [None]
        masks = self.masks or [None] * len(self.rasters)
        return [DateOptions(bands[k if len(bands) > 1 else 0], masks[k]) for k in range(len(self.rasters))]


def _load_yaml(path: Path) -> list[dict[str, Any]]:
    document = load_yaml(path)
    if not isinstance(document, dict) or not isinstance(document.get("sites"), list):
        raise SitewatchError(f"{path}: manifest needs a 'sites:' list")
    unknown = sorted(set(document) - {"sites"})
    if unknown:
        raise SitewatchError(f"{path}: unknown manifest key(s) {unknown}")
    return document["sites"]


def _load_csv(path: Path) -> list[dict[str, Any]]:
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    if not rows or not {"site_id", "raster"} <= set(rows[0]):
        raise SitewatchError(f"{path}: CSV manifest needs the columns site_id,raster[,date]")
    unknown = sorted(set(rows[0]) - {"site_id", "raster", "date"})
    if unknown:
        raise SitewatchError(f"{path}: unknown CSV column(s) {unknown}")
    sites: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = sites.setdefault(row["site_id"], {"id": row["site_id"], "rasters": [], "dates": []})
        entry["rasters"].append(row["raster"])
        entry["dates"].append(row.get("date") or "")
    for entry in sites.values():
        if not any(entry["dates"]):
            entry.pop("dates")
        elif not all(entry["dates"]):
            raise SitewatchError(f"{path}: site {entry['id']}: give a date for every raster or for none")
    return list(sites.values())


def read_manifest(path: Path, strict_paths: bool = False) -> list[Site]:
    """Read and check a manifest before any work: every error names the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise SitewatchError(f"{path}: manifest not found")
    entries = _load_csv(path) if path.suffix.lower() == ".csv" else _load_yaml(path)
    base = path.parent.resolve()
    sites, seen = [], set()
    valid_rules = {f.name for f in dataclasses.fields(ChangeRules)}
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise SitewatchError(f"{path}: site #{number} is not a mapping")
        unknown = sorted(set(entry) - SITE_KEYS)
        if unknown:
            raise SitewatchError(f"{path}: site #{number}: unknown key(s) {unknown}")
        site_id = str(entry.get("id", ""))
        if not SITE_ID.match(site_id):
            raise SitewatchError(f"{path}: site #{number}: id '{site_id}' must be letters, digits, '_', '-', '.'")
        if site_id.casefold() in RESERVED_NAMES:
            raise SitewatchError(f"{path}: site #{number}: id '{site_id}' is the name of a file the batch writes "
                                 "into its output folder; choose another id")
        if site_id.casefold() in seen:  # Depot and depot are one folder on case-insensitive storage
            raise SitewatchError(f"{path}: duplicate site id '{site_id}' (ids differing only in case share "
                                 "one output folder on Windows and macOS)")
        seen.add(site_id.casefold())
        rasters = entry.get("rasters")
        if not isinstance(rasters, list) or len(rasters) < 2:
            raise SitewatchError(f"{path}: site {site_id}: 'rasters' must list at least two files")
        resolved = []
        for raster in rasters:
            full = (base / str(raster)).resolve()
            if strict_paths and not full.is_relative_to(base):
                raise SitewatchError(f"{path}: site {site_id}: path {raster} escapes the manifest's folder")
            if not full.is_file():
                raise SitewatchError(f"{path}: site {site_id}: raster {raster} not found")
            resolved.append(full)
        dates = entry.get("dates")
        if dates is not None:
            if not isinstance(dates, list) or len(dates) != len(resolved):
                raise SitewatchError(f"{path}: site {site_id}: 'dates' must give one date per raster")
            dates = [str(d) for d in dates]
        rules = entry.get("rules") or {}
        if not isinstance(rules, dict) or set(rules) - valid_rules:
            bad = sorted(set(rules) - valid_rules) if isinstance(rules, dict) else rules
            raise SitewatchError(f"{path}: site {site_id}: unknown rule(s) {bad}")
        try:
            dataclasses.replace(ChangeRules.default(), **rules)  # types and ranges, before any work
        except SitewatchError as error:
            raise SitewatchError(f"{path}: site {site_id}: {error}") from None
        if dates is not None and not all(parse_date(d) for d in dates):
            raise SitewatchError(f"{path}: site {site_id}: 'dates' must be ISO dates like 2024-08-27")
        bands, masks = _bands_and_masks(path, site_id, entry, base, len(resolved))
        if not isinstance(entry.get("udm", True), bool):
            raise SitewatchError(f"{path}: site {site_id}: 'udm' must be true or false")
        sites.append(Site(site_id, resolved, dates, rules, bands, masks, entry.get("udm", True)))
    if not sites:
        raise SitewatchError(f"{path}: manifest lists no sites")
    return sites


def _bands_and_masks(path: Path, site_id: str, entry: dict[str, Any], base: Path,
                     count: int) -> tuple[list[list[int] | None] | None, list[Path | None] | None]:
    """A site's ``bands`` (``6,4,2`` for every raster, or a list with one per raster, null for the
    file's own) and ``masks`` (one path or null per raster), checked."""
    where = f"{path}: site {site_id}"
    bands, masks = entry.get("bands"), entry.get("masks")
    if bands is not None:
        per_date = bands if isinstance(bands, list) and bands and all(
            b is None or isinstance(b, str | list) for b in bands) and len(bands) == count else [bands]
        try:
            bands = [None if b is None else [int(x) for x in (b.split(",") if isinstance(b, str) else b)]
                     for b in per_date]
        except (TypeError, ValueError):
            raise SitewatchError(f"{where}: 'bands' must be band numbers like 6,4,2, or one such per raster") from None
    if masks is not None:
        if not isinstance(masks, list) or len(masks) != count:
            raise SitewatchError(f"{where}: 'masks' must give one mask raster (or null) per raster")
        masks = [None if m is None else (base / str(m)).resolve() for m in masks]
        for given, full in zip(entry["masks"], masks, strict=True):
            if full is not None and not full.is_file():
                raise SitewatchError(f"{where}: mask {given} not found")
    return bands, masks


def input_record(site: Site, model_sha256: str, rules: ChangeRules) -> dict[str, Any]:
    """What a site's outputs were made from; equal records mean equal outputs."""
    return {
        "site": site.id,
        "rasters": [{"path": str(p), "bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in site.rasters],
        "dates": site.dates,
        "bands": site.bands,
        "masks": [{"path": str(p), "sha256": file_sha256(p)} if p else None for p in site.masks or []],
        "udm": site.udm,
        "rules": dataclasses.asdict(rules),
        "model_sha256": model_sha256,
    }


def is_done(out_dir: Path, record: dict[str, Any]) -> bool:
    """True when ``out_dir`` holds a finished run made from exactly ``record``."""
    try:
        return json.loads((out_dir / RECORD).read_text()) == record and (out_dir / "summary.json").is_file()
    except (OSError, json.JSONDecodeError):
        return False


@dataclass
class SiteRow:
    """One line of the batch summary: a site's status, time, counts and flags, or why it failed."""

    site: str
    status: Literal["done", "skipped", "failed"] = "failed"
    reason: str = ""
    seconds: float = 0.0
    counts: ChangeCounts | None = None
    flags: FlagCounts | None = None
    dates: list[str] | None = None
    traceback: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The row as ``batch_summary.json`` holds it."""
        row: dict[str, Any] = {"site": self.site, "status": self.status, "reason": self.reason,
                               "seconds": self.seconds}
        if self.counts is not None and self.flags is not None:
            row.update(counts=self.counts.as_dict(), flags=self.flags.as_dict(), dates=self.dates)
        if self.traceback is not None:
            row["traceback"] = self.traceback
        return row

    def counts_and_flags(self) -> dict[str, int]:
        """Counts per change class and flag (empty for a failed site)."""
        if self.counts is None or self.flags is None:
            return {}
        return {**self.counts.as_dict(), **self.flags.as_dict()}


def run_one(site: Site, out_root: Path, predictor, base_rules: ChangeRules,
            window_progress: Callable[[int, int], None] | None = None, choice: ModelChoice | None = None) -> SiteRow:
    """Run one site (or skip it when its outputs are current) with ``predictor``, the network
    ``choice`` says why; never raises."""
    from sitewatch.pipeline import run_site  # torch: only once a site runs (manifests are checked without)

    started = time.perf_counter()
    row = SiteRow(site=site.id)
    try:
        rules = dataclasses.replace(base_rules, **site.rules)
        record = input_record(site, predictor.model.sha256, rules)
        target = out_root / site.id
        if is_done(target, record):
            summary = SiteSummary.from_json((target / "summary.json").read_text())
            row.status = "skipped"
        else:
            summary = run_site(site.rasters, target, predictor, site=site.id, dates=site.dates, rules=rules,
                               options=site.date_options(), use_udm=site.udm,
                               extra_files={RECORD: json.dumps(record, indent=2)},
                               window_progress=window_progress, model_choice=choice).summary
            row.status = "done"
        row.counts, row.flags, row.dates = summary.counts, summary.flags, list(summary.dates)
    except SitewatchError as error:
        row.reason = str(error)
    except Exception as error:  # noqa: BLE001 - one site's bug must not stop the batch
        row.reason = f"{type(error).__name__}: {error}".splitlines()[0]
        row.traceback = traceback.format_exc(limit=5)
    row.seconds = round(time.perf_counter() - started, 2)
    return row


class Predictors:
    """The predictors of a batch, one per model file, each loaded when a site first needs it."""

    def __init__(self, device: str, backend: str) -> None:
        self.device, self.backend = device, backend
        self.loaded: dict[Path, Any] = {}

    def __call__(self, model: Path):  # noqa: ANN204 - a sitewatch.predict.Predictor (torch: imported late)
        if model not in self.loaded:
            from sitewatch.checkpoint import load_for_inference  # torch, as above
            from sitewatch.predict import Predictor

            self.loaded[model] = Predictor(load_for_inference(model), device=self.device, backend=self.backend)
        return self.loaded[model]


def run_local(sites: list[Site], out_root: Path, choices: dict[str, ModelChoice], device: str, backend: str,
              rules: ChangeRules, on_done: Callable[[SiteRow], None],
              window_progress: Callable[[int, int], None] | None = None) -> list[SiteRow]:
    """Sites one after another in this process, each model (``choices``: site id → network) loaded once."""
    predictors = Predictors(device, backend)
    rows = []
    for site in sites:
        choice = choices[site.id]
        rows.append(run_one(site, out_root, predictors(choice.path), rules, window_progress, choice))
        on_done(rows[-1])
    return rows


def run_ray(sites: list[Site], out_root: Path, choices: dict[str, ModelChoice], device: str, backend: str,
            rules: ChangeRules, on_done: Callable[[SiteRow], None], workers: int = 2,
            address: str | None = None) -> list[SiteRow]:
    """Sites spread over Ray actors, each loading each model it needs once (GPU actors take one GPU).

    Starts a local Ray with ``workers`` CPUs unless ``address`` names an existing cluster.
    """
    try:
        import ray
    except ImportError:
        raise SitewatchError(
            "the Ray executor needs the 'distributed' extra: pip install 'sitewatch[distributed]'",
            setting="executor") from None
    import torch

    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        use_gpu = device != "cpu" and (torch.cuda.is_available() if address is None else device.startswith("cuda"))

        @ray.remote(num_cpus=1, num_gpus=1 if use_gpu else 0)
        class SiteWorker:
            def __init__(self) -> None:
                torch.set_num_threads(1)
                self.predictors = Predictors(device, backend)

            def run(self, site: Site) -> SiteRow:
                choice = choices[site.id]
                return run_one(site, out_root, self.predictors(choice.path), rules, choice=choice)

        actors = [SiteWorker.remote() for _ in range(max(1, min(workers, len(sites))))]
        pending = {actors[i % len(actors)].run.remote(site): i for i, site in enumerate(sites)}
        rows: list[SiteRow | None] = [None] * len(sites)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                index = pending.pop(ref)
                rows[index] = ray.get(ref)
                on_done(rows[index])
        return [r for r in rows if r is not None]
    finally:
        if started_here:
            ray.shutdown()


#: The files ``batch`` writes into its output folder itself (each site has its own folder).
SUMMARY_FILES = ("batch_summary.json", "batch_summary.csv")
#: Names a site folder may not take: the batch's own files beside the sites (compared case-folded).
RESERVED_NAMES = {name.casefold() for name in (*SUMMARY_FILES, ".sitewatch-owned.json")}


def check_ray_address(address: str, timeout_s: float = 5.0) -> None:
    """Refuse, within seconds, a Ray cluster address where nothing answers (Ray itself retries for minutes).

    ``auto`` and ``ray://`` addresses are tried for a TCP connection to their host and port.
    """
    if address == "auto":
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise SitewatchError(f"'{address}': a Ray address is HOST:PORT (or ray://HOST:PORT)", setting="ray_address")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as error:
        raise SitewatchError(f"{address}: no Ray cluster answers there ({error.strerror or error}); start one "
                             "(ray start, head node) or leave the address out", setting="ray_address") from None


def check_workers(workers: int) -> None:
    """Refuse a number of Ray workers below one."""
    if workers < 1:
        raise SitewatchError(f"the number of Ray workers must be 1 or more, got {workers}", setting="workers")


def write_batch_summary(out_root: Path, rows: Iterable[SiteRow]) -> None:
    """``batch_summary.json`` and ``batch_summary.csv``, written atomically and recorded as ours."""
    rows = list(rows)
    out_root.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_root / SUMMARY_FILES[0]) as tmp:
        tmp.write_text(json.dumps({"sites": [row.as_dict() for row in rows]}, indent=2, default=str))
    columns = ["site", "status", *CHANGE_CLASSES, *FLAGS, "housing_clusters", "land_cleared", "seconds", "reason"]
    with atomic_path(out_root / SUMMARY_FILES[1]) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({"site": row.site, "status": row.status, "seconds": row.seconds,
                             "reason": row.reason, **row.counts_and_flags()})
    record_files(out_root, SUMMARY_FILES, "batch")
