"""Model files: export a training checkpoint to safetensors + JSON metadata, and load either.

An exported model file is one ``.safetensors`` file: the network weights, and under the
header metadata key ``sitewatch`` a JSON document with everything inference needs (network
settings, input bands and order, normalisation, pixel size in metres, threshold, classes,
training data summary, code version). Loading it runs no pickle. Lightning ``.ckpt`` files are
read with ``torch.load(weights_only=True)`` only, so a checkpoint carrying code is refused.

Loading an exported file builds its network only when something asks for it
(:attr:`LoadedModel.network`): ONNX Runtime inference from a cached graph then runs without
importing torch, timm or smp, ~700 MiB of resident memory (docs/BENCHMARKS.md, issue 26).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from safetensors import SafetensorError, safe_open

from sitewatch.errors import SitewatchError
from sitewatch.files import atomic_path
from sitewatch.modelfile import MODEL_FORMAT, FusionRule, ModelMetadata, file_sha256, read_model_metadata
from sitewatch.paths import model_path, recorded_checksum

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass
class LoadedModel:
    """A network ready for inference and the metadata it was trained with.

    ``network`` is built on first use when the model was loaded with a ``build`` function (an
    exported file): reading the metadata and the checksum needs no torch.
    """

    _network: nn.Module | None
    metadata: ModelMetadata
    path: Path
    sha256: str
    _build: Callable[[], nn.Module] | None = field(default=None, repr=False)

    @property
    def network(self) -> nn.Module:
        """The PyTorch network (built, and torch imported, on first use)."""
        if self._network is None:
            if self._build is None:
                raise SitewatchError(f"{self.path}: model has no network")
            self._network, self._build = self._build(), None
        return self._network

    @property
    def gsd_m(self) -> float:
        return self.metadata.gsd_m

    @property
    def gsd_range_m(self) -> tuple[float, float] | None:
        """Finest and coarsest trained pixel sizes (m) of a multi-scale model, else None."""
        return self.metadata.gsd_range_m

    @property
    def threshold(self) -> float:
        return self.metadata.threshold

    @property
    def bands(self) -> list[str]:
        return list(self.metadata.bands)

    @property
    def name(self) -> str:
        return self.path.name


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Read a Lightning checkpoint with ``weights_only=True``; a clear error for anything else."""
    import torch

    if not path.is_file():
        raise SitewatchError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # Lightning saves with pickle protocol 4, which loads fine
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - pickle with code, truncation, not a zip...
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise SitewatchError(
            f"{path}: refused or unreadable checkpoint (only weights-only files load): {reason}"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise SitewatchError(f"{path}: not a Lightning checkpoint (no state_dict)")
    if "sitewatch" not in checkpoint:
        raise SitewatchError(f"{path}: checkpoint has no sitewatch metadata (not a sitewatch model)")
    return checkpoint


def network_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The network's tensors from a Lightning checkpoint (``model.`` prefix removed)."""
    return {
        key.removeprefix("model."): tensor.contiguous()
        for key, tensor in checkpoint["state_dict"].items()
        if key.startswith("model.")
    }


def read_weights(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The metadata document and network tensors of a checkpoint (.ckpt) or model file (.safetensors)."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix == ".safetensors":
        return read_model_metadata(path), load_file(str(path), device="cpu")
    checkpoint = read_checkpoint(path)
    return dict(checkpoint["sitewatch"]), network_state(checkpoint)


@dataclass(frozen=True)
class Blend:
    """Weight-space ensembling (WiSE-FT, Wortsman et al. 2022) of a fine-tuned network with the
    network it was fine-tuned from: every float tensor is ``(1 - weight) * base + weight * tuned``.

    ``base``: the model file or checkpoint fine-tuning started from (same architecture);
    ``weight``: the fine-tuned share, 0-1. The blend keeps the fine-tuned model's metadata (its input
    mapping among them) and records both files' SHA-256 and the weight under ``blend``.
    """

    base: Path
    weight: float


def blend_states(base: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor],
                 weight: float) -> dict[str, torch.Tensor]:
    """``(1 - weight) * base + weight * tuned`` for float tensors; integer tensors (BatchNorm's
    ``num_batches_tracked``) are the tuned network's. Raises SitewatchError if the tensors differ."""
    import torch

    if not 0.0 <= weight <= 1.0:
        raise SitewatchError(f"blend weight {weight} is outside 0-1")
    if base.keys() != tuned.keys() or any(base[k].shape != tuned[k].shape for k in tuned):
        raise SitewatchError("the networks to blend differ in their tensors (not the same architecture)")
    return {key: torch.lerp(base[key].float(), value.float(), weight) if value.is_floating_point() else value
            for key, value in tuned.items()}


def export_model(checkpoint_path: Path, out_path: Path,
                 multiscale: FusionRule | None | Literal["checkpoint"] = "checkpoint",
                 blend: Blend | None = None) -> str:
    """Write the compact inference file for a checkpoint; return its SHA-256.

    Weights are stored in float32; the file is written to a temporary name and renamed.
    ``multiscale``: the default multi-scale rule of inference to store (None: one pass;
    ``checkpoint``: as the checkpoint says). ``blend``: blend the weights with the network the
    checkpoint was fine-tuned from (see ``Blend``).
    """
    from safetensors.torch import save_file

    metadata, state = read_weights(Path(checkpoint_path))
    if blend is not None:
        _, base_state = read_weights(blend.base)
        state = blend_states(base_state, state, blend.weight)
        metadata["blend"] = {"base_sha256": file_sha256(Path(blend.base)),
                             "tuned_sha256": file_sha256(Path(checkpoint_path)), "tuned_weight": blend.weight}
    metadata.pop("saved_at", None)
    if multiscale != "checkpoint":
        metadata["multiscale"] = multiscale.document() if multiscale else None
    metadata["format"] = MODEL_FORMAT
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    with atomic_path(out_path) as tmp:
        save_file(state, str(tmp), metadata={"sitewatch": json.dumps(metadata, sort_keys=True)})
    return file_sha256(Path(out_path))


def load_for_inference(path: Path | None = None) -> LoadedModel:
    """The model inference runs: ``path``, else the default one; a shipped file is checked against
    its recorded checksum. Loaded on the CPU (the predictor moves it to its device)."""
    path = model_path(path)
    return load_model(path, device="cpu", expected_sha256=recorded_checksum(path))


def load_model(
    path: str | Path,
    device: str | torch.device = "cpu",
    expected_sha256: str | None = None,
) -> LoadedModel:
    """Load an exported ``.safetensors`` model (or a ``.ckpt``, weights-only) for inference.

    An exported file's metadata, checksum and header are read now, its network is built on first
    use of ``network`` (so weights that do not fit the network are reported then).

    Args:
        path: model file.
        device: where to put the network (weights are read with ``map_location`` CPU first).
        expected_sha256: if given, the file must have this checksum.
    """
    path = Path(path)
    if not path.is_file():
        raise SitewatchError(f"{path}: model file not found")
    sha = file_sha256(path)
    if expected_sha256 is not None and sha != expected_sha256:
        raise SitewatchError(
            f"{path}: checksum {sha[:12]}… does not match the recorded {expected_sha256[:12]}…"
        )
    if path.suffix == ".safetensors":
        document = read_model_metadata(path)
        try:  # the header and the tensors' extents, read now: a truncated file fails here, not later
            with safe_open(str(path), framework="numpy") as handle:
                handle.keys()
        except (SafetensorError, OSError) as error:
            raise SitewatchError(f"{path}: cannot read weights ({error})") from None
        metadata = ModelMetadata.from_document(document, path)
        return LoadedModel(None, metadata, path, sha, _build=partial(_build_network, path, metadata, None, device))
    if path.suffix == ".ckpt":
        checkpoint = read_checkpoint(path)
        metadata = ModelMetadata.from_document(checkpoint["sitewatch"], path)
        return LoadedModel(_build_network(path, metadata, network_state(checkpoint), device), metadata, path, sha)
    raise SitewatchError(f"{path}: model files are .safetensors (exported) or .ckpt")


def _build_network(path: Path, metadata: ModelMetadata, state: dict[str, torch.Tensor] | None,
                   device: str | torch.device) -> nn.Module:
    """The network of ``metadata`` with the weights ``state`` (None: read from the ``.safetensors`` file)."""
    from safetensors.torch import load_file

    from sitewatch.network import build_network

    if state is None:
        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as error:
            raise SitewatchError(f"{path}: cannot read weights ({error})") from None
    settings = metadata.network
    network = build_network(**settings)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise SitewatchError(f"{path}: weights do not fit the {settings.get('arch')} / "
                             f"{settings.get('encoder')} network ({first})") from None
    return network.eval().to(device)
