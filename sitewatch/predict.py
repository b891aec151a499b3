"""Tiled whole-raster prediction: probabilities and a building mask on the input's own grid.

The raster is cut into overlapping windows in its own pixel grid; each window is resampled on
read to the model's pixel size (``gsd_m`` metres), predicted in batches, resampled back and
blended: each tile's weight is ~0 in the outer 3/8 of its overlap with a neighbour (where
the network lacks context) and rises with a raised cosine across the middle quarter, so tiles
leave no seams and every pixel is decided by a tile that saw enough of its surroundings.
Tiles default to 1024 model pixels with 256 px overlap: the model's output depends on up to
~128-256 px of context, so this makes the tiled mask agree with whole-image inference. A raster
that fits one tile is predicted whole in one pass. Results are accumulated and written strip by
strip: memory grows with the raster's width, never with its area. Windows are
read by background threads while the model runs.

Outputs (same CRS, transform and size as the input): ``probability.tif`` (uint8, building
probability × 255, internal nodata mask) and ``mask.tif`` (uint8 0/1, nodata 255), both
Cloud-Optimized GeoTIFFs with overviews.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from sitewatch.checkpoint import LoadedModel
from sitewatch.errors import SitewatchError, SitewatchWarning
from sitewatch.files import output_lock, staging_dir
from sitewatch.fusion import FusionResult, fuse_passes
from sitewatch.modelfile import FusionRule, working_gsd_m
from sitewatch.outputs import check_output_dir, publish_dir
from sitewatch.products import MASK_NODATA, PROBABILITY_NODATA, PRODUCT_TAG, encode_probability
from sitewatch.quantize import int8_model
from sitewatch.radiometry import Stretch, band_choice, colour_table, value_stretch
from sitewatch.raster import (
    open_raster,
    overview_shape,
    pixel_size_xy_m,
    write_cog,
)

if TYPE_CHECKING:
    import torch

Backend = Literal["auto", "torch", "onnx", "onnx-int8"]
BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
MIN_TILE = 64
MIN_EXTENT = 16  # model pixels a side: less is too little ground to say anything about
MAX_AUTO_TILE = 1024
MARGIN_FRACTION = 0.375  # of a tile overlap, next to a neighbour: weight ~0 (context-starved)
BATCH_PIXELS = 4 * 512 * 512  # model pixels per forward pass when the batch size is automatic
GDAL_CACHE_MB = 256
MAX_WIDTH = 250_000  # px; the strip buffers hold a few window-heights of one full row


def max_pixels() -> float:
    """Largest raster (pixels) segmented in one go: ``$SITEWATCH_MAX_PIXELS``, default 10 Gpx."""
    return float(os.environ.get("SITEWATCH_MAX_PIXELS", 1e10))


# --- device and backends -------------------------------------------------------------------------

class CpuDevice:
    """The CPU, named without importing torch (ONNX Runtime needs none); ``type`` as ``torch.device``'s."""

    type = "cpu"
    index = None

    def __str__(self) -> str:
        return "cpu"

    def __repr__(self) -> str:
        return "device(type='cpu')"

    def __eq__(self, other: object) -> bool:
        return str(other) == "cpu"

    def __hash__(self) -> int:
        return hash("cpu")


def gpu_possible() -> bool:
    """False only where no GPU can be present: Linux without an NVIDIA or AMD (ROCm) driver device,
    or torch already loaded and seeing none. Lets the CPU be chosen without importing torch."""
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        mps = getattr(torch.backends, "mps", None)
        return bool(torch.cuda.is_available() or (mps is not None and mps.is_available()))
    if not sys.platform.startswith("linux"):
        return True  # macOS (MPS), Windows: ask torch
    devices = Path("/dev")
    return (Path("/proc/driver/nvidia").exists() or Path("/dev/kfd").exists()
            or any(devices.glob("nvidia[0-9]*")) or any(devices.glob("dxg")))


def choose_device(name: str = "auto") -> torch.device | CpuDevice:
    """``auto``: CUDA if present, else Apple MPS, else CPU. Asking for a missing one is an error.

    The CPU is a :class:`CpuDevice` when torch is not loaded (``cpu``, or ``auto`` where no GPU
    can be present, :func:`gpu_possible`), else a ``torch.device``.
    """
    if name == "cpu" or (name == "auto" and not gpu_possible()):
        return sys.modules["torch"].device("cpu") if "torch" in sys.modules else CpuDevice()
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SitewatchError("cuda: no CUDA GPU is available on this machine", setting="device")
        return torch.device(name)
    if name == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise SitewatchError("mps: Apple MPS is not available on this machine", setting="device")
        return torch.device("mps")
    raise SitewatchError(f"unknown device '{name}' (auto, cuda, cuda:N, mps, cpu)")


def onnx_cache_dir() -> Path:
    """Where exported ONNX graphs are kept (``$SITEWATCH_CACHE`` or ``~/.cache/sitewatch``)."""
    return Path(os.environ.get("SITEWATCH_CACHE", Path.home() / ".cache" / "sitewatch")) / "onnx"


def export_onnx(model: LoadedModel, target: Path | None = None) -> Path:
    """Export the network to ONNX (dynamic batch and size), cached by the model's checksum."""
    target = target or onnx_cache_dir() / f"{model.sha256[:32]}.onnx"
    if target.is_file():
        return target
    import torch

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(target.parent, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as error:  # a read-only home: the run goes on with a cache of its own
        fallback = Path(tempfile.gettempdir()) / f"sitewatch-onnx-{os.getuid() if hasattr(os, 'getuid') else 0}"
        warnings.warn(f"{target.parent}: cannot keep the ONNX cache there ({error.strerror or error}); set "
                      f"SITEWATCH_CACHE to a writable folder (this run uses {fallback})", SitewatchWarning,
                      stacklevel=2)
        fallback.mkdir(parents=True, exist_ok=True)
        target = fallback / target.name
        if target.is_file():
            return target
    network = model.network.to("cpu").eval()
    example = torch.zeros(1, len(model.bands), 256, 256)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=target.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                network, example, tmp, input_names=["image"], output_names=["logits"],
                dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}},
                opset_version=17, dynamo=False,
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


class Predictor:
    """Turns normalised ``N×C×H×W`` float32 batches into building probabilities ``N×H×W``.

    Args:
        model: a loaded model file.
        device: ``auto``, ``cuda``, ``mps`` or ``cpu``.
        backend: ``torch``, ``onnx`` (ONNX Runtime, CPU), ``onnx-int8`` (ONNX Runtime with the
            model quantized to int8, :mod:`sitewatch.quantize`) or ``auto`` (ONNX Runtime on CPU
            when installed, PyTorch otherwise: see docs/BENCHMARKS.md for the measured speeds).
        tta: average over the 4 flips (4× the work).
        compile: ``torch.compile`` the network (CUDA only).
        multiscale: run a fine and a coarse pass and fuse them (:mod:`sitewatch.fusion`) on every
            input; None: the model's default (its metadata ``multiscale``: one pass when it names none;
            its rule may limit the coarse pass to coarse inputs, ``FusionRule.min_input_gsd_m``).
    """

    def __init__(self, model: LoadedModel, device: str = "auto", backend: Backend = "auto",
                 tta: bool = False, compile: bool = False, multiscale: bool | None = None) -> None:
        self.model = model
        self.device = choose_device(device)
        self.tta = tta
        default_rule = model.metadata.multiscale
        self.multiscale: FusionRule | None = (
            default_rule if multiscale is None else
            replace(default_rule or FusionRule(), min_input_gsd_m=0.0) if multiscale else None)
        if backend not in BACKENDS:
            raise SitewatchError(f"unknown backend '{backend}' ({', '.join(BACKENDS)})", setting="backend")
        if backend == "auto":
            backend = "onnx" if self.device.type == "cpu" and _has_onnxruntime() else "torch"
        if backend.startswith("onnx"):
            if self.device.type != "cpu":
                raise SitewatchError(f"the {backend} backend runs on the CPU; use the cpu device", setting="backend")
            if not _has_onnxruntime():
                raise SitewatchError(f"the {backend} backend needs the onnxruntime package", setting="backend")
        self.backend = backend
        self.session = None
        self.network = None  # ONNX Runtime: the PyTorch network is never built (no torch import)
        if backend.startswith("onnx"):
            self.session = _onnx_session(model, int8=backend == "onnx-int8")
        else:
            import torch

            if isinstance(self.device, CpuDevice):
                self.device = torch.device("cpu")
            self.network = model.network.to(self.device).eval()
            self.network = self.network.to(memory_format=torch.channels_last)
            if compile and self.device.type == "cuda":
                self.network = torch.compile(self.network)
        self.amp_dtype = None
        if self.device.type == "cuda":
            import torch

            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    @property
    def description(self) -> str:
        amp = f", autocast {str(self.amp_dtype).removeprefix('torch.')}" if self.amp_dtype else ""
        engine = {"onnx": "ONNX Runtime", "onnx-int8": "ONNX Runtime int8"}.get(self.backend, "PyTorch")
        return f"{self.device.type} ({engine}{amp})"

    def _logits(self, batch: np.ndarray) -> np.ndarray:
        if self.session is not None:
            return self.session.run(None, {"image": batch})[0][:, 0]
        import torch

        tensor = torch.from_numpy(batch).to(self.device, non_blocking=True)
        tensor = tensor.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), torch.autocast(self.device.type, dtype=self.amp_dtype,
                                             enabled=self.amp_dtype is not None):
            logits = self.network(tensor)
        return logits[:, 0].float().cpu().numpy()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if not self.tta:
            return _sigmoid(self._logits(batch))
        total = np.zeros((batch.shape[0], *batch.shape[2:]), np.float32)
        for axes in ((), (3,), (2,), (2, 3)):
            flipped = np.flip(batch, axes) if axes else batch
            probability = _sigmoid(self._logits(np.ascontiguousarray(flipped)))
            total += np.flip(probability, tuple(a - 1 for a in axes)) if axes else probability
        return total / 4


def _onnx_session(model: LoadedModel, int8: bool):  # noqa: ANN202 - onnxruntime is imported lazily
    """An ONNX Runtime CPU session of the model's float32 graph, or of its int8 graph."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = _cpu_threads()
    # memory patterns pre-plan one block per input shape: 340 MiB more peak RSS on a 2,048² raster
    # of 1,024² tiles, no faster (bench/peers.py); the outputs are the same byte for byte
    options.enable_mem_pattern = False
    graph = export_onnx(model)
    if int8:
        graph = int8_model(graph, model.sha256, model.metadata)
    return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])


def _cpu_threads() -> int:
    """Intra-op threads for ONNX Runtime: PyTorch's count when torch is loaded, else what PyTorch
    would pick (``$OMP_NUM_THREADS``, else the physical cores), without importing it."""
    if "torch" in sys.modules:
        return sys.modules["torch"].get_num_threads()
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    return 0  # ONNX Runtime's default: the physical cores


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))).astype(np.float32)


# --- windows and blending ------------------------------------------------------------------------

def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets covering ``size`` with ``window``-long pieces; the last ends at the edge."""
    if size <= window:
        return [0]
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def blend_weight(height: int, width: int, overlap: tuple[int, int],
                 neighbours: tuple[bool, bool, bool, bool], floor: float = 1e-3) -> np.ndarray:
    """Blending weight of one tile (``height × width`` input pixels).

    Across each side that overlaps a neighbouring tile (``neighbours`` = top, bottom, left,
    right), the weight is ``floor`` over the outer :data:`MARGIN_FRACTION` of the ``overlap``
    (rows, columns), then rises as a raised cosine to 1 over the middle of the overlap; sides
    on the raster's edge keep full weight. Two neighbours' weights therefore hand over smoothly
    inside their overlap, and a pixel near one tile's edge is decided by the other tile, which
    sees its context.
    """
    top, bottom, left, right = neighbours

    def profile(n: int, span: int, leading: bool, trailing: bool) -> np.ndarray:
        margin = int(span * MARGIN_FRACTION)
        rise = max(span - 2 * margin, 1)
        x = np.clip((np.arange(n) + 0.5 - margin) / rise, 0.0, 1.0)
        ramp = np.maximum(np.sin(np.pi / 2 * x) ** 2, floor)
        weight = np.ones(n)
        if leading:
            weight = np.minimum(weight, ramp)
        if trailing:
            weight = np.minimum(weight, ramp[::-1])
        return weight

    return np.outer(profile(height, overlap[0], top, bottom),
                    profile(width, overlap[1], left, right)).astype(np.float32)


def auto_batch_size(tile_size: int) -> int:
    """Tiles per forward pass holding about :data:`BATCH_PIXELS` model pixels (at least 1)."""
    return max(1, BATCH_PIXELS // (tile_size * tile_size))


# --- radiometry and bands ------------------------------------------------------------------------

@dataclass
class InputPlan:
    """How one raster is read: band indexes (1-based), value stretch and window geometry."""

    bands: list[int]
    low: np.ndarray
    high: np.ndarray
    pixel_size_m: tuple[float, float]
    window_px: tuple[int, int]  # (height, width) of a tile window in input pixels
    stride_px: tuple[int, int]
    tile_size: int  # model pixels
    overlap: int  # model pixels
    model_shape: tuple[int, int]  # a window resampled to the model grid (rows, cols)
    padded_shape: tuple[int, int]  # ... reflect-padded to multiples of 32 for the network
    work_gsd_m: float  # ground pixel size (m) the model runs at
    work_gsd_rule: str  # why that pixel size
    palette: np.ndarray | None = None  # 256×3 colour table of a paletted raster (indices → RGB)
    notes: list[str] = field(default_factory=list)
    bands_used: str = ""  # the bands and how they were known (sitewatch.radiometry.BandChoice.describe)
    ground_mask: Path | None = None  # 255 seen, 0 ground the raster did not see (clouds...), same grid


def plan_input(dataset: rasterio.DatasetReader, model: LoadedModel, *, tile_size: int | None,
               overlap: int | None, gsd_m: float | None, bands: list[int] | None,
               work_gsd_m: float | None = None, stretch: Stretch | None = None,
               ground_mask: Path | None = None) -> InputPlan:
    """Work out bands, stretch, working pixel size and window sizes.

    Args:
        dataset: the input raster.
        model: the loaded model (its metadata gives the trained pixel sizes).
        tile_size, overlap: model-grid tile side and overlap in pixels (None: automatic).
        gsd_m: pixel size (m) of a raster without georeferencing.
        bands: 1-based input bands for the model's bands.
        work_gsd_m: the ground pixel size (m) to run the model at (None: the rule of
            :func:`sitewatch.modelfile.working_gsd_m`).
        stretch: the value mapping measured for the site (:func:`sitewatch.radiometry.site_stretch`);
            None: measured on this raster (:func:`sitewatch.radiometry.value_stretch`).
        ground_mask: a raster on the same grid, 0 where the raster did not see the ground.

    Raises:
        SitewatchError: for rasters that cannot be segmented.
    """
    _check_size(dataset)
    dx, dy = pixel_size_xy_m(dataset, gsd_m)
    model_gsd, gsd_rule = working_gsd_m(model.metadata, float(np.sqrt(dx * dy)), work_gsd_m)
    extent = (dataset.height * dy / model_gsd, dataset.width * dx / model_gsd)  # model pixels
    if min(extent) < MIN_EXTENT:
        raise SitewatchError(
            f"{dataset.name}: raster is {dataset.width}×{dataset.height} px ({dataset.width * dx:.0f}×"
            f"{dataset.height * dy:.0f} m), smaller than one model tile's minimum of {MIN_EXTENT} px at "
            f"{model_gsd:g} m ({MIN_EXTENT * model_gsd:.0f} m a side)")
    if tile_size is None and overlap is None and max(extent) <= MAX_AUTO_TILE:
        geometry = _whole_raster(dataset, extent)
    else:
        geometry = _tiles(dataset, extent, tile_size, overlap, model_gsd, (dx, dy))
    palette = colour_table(dataset) if bands is None else None
    if palette is not None:  # paletted: indices are expanded through the colour table, 0-255
        chosen, note = [1] * len(model.bands), "paletted, expanded through its colour table"
        low, high = np.zeros(len(chosen)), np.full(len(chosen), 255.0)
        used = "1 (paletted: its colour table)"
    else:
        choice = band_choice(dataset, model.bands, bands)
        chosen, used = choice.bands, choice.describe()
        low, high, note = (stretch.low, stretch.high, stretch.note) if stretch is not None else \
            value_stretch(dataset, chosen, model.metadata.input_mapping)
    return InputPlan(bands=chosen, low=low, high=high, pixel_size_m=(dx, dy), work_gsd_m=model_gsd,
                     work_gsd_rule=gsd_rule, palette=palette, **geometry.fields(),
                     notes=[note, f"model run at {model_gsd:g} m: {gsd_rule}", f"bands {used}", *geometry.notes],
                     bands_used=used, ground_mask=ground_mask)


@dataclass
class _WindowGeometry:
    """How a raster is cut into windows (input pixels) and what the model sees of one (model pixels)."""

    window_px: tuple[int, int]
    stride_px: tuple[int, int]
    tile_size: int
    overlap: int
    model_shape: tuple[int, int]
    padded_shape: tuple[int, int]
    notes: list[str]

    def fields(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in
                ("window_px", "stride_px", "tile_size", "overlap", "model_shape", "padded_shape")}


def _check_size(dataset: rasterio.DatasetReader) -> None:
    pixels = dataset.width * dataset.height
    if pixels > max_pixels() or dataset.width > MAX_WIDTH:
        raise SitewatchError(
            f"{dataset.name}: raster declares {dataset.width}×{dataset.height} px ({pixels / 1e9:.1f} Gpx), "
            f"above the limit of {max_pixels() / 1e9:.1f} Gpx and {MAX_WIDTH} px wide "
            "(cut it into tiles, or raise SITEWATCH_MAX_PIXELS)"
        )


def _whole_raster(dataset: rasterio.DatasetReader, extent: tuple[float, float]) -> _WindowGeometry:
    """One window holding the whole raster, resampled to the model's pixel size at its exact scale and
    padded up to multiples of 32 (at least MIN_TILE): one pass, no tile edges."""
    model_shape = (max(1, round(extent[0])), max(1, round(extent[1])))
    padded_shape = (max(MIN_TILE, -(-model_shape[0] // 32) * 32), max(MIN_TILE, -(-model_shape[1] // 32) * 32))
    whole = (dataset.height, dataset.width)
    return _WindowGeometry(whole, whole, max(padded_shape), 0, model_shape, padded_shape, ["whole raster in one pass"])


def _tiles(dataset: rasterio.DatasetReader, extent: tuple[float, float], tile_size: int | None, overlap: int | None,
           model_gsd: float, pixel_m: tuple[float, float]) -> _WindowGeometry:
    """Overlapping square tiles of ``tile_size`` model pixels (default: the largest up to 1024 that
    the raster fills, overlapping by a quarter)."""
    dx, dy = pixel_m
    if tile_size is None:
        tile_size = int(min(MAX_AUTO_TILE, max(MIN_TILE, min(extent) // 32 * 32)))
    if tile_size % 32 or tile_size < MIN_TILE:
        raise SitewatchError(f"tile size must be a multiple of 32 and at least {MIN_TILE}, got {tile_size}",
                             setting="tile_size")
    overlap = tile_size // 4 if overlap is None else overlap
    if not 0 <= overlap < tile_size // 2:
        raise SitewatchError(f"overlap must be in 0..{tile_size // 2 - 1} model pixels", setting="overlap")
    window_px = (max(1, round(tile_size * model_gsd / dy)), max(1, round(tile_size * model_gsd / dx)))
    if dataset.height < window_px[0] or dataset.width < window_px[1]:
        raise SitewatchError(
            f"{dataset.name}: raster is {dataset.width}×{dataset.height} px "
            f"({dataset.width * dx:.0f}×{dataset.height * dy:.0f} m), smaller than one model tile "
            f"({tile_size} px at {model_gsd} m = {tile_size * model_gsd:.0f} m); "
            "use a larger extent or a smaller tile size", setting="tile_size")
    stride_px = (max(1, round((tile_size - overlap) * model_gsd / dy)),
                 max(1, round((tile_size - overlap) * model_gsd / dx)))
    return _WindowGeometry(window_px, stride_px, tile_size, overlap, (tile_size, tile_size), (tile_size, tile_size), [])


# --- the tiled run -------------------------------------------------------------------------------

@dataclass
class SegmentResult:
    """What one raster's segmentation produced."""

    source: Path
    out_dir: Path
    width: int
    height: int
    area_km2: float
    seconds: float
    device: str
    building_share: float
    windows: int
    pixel_size_m: tuple[float, float]
    notes: list[str]
    work_gsd_m: float = 0.0
    work_gsd_rule: str = ""
    pass_gsds_m: list[float] = field(default_factory=list)  # working pixel size (m) of each pass
    fusion: FusionResult | None = None  # what the multi-scale fusion did, when two passes ran
    input_mapping: str = ""  # how the input values were mapped (sitewatch.radiometry)
    bands: str = ""  # the bands used for the model's bands and how they were known

    @property
    def probability_path(self) -> Path:
        return self.out_dir / "probability.tif"

    @property
    def mask_path(self) -> Path:
        return self.out_dir / "mask.tif"


class _WindowReader:
    """Reads and normalises tile windows on background threads (one dataset handle each)."""

    def __init__(self, path: Path, plan: InputPlan, mean: np.ndarray, std: np.ndarray) -> None:
        self.path, self.plan = path, plan
        self.mean = mean.reshape(-1, 1, 1).astype(np.float32)
        self.std = std.reshape(-1, 1, 1).astype(np.float32)
        self.local = threading.local()
        self.handles: list[rasterio.DatasetReader] = []
        self.lock = threading.Lock()

    def _dataset(self) -> rasterio.DatasetReader:
        if not hasattr(self.local, "dataset"):
            self.local.dataset = open_raster(self.path)
            with self.lock:
                self.handles.append(self.local.dataset)
        return self.local.dataset

    def read(self, window: Window) -> np.ndarray:
        dataset, plan = self._dataset(), self.plan
        if plan.palette is not None:  # indices cannot be interpolated: colours first, then resample
            indices = dataset.read(1, window=window, masked=True)
            colours = plan.palette[indices.filled(0)]
            colours[np.ma.getmaskarray(indices)] = np.nan
            size = (plan.model_shape[1], plan.model_shape[0])
            interpolation = cv2.INTER_AREA if size[0] < colours.shape[1] else cv2.INTER_LINEAR
            values = np.moveaxis(cv2.resize(colours, size, interpolation=interpolation), -1, 0)
        else:
            pixels = dataset.read(plan.bands, window=window, out_shape=(len(plan.bands), *plan.model_shape),
                                  resampling=Resampling.bilinear, masked=True)
            values = pixels.astype(np.float32).filled(np.nan)
        low = plan.low.reshape(-1, 1, 1).astype(np.float32)
        high = plan.high.reshape(-1, 1, 1).astype(np.float32)
        # in place: a window is ~12 MB of float32 per band triple, and two threads read at once
        normalised = np.subtract(values, low, out=values)
        np.divide(normalised, high - low, out=normalised)
        np.clip(normalised, 0.0, 1.0, out=normalised)
        nodata = ~np.isfinite(normalised)
        if nodata.any():  # nodata → band mean
            np.copyto(normalised, np.broadcast_to(self.mean, normalised.shape), where=nodata)
        np.subtract(normalised, self.mean, out=normalised)
        np.divide(normalised, self.std, out=normalised)
        pad_rows, pad_cols = (p - m for p, m in zip(plan.padded_shape, plan.model_shape, strict=True))
        if pad_rows or pad_cols:  # mirror the image into the padding (edge values where it is too small)
            small = pad_rows >= normalised.shape[1] or pad_cols >= normalised.shape[2]
            normalised = np.pad(normalised, ((0, 0), (0, pad_rows), (0, pad_cols)),
                                mode="edge" if small else "reflect")
        return normalised

    def close(self) -> None:
        for handle in self.handles:
            handle.close()


def _prefetched(items: list[Window], read: Callable[[Window], np.ndarray], workers: int,
                depth: int) -> Iterator[tuple[Window, np.ndarray]]:
    """Yield ``(window, pixels)`` in order while up to ``depth`` reads run ahead on threads."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: deque[tuple[Window, Future]] = deque()
        iterator = iter(items)
        for window in iterator:
            pending.append((window, pool.submit(read, window)))
            if len(pending) >= depth:
                break
        while pending:
            window, future = pending.popleft()
            next_window = next(iterator, None)
            if next_window is not None:
                pending.append((next_window, pool.submit(read, next_window)))
            yield window, future.result()


def _tmp_profile(dataset: rasterio.DatasetReader, nodata: int | None) -> dict:
    profile = {
        "driver": "GTiff", "width": dataset.width, "height": dataset.height, "count": 1,
        "dtype": "uint8", "tiled": True, "blockxsize": 256, "blockysize": 256,
        # a temporary, re-compressed into the COG: the fastest deflate level keeps it small on disk
        "compress": "deflate", "zlevel": 1, "BIGTIFF": "IF_SAFER",
    }
    if dataset.crs is not None:
        profile["crs"] = dataset.crs
    if dataset.transform is not None and not dataset.transform.is_identity:
        profile["transform"] = dataset.transform
    if nodata is not None:
        profile["nodata"] = nodata
    return profile


def segment_raster(
    path: Path,
    out_dir: Path,
    predictor: Predictor,
    *,
    tile_size: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    gsd_m: float | None = None,
    bands: list[int] | None = None,
    threshold: float | None = None,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    finish: Callable[[Path], None] | None = None,
    work_gsd_m: float | None = None,
    multiscale: FusionRule | None | Literal["predictor"] = "predictor",
    stretch: Stretch | None = None,
    ground_mask: Path | None = None,
) -> SegmentResult:
    """Segment one raster into ``out_dir`` (``probability.tif``, ``mask.tif``).

    The folder appears only when complete: results are written under a temporary sibling and
    renamed at the end; on any error nothing is left behind.

    Args:
        path: input raster (any GDAL format, any CRS, 1+ bands, uint8/uint16/float).
        out_dir: the folder to create (an earlier result of ours in it is replaced; files the
            user added are kept; a folder holding the input or other files is refused).
        predictor: model + device + backend.
        tile_size, overlap: model-grid tile side and overlap in model pixels (default: the
            largest tile up to 1024 that the raster fills, a quarter of it).
        batch_size: windows per forward pass (default: about 1 M model pixels per pass).
        gsd_m: pixel size (m) of a raster without georeferencing.
        bands: 1-based input bands for the model's bands (default: colour interpretation).
        threshold: building probability threshold (default: the model's).
        workers: background reader threads.
        progress: called with (windows done, windows total) over all passes.
        finish: called with the staging folder (holding both rasters) before it is renamed,
            for later stages that add outputs (footprints) to the same atomic folder.
        work_gsd_m: ground pixel size (m) to run the model at (default: the model's rule applied
            to the input's pixel size; see :func:`sitewatch.modelfile.working_gsd_m`).
        multiscale: a second, coarse pass fused with the fine one (:mod:`sitewatch.fusion`);
            None: one pass; ``predictor``: the predictor's choice (the model's default).
        stretch: the value mapping measured for the whole site (default: measured on this raster).
        ground_mask: a raster on the input's grid, 0 where the input did not see the ground (a
            cloud): nodata in the outputs (:func:`sitewatch.prepare.ground_mask`).
    """
    if multiscale == "predictor":
        multiscale = predictor.multiscale
    # GDAL's block cache defaults to 5 % of RAM; a bounded one keeps memory flat in raster size
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20):
        return _segment_raster(path, out_dir, predictor, _RunSettings(
            tile_size=tile_size, overlap=overlap, batch_size=batch_size, gsd_m=gsd_m, bands=bands,
            threshold=threshold, workers=workers, work_gsd_m=work_gsd_m, multiscale=multiscale, stretch=stretch,
            ground_mask=ground_mask),
            progress=progress, finish=finish)


@dataclass(frozen=True)
class _RunSettings:
    tile_size: int | None
    overlap: int | None
    batch_size: int | None
    gsd_m: float | None
    bands: list[int] | None
    threshold: float | None
    workers: int
    work_gsd_m: float | None
    multiscale: FusionRule | None
    stretch: Stretch | None = None
    ground_mask: Path | None = None

    def plan(self, dataset: rasterio.DatasetReader, predictor: Predictor, work_gsd_m: float | None) -> InputPlan:
        return plan_input(dataset, predictor.model, tile_size=self.tile_size, overlap=self.overlap,
                          gsd_m=self.gsd_m, bands=self.bands, work_gsd_m=work_gsd_m, stretch=self.stretch,
                          ground_mask=self.ground_mask)


def _segment_raster(path: Path, out_dir: Path, predictor: Predictor, settings: _RunSettings, *,
                    progress: Callable[[int, int], None] | None,
                    finish: Callable[[Path], None] | None) -> SegmentResult:
    started = time.perf_counter()
    out_dir = Path(out_dir)
    check_output_dir(out_dir, [Path(path)], "segment")
    with output_lock(out_dir):
        check_output_dir(out_dir, [Path(path)], "segment")  # again, now that no other run writes it
        return _segment_locked(path, out_dir, predictor, settings, progress, finish, started)


def _segment_locked(path: Path, out_dir: Path, predictor: Predictor, settings: _RunSettings,
                    progress: Callable[[int, int], None] | None, finish: Callable[[Path], None] | None,
                    started: float) -> SegmentResult:
    """:func:`_segment_raster` once the output folder is locked for this run."""
    dataset = open_raster(path)
    staging: Path | None = None
    try:
        plans = [settings.plan(dataset, predictor, settings.work_gsd_m)]
        rule = settings.multiscale
        if rule is not None and rule.applies_to(max(plans[0].pixel_size_m)):
            plans.append(settings.plan(dataset, predictor, plans[0].work_gsd_m * rule.coarse_factor))
        elif rule is not None:
            plans[0].notes.append(f"one pass: the model runs its multi-scale pass on inputs of "
                                  f"{rule.min_input_gsd_m:g} m or coarser (--multiscale forces it)")
        _check_not_all_nodata(dataset)
        windows = [len(_TileGrid(dataset.height, dataset.width, plan).windows) for plan in plans]
        check_tile_budget(path, sum(windows), plans[0])
        staging = staging_dir(out_dir)
        threshold = predictor.model.threshold if settings.threshold is None else settings.threshold
        counter = _Progress(progress, sum(windows))
        passes = [_run_pass(staging, index, dataset, plan, predictor, threshold, settings, counter)
                  for index, plan in enumerate(plans)]
        fusion = _fuse(staging, dataset, plans[0], passes, threshold, rule)
        if finish is not None:
            finish(staging)
        publish_dir(staging, out_dir, "segment")
        staging = None
        return _result(Path(path), out_dir, dataset, plans, predictor, fusion, sum(windows), started)
    except rasterio.errors.RasterioIOError as error:
        raise SitewatchError(f"{path}: read failed, file corrupt or truncated ({error})") from None
    finally:
        dataset.close()
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _run_pass(staging: Path, index: int, dataset: rasterio.DatasetReader, plan: InputPlan, predictor: Predictor,
              threshold: float, settings: _RunSettings, counter: _Progress) -> tuple[Path, Path, tuple[int, int]]:
    """One pass of the network into ``pass{index}.*.strips.tif`` in ``staging``."""
    targets = (staging / f"pass{index}.probability.strips.tif", staging / f"pass{index}.mask.strips.tif")
    reader = _WindowReader(Path(dataset.name), plan, np.array(predictor.model.metadata.mean),
                           np.array(predictor.model.metadata.std))
    try:
        shares = _predict_strips(dataset, plan, reader, predictor, threshold, settings.batch_size,
                                 settings.workers, counter, targets)
    finally:
        reader.close()
    return targets[0], targets[1], shares


def _fuse(staging: Path, dataset: rasterio.DatasetReader, plan: InputPlan,
          passes: list[tuple[Path, Path, tuple[int, int]]], threshold: float,
          rule: FusionRule | None) -> FusionResult:
    """The passes' probability and mask as the COGs ``probability.tif`` and ``mask.tif``."""
    fine_prob, fine_mask, (building_px, valid_px) = passes[0]
    if len(passes) == 1 or rule is None:
        _to_cogs(staging, fine_prob, fine_mask)
        return FusionResult(taken=0, refused_as_clusters=0, building_px=building_px, valid_px=valid_px)
    outputs = (staging / "probability.strips.tif", staging / "mask.strips.tif")
    dx, dy = plan.pixel_size_m
    result = fuse_passes(fine_prob, passes[1][0], outputs,
                         (_tmp_profile(dataset, PROBABILITY_NODATA), _tmp_profile(dataset, MASK_NODATA)), threshold,
                         dx * dy, rule)
    for prob, mask, _ in passes:
        prob.unlink()
        mask.unlink()
    _to_cogs(staging, *outputs)
    return result


#: Model tiles one raster may take without being asked for (about an hour at the 2-core CPU's
#: 15-20 tiles/s, docs/BENCHMARKS.md); ``$SITEWATCH_MAX_TILES`` sets another limit.
DEFAULT_MAX_TILES = 60_000


def check_tile_budget(path: Path, tiles: int, plan: InputPlan) -> None:
    """Refuse, before the model runs, a raster that would take more tiles than the limit."""
    limit_text = os.environ.get("SITEWATCH_MAX_TILES", "")
    limit = int(limit_text) if limit_text.isdigit() else DEFAULT_MAX_TILES
    if tiles > limit:
        raise SitewatchError(
            f"{path}: {tiles:,} model tiles at {plan.work_gsd_m:g} m (about {tiles / 15 / 3600:,.1f} h on a 2-core "
            f"CPU), above the limit of {limit:,}; crop the raster, choose a coarser working pixel size, or set "
            "SITEWATCH_MAX_TILES to allow it", setting="work_gsd")


@dataclass
class _TileGrid:
    """The windows of one raster (input pixels): tile rows, columns and the blending weights."""

    height: int
    width: int
    plan: InputPlan

    def __post_init__(self) -> None:
        (win_h, win_w), (stride_h, stride_w) = self.plan.window_px, self.plan.stride_px
        self.rows = window_starts(self.height, win_h, stride_h)
        self.windows = [Window(c, r, win_w, win_h) for r in self.rows
                        for c in window_starts(self.width, win_w, stride_w)]
        self._weights: dict[tuple[bool, bool, bool, bool], np.ndarray] = {}

    def weight_of(self, window: Window) -> np.ndarray:
        """Blending weight of a window: ~0 next to a neighbour's overlap, 1 at the raster's own edge."""
        (win_h, win_w), (stride_h, stride_w) = self.plan.window_px, self.plan.stride_px
        sides = (window.row_off > 0, window.row_off + win_h < self.height,
                 window.col_off > 0, window.col_off + win_w < self.width)
        if sides not in self._weights:
            self._weights[sides] = blend_weight(win_h, win_w, (win_h - stride_h, win_w - stride_w), sides)
        return self._weights[sides]


def _to_cogs(staging: Path, probability_tmp: Path, mask_tmp: Path) -> None:
    write_cog(probability_tmp, staging / "probability.tif")
    write_cog(mask_tmp, staging / "mask.tif", overview_resampling="nearest")
    probability_tmp.unlink()
    mask_tmp.unlink()


def _predict_strips(dataset: rasterio.DatasetReader, plan: InputPlan, reader: _WindowReader, predictor: Predictor,
                    threshold: float, batch_size: int | None, workers: int, progress: _Progress,
                    targets: tuple[Path, Path]) -> tuple[int, int]:
    """One pass of the network over the raster at ``plan``'s working size, blended into the
    probability and mask GeoTIFFs ``targets`` strip by strip; (building pixels, valid pixels)."""
    tiles = _TileGrid(dataset.height, dataset.width, plan)
    progress.start_pass(len(tiles.windows))
    batch_size = batch_size or auto_batch_size(plan.tile_size)
    with rasterio.open(targets[0], "w", **_tmp_profile(dataset, PROBABILITY_NODATA)) as prob_out, \
            rasterio.open(targets[1], "w", **_tmp_profile(dataset, MASK_NODATA)) as mask_out:
        prob_out.update_tags(**{PRODUCT_TAG: "probability"})
        blender = _StripBlender(dataset, plan, tiles, threshold, prob_out, mask_out, progress)
        batch: list[tuple[Window, np.ndarray]] = []
        row_index = 0
        for window, pixels in _prefetched(tiles.windows, reader.read, workers, depth=batch_size * 3):
            if window.row_off != tiles.rows[row_index]:  # a new tile row: the old one is complete
                blender.add_batch(batch, predictor)
                blender.write_rows(window.row_off)
                row_index += 1
            batch.append((window, pixels))
            if len(batch) == batch_size:
                blender.add_batch(batch, predictor)
        blender.add_batch(batch, predictor)
        blender.write_rows(dataset.height)
    return blender.building_px, blender.valid_px


class _Progress:
    """Windows done over all passes, reported as (done, total) to the caller's callback."""

    def __init__(self, callback: Callable[[int, int], None] | None, total: int) -> None:
        self.callback, self.total, self.before, self.windows = callback, total, 0, 0

    def start_pass(self, windows: int) -> None:
        self.before += self.windows
        self.windows = windows

    def __call__(self, done: int, _total: int) -> None:
        if self.callback:
            self.callback(self.before + done, self.total)


class _StripBlender:
    """Weighted tile probabilities accumulated in a buffer one window high, written row strip by
    row strip once no later window reaches them (memory follows the raster's width)."""

    def __init__(self, dataset: rasterio.DatasetReader, plan: InputPlan, tiles: _TileGrid, threshold: float,
                 prob_out: rasterio.io.DatasetWriter, mask_out: rasterio.io.DatasetWriter,
                 progress: Callable[[int, int], None] | None) -> None:
        self.dataset, self.plan, self.tiles, self.threshold = dataset, plan, tiles, threshold
        self.progress, self.done = progress, 0
        self.prob_out, self.mask_out = prob_out, mask_out
        self.win_h, self.win_w = plan.window_px
        self.acc = np.zeros((self.win_h, dataset.width), np.float32)
        self.acc_w = np.zeros((self.win_h, dataset.width), np.float32)
        self.buffer_top = tiles.rows[0]
        self.building_px = self.valid_px = 0

    def add_batch(self, batch: list[tuple[Window, np.ndarray]], predictor: Predictor) -> None:
        """Predict a batch of windows and add their weighted probabilities; empty the batch."""
        if not batch:
            return
        probabilities = predictor(np.stack([pixels for _, pixels in batch]))
        for (window, _), probability in zip(batch, probabilities, strict=True):
            probability = probability[: self.plan.model_shape[0], : self.plan.model_shape[1]]  # padding off
            if probability.shape != (self.win_h, self.win_w):
                probability = cv2.resize(probability, (self.win_w, self.win_h), interpolation=cv2.INTER_LINEAR)
            r0, c0 = window.row_off - self.buffer_top, window.col_off
            weight = self.tiles.weight_of(window)
            probability *= weight
            self.acc[r0 : r0 + self.win_h, c0 : c0 + self.win_w] += probability
            self.acc_w[r0 : r0 + self.win_h, c0 : c0 + self.win_w] += weight
        self.done += len(batch)
        batch.clear()
        if self.progress:
            self.progress(self.done, len(self.tiles.windows))

    def write_rows(self, upto: int) -> None:
        """Write finished rows [buffer_top, upto) and shift the buffer."""
        n = upto - self.buffer_top
        strip = Window(0, self.buffer_top, self.dataset.width, n)
        probability = np.divide(self.acc[:n], self.acc_w[:n], out=np.zeros_like(self.acc[:n]),
                                where=self.acc_w[:n] > 0)
        valid = valid_pixels(self.dataset, self.plan.bands, strip, self.plan.ground_mask)
        prob_u8 = encode_probability(probability)
        mask = (probability > self.threshold).astype(np.uint8)
        prob_u8[~valid] = PROBABILITY_NODATA
        mask[~valid] = MASK_NODATA
        self.prob_out.write(prob_u8, 1, window=strip)
        self.mask_out.write(mask, 1, window=strip)
        self.building_px += int((mask == 1).sum())
        self.valid_px += int(valid.sum())
        for array in (self.acc, self.acc_w):  # rows below the written strip move to the top
            array[: self.win_h - n] = array[n:].copy()
            array[self.win_h - n :] = 0
        self.buffer_top = upto


def _result(path: Path, out_dir: Path, dataset: rasterio.DatasetReader, plans: list[InputPlan],
            predictor: Predictor, fusion: FusionResult, windows: int, started: float) -> SegmentResult:
    plan = plans[0]
    dx, dy = plan.pixel_size_m
    notes = list(plan.notes)
    if len(plans) > 1:
        notes.append(f"multi-scale: a second pass at {plans[1].work_gsd_m:g} m; {fusion.taken} large building(s) "
                     f"taken from it, {fusion.refused_as_clusters} refused as merged clusters")
    return SegmentResult(
        source=path, out_dir=out_dir, width=dataset.width, height=dataset.height,
        area_km2=dataset.width * dataset.height * dx * dy / 1e6, seconds=time.perf_counter() - started,
        device=predictor.description, building_share=fusion.building_px / max(fusion.valid_px, 1),
        windows=windows, pixel_size_m=plan.pixel_size_m, notes=notes,
        work_gsd_m=plan.work_gsd_m, work_gsd_rule=plan.work_gsd_rule,
        pass_gsds_m=[p.work_gsd_m for p in plans], fusion=fusion if len(plans) > 1 else None,
        input_mapping=plan.notes[0], bands=plan.bands_used,
    )


def valid_pixels(dataset: rasterio.DatasetReader, bands: list[int], window: Window,
                 ground_mask: Path | None = None) -> np.ndarray:
    """Pixels with data: inside the dataset mask, seen by the ``ground_mask`` (a raster on the same
    grid, 0 = not seen: clouds, shadow, snow) and, for float rasters, finite in every band used.

    NaN and ±inf are nodata wherever they appear, whether or not the raster declares them.
    """
    valid = dataset.dataset_mask(window=window) > 0
    if ground_mask is not None:
        with rasterio.open(ground_mask) as ground:
            valid &= ground.read(1, window=window) > 0
    if any(np.issubdtype(np.dtype(dataset.dtypes[b - 1]), np.floating) for b in bands):
        valid &= np.isfinite(dataset.read(bands, window=window)).all(axis=0)
    return valid


def _check_not_all_nodata(dataset: rasterio.DatasetReader) -> None:
    mask = dataset.dataset_mask(out_shape=overview_shape(dataset, 512), resampling=Resampling.nearest)
    if not mask.any():
        raise SitewatchError(f"{dataset.name}: every pixel is nodata")
