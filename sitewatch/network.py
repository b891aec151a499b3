"""The segmentation network: an smp model built from plain settings, with local weights only.

The same settings the exported model file carries, so training (:mod:`sitewatch.model`) and
inference (:mod:`sitewatch.checkpoint`) build the same network.
"""

from __future__ import annotations

from typing import Any, Literal

import segmentation_models_pytorch as smp
import timm
from torch import nn

from sitewatch.errors import SitewatchError
from sitewatch.pretrained import load_encoder_weights

Architecture = Literal["Unet", "UnetPlusPlus", "FPN", "DeepLabV3Plus"]
_ARCHITECTURES = {"Unet": smp.Unet, "UnetPlusPlus": smp.UnetPlusPlus, "FPN": smp.FPN,
                  "DeepLabV3Plus": smp.DeepLabV3Plus}


def check_encoder_name(encoder: str) -> None:
    """Raise a one-line error unless smp (or timm, for ``tu-`` names) knows ``encoder``."""
    if encoder.startswith("tu-"):
        if not timm.is_model(encoder[3:]):
            raise SitewatchError(f"unknown encoder '{encoder}': timm has no model '{encoder[3:]}'")
        return
    if encoder not in smp.encoders.get_encoder_names():
        raise SitewatchError(
            f"unknown encoder '{encoder}' (examples: resnet18, resnet34, mobilenet_v2, "
            "efficientnet-b0, tu-tf_efficientnet_lite0)"
        )


def build_network(
    arch: str = "Unet",
    encoder: str = "tu-tf_efficientnet_lite0",
    in_channels: int = 3,
    classes: int = 1,
    encoder_depth: int = 5,
    decoder_channels: tuple[int, ...] | list[int] = (256, 128, 64, 32, 16),
    encoder_weights: str | None = None,
) -> nn.Module:
    """Build an smp segmentation network with local weights only.

    Args:
        arch: smp architecture name.
        encoder: smp encoder name (``tu-`` prefix for timm encoders).
        in_channels: input bands.
        classes: output channels (1: building logit).
        encoder_depth, decoder_channels: U-Net shape (``len(decoder_channels) == depth``).
        encoder_weights: None, ``"package"`` or a local file (see :mod:`sitewatch.pretrained`).
    """
    if arch not in _ARCHITECTURES:
        raise SitewatchError(f"unknown architecture '{arch}' (known: {', '.join(_ARCHITECTURES)})")
    check_encoder_name(encoder)
    kwargs: dict[str, Any] = {"encoder_name": encoder, "encoder_weights": None,
                              "in_channels": in_channels, "classes": classes,
                              "encoder_depth": encoder_depth}
    if arch in {"Unet", "UnetPlusPlus"}:
        if len(decoder_channels) != encoder_depth:
            raise SitewatchError(
                f"decoder_channels has {len(decoder_channels)} entries, encoder_depth is "
                f"{encoder_depth}"
            )
        kwargs["decoder_channels"] = list(decoder_channels)
    try:
        network = _ARCHITECTURES[arch](**kwargs)
    except (KeyError, ValueError, RuntimeError) as error:
        raise SitewatchError(f"cannot build {arch} with encoder '{encoder}': {error}") from None
    if encoder_weights is not None:
        if in_channels != 3:
            raise SitewatchError("pretrained encoder weights need in_channels=3")
        load_encoder_weights(network.encoder, encoder, encoder_weights)
    return network
