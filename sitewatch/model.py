"""The Lightning training task of the segmentation network (:mod:`sitewatch.network`).

``SegmentationTask`` follows torchgeo's trainer layout: ``configure_models``,
``configure_losses``, ``configure_metrics``.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import segmentation_models_pytorch as smp
import torch
from scipy import ndimage
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryF1Score,
    BinaryJaccardIndex,
    BinaryPrecision,
    BinaryRecall,
)

from sitewatch import __version__
from sitewatch.checkpoint import load_model
from sitewatch.data.common import IGNORE
from sitewatch.errors import SitewatchError
from sitewatch.modelfile import MODEL_FORMAT, FusionRule
from sitewatch.network import Architecture, build_network
from sitewatch.paths import default_model_path, recorded_checksum
from sitewatch.products import DEFAULT_THRESHOLD

#: ``init_weights`` value naming the model inference uses by default.
DEFAULT_INIT_WEIGHTS = "default"

# Per-source metrics are computed on every rank each epoch (so DDP ranks stay in step), also
# for a source that a short sanity check did not reach: that case is expected, not a warning.
warnings.filterwarnings("ignore", message=r"The ``compute`` method of metric", category=UserWarning)

LossName = Literal["dice+bce", "dice", "bce", "focal+dice", "lovasz", "dice+bce+gap"]


def gap_pixels(masks: np.ndarray, reach_px: int) -> np.ndarray:
    """Background pixels of ``B×H×W`` labels (1 building, 0 not, IGNORE) that lie within ``reach_px`` of two
    different buildings (8-connected components): the narrow gaps that keep neighbouring houses apart."""
    gaps = np.zeros(masks.shape, bool)
    size = 2 * reach_px + 1
    for k, mask in enumerate(masks):
        components, count = ndimage.label(mask == 1, structure=np.ones((3, 3), bool))
        if count < 2:
            continue
        highest = ndimage.maximum_filter(components, size=size)
        lowest = ndimage.minimum_filter(np.where(components > 0, components, count + 1), size=size)
        gaps[k] = (mask == 0) & (highest > 0) & (lowest <= count) & (highest != lowest)
    return gaps


class GapWeightedBCE(nn.Module):
    """Binary cross-entropy on the gaps between neighbouring buildings (:func:`gap_pixels`), ``weight`` times over,
    per labelled pixel: the border weights of the U-Net paper (Ronneberger et al. 2015), so that houses a few
    metres apart are predicted apart, not as one estate."""

    def __init__(self, reach_px: int = 3, weight: float = 5.0) -> None:
        super().__init__()
        self.reach_px, self.weight = reach_px, weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labels = target[:, 0].detach().cpu().numpy()
        gaps = torch.from_numpy(gap_pixels(labels, self.reach_px)).to(logits.device)
        if not bool(gaps.any()):
            return logits.new_zeros(())
        loss = nn.functional.binary_cross_entropy_with_logits(logits[:, 0], torch.zeros_like(logits[:, 0]),
                                                              reduction="none")
        labelled = (target[:, 0] != IGNORE).sum().clamp(min=1)
        return self.weight * (loss * gaps).sum() / labelled


class BinarySegmentationLoss(nn.Module):
    """Sum of the named losses on building logits, ignoring label value 255."""

    def __init__(self, name: LossName = "dice+bce") -> None:
        super().__init__()
        parts: dict[str, nn.Module] = {}
        for part in name.split("+"):
            if part == "dice":
                parts[part] = smp.losses.DiceLoss("binary", from_logits=True, ignore_index=IGNORE)
            elif part == "bce":
                parts[part] = smp.losses.SoftBCEWithLogitsLoss(ignore_index=IGNORE)
            elif part == "focal":
                parts[part] = smp.losses.FocalLoss("binary", ignore_index=IGNORE)
            elif part == "gap":
                parts[part] = GapWeightedBCE()
            elif part == "lovasz":
                parts[part] = smp.losses.LovaszLoss("binary", ignore_index=IGNORE)
            else:
                raise SitewatchError(f"unknown loss '{part}' in '{name}'")
        self.parts = nn.ModuleDict(parts)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.unsqueeze(1)
        total = logits.new_zeros(())
        for name, loss in self.parts.items():
            total = total + loss(logits, target.float() if name == "bce" else target)
        return total


def init_weights_path(value: str) -> Path:
    """The model file named by ``init_weights``: a path, or ``default`` for the default model."""
    return default_model_path() if value == DEFAULT_INIT_WEIGHTS else Path(value)


def load_initial_weights(network: nn.Module, settings: dict[str, Any], path: Path) -> str:
    """Copy the weights of a trained sitewatch model into ``network``; return the file's SHA-256.

    Args:
        network: freshly built network.
        settings: its network settings (arch, encoder, channels...), which the file must match.
        path: exported ``.safetensors`` model or sitewatch Lightning ``.ckpt`` (weights-only).
    """
    source = load_model(path, expected_sha256=recorded_checksum(path))
    theirs = source.metadata.network
    differing = sorted(key for key in settings if theirs.get(key) != settings[key])
    if differing:
        details = ", ".join(f"{key}: {theirs.get(key)!r} in the file, {settings[key]!r} here"
                            for key in differing)
        raise SitewatchError(f"init_weights {path}: network settings differ ({details})")
    network.load_state_dict(source.network.state_dict(), strict=True)
    return source.sha256


def _metrics(threshold: float) -> MetricCollection:
    common = {"threshold": threshold, "ignore_index": IGNORE}
    return MetricCollection({
        "iou": BinaryJaccardIndex(**common),
        "f1": BinaryF1Score(**common),
        "precision": BinaryPrecision(**common),
        "recall": BinaryRecall(**common),
    })


class SegmentationTask(L.LightningModule):
    """Binary building segmentation.

    Args:
        arch: smp architecture.
        encoder: encoder name (smp, or ``tu-`` + timm model name).
        encoder_weights: None, ``"package"`` or a local weights file; never a hub download.
        encoder_depth, decoder_channels: network shape.
        loss: ``"dice+bce"`` (default), ``"dice"``, ``"bce"``, ``"focal+dice"``, ``"lovasz"``, ``"dice+bce+gap"``
            (plus the gaps between neighbouring buildings weighted, :class:`GapWeightedBCE`).
        lr: peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps before cosine decay to ``lr × 0.01``.
        threshold: probability above which a pixel is building (stored for inference).
        channels_last: use channels-last memory format (faster on CPU and tensor cores).
        init_weights: fine-tune from this model: an exported ``.safetensors`` or a sitewatch
            ``.ckpt`` (read weights-only) whose network has the same settings, or ``default``:
            the model inference uses by default (``$SITEWATCH_MODEL``, else the shipped one). All network
            weights start from it (``encoder_weights`` is then not needed); optimizer and
            schedule start fresh. ``--ckpt_path`` is for resuming the same run instead.
        work_gsd_upsample, work_gsd_range_m: the inference rule stored with the model: work at
            the input's pixel size divided by ``work_gsd_upsample``, clamped to
            ``work_gsd_range_m`` metres (see :func:`sitewatch.modelfile.working_gsd_m`); None:
            the input's own size within the trained range.
        multiscale: the multi-scale rule inference applies by default (``coarse_factor``,
            ``large_m2``, ``split_share``: :class:`sitewatch.modelfile.FusionRule`); None: one pass.
    """

    def __init__(
        self,
        arch: Architecture = "Unet",
        encoder: str = "tu-tf_efficientnet_lite0",
        encoder_weights: str | None = None,
        encoder_depth: int = 5,
        decoder_channels: list[int] | None = None,
        loss: LossName = "dice+bce",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        warmup_steps: int = 50,
        threshold: float = DEFAULT_THRESHOLD,
        channels_last: bool = True,
        init_weights: str | None = None,
        work_gsd_upsample: float | None = None,
        work_gsd_range_m: list[float] | None = None,
        multiscale: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.data_info: dict[str, Any] = {}
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    # -- torchgeo-style configuration -------------------------------------------------------
    def network_settings(self) -> dict[str, Any]:
        hp = self.hparams
        return {
            "arch": hp.arch, "encoder": hp.encoder, "in_channels": 3, "classes": 1,
            "encoder_depth": hp.encoder_depth,
            "decoder_channels": list(hp.decoder_channels or (256, 128, 64, 32, 16)[: hp.encoder_depth]),
        }

    def configure_models(self) -> None:
        self.model = build_network(**self.network_settings(),
                                   encoder_weights=self.hparams.encoder_weights)
        if self.hparams.init_weights:
            self.initial_model_sha256 = load_initial_weights(self.model, self.network_settings(),
                                                             init_weights_path(self.hparams.init_weights))
        if self.hparams.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def configure_losses(self) -> None:
        self.criterion = BinarySegmentationLoss(self.hparams.loss)

    def configure_metrics(
        self, source_names: list[str] | None = None, val_sources: list[str] | None = None
    ) -> None:
        """Overall validation metrics, and one set per validation source.

        Args:
            source_names: all source names, in the order of the batches' ``source`` index.
            val_sources: the sources present in the validation split (same on every rank).
        """
        self.val_metrics = _metrics(self.hparams.threshold).clone(prefix="val/")
        self.source_names = list(source_names or [])
        self.source_metrics = nn.ModuleDict({
            name: _metrics(self.hparams.threshold).clone(prefix=f"val/{name}/")
            for name in (val_sources or [])
        })

    # -- data information carried into checkpoints ----------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if datamodule is not None and hasattr(datamodule, "describe"):
            datamodule.setup(stage)
            self.data_info = datamodule.describe()
            self.data_info.update(bands=list(datamodule.bands), mean=list(datamodule.mean),
                                  std=list(datamodule.std))
            self.configure_metrics(list(datamodule.sources), datamodule.val_sources())

    def metadata(self) -> dict[str, Any]:
        """Everything inference needs, as plain JSON-able values."""
        info = self.data_info
        return {
            "format": MODEL_FORMAT,
            "network": self.network_settings(),
            "bands": info.get("bands", ["red", "green", "blue"]),
            "mean": info.get("mean", [0.485, 0.456, 0.406]),
            "std": info.get("std", [0.229, 0.224, 0.225]),
            "input_scale": 255.0,
            # how raw input values reach the network (sitewatch.radiometry.InputMapping); absent: legacy
            "radiometry": info.get("radiometry"),
            "gsd_m": info.get("gsd_m"),
            # multi-scale models: the range of ground pixel sizes (m) they were trained on;
            # inference works at the input's own pixel size clamped to this range
            "gsd_range_m": ([min(info["gsd_levels"]), max(info["gsd_levels"])]
                            if info.get("gsd_levels") else None),
            "work_gsd_rule": ({"upsample": self.hparams.work_gsd_upsample,
                               "range_m": list(self.hparams.work_gsd_range_m)}
                              if self.hparams.work_gsd_upsample and self.hparams.work_gsd_range_m else None),
            "tile_size": info.get("patch_size", 256),
            "threshold": self.hparams.threshold,
            "multiscale": FusionRule.from_document(self.hparams.multiscale).document() if self.hparams.multiscale
            else None,
            "classes": ["background", "building"],
            "training": {
                "data": info,
                "loss": self.hparams.loss,
                "encoder_weights": self.hparams.encoder_weights,
                "init_weights": self.hparams.init_weights,
                "init_weights_sha256": getattr(self, "initial_model_sha256", None),
                "lr": self.hparams.lr,
                "global_step": int(self.global_step),
                "epoch": int(self.current_epoch),
                "best_val_iou": getattr(self, "_best_val_iou", None),
            },
            "code_version": __version__,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["sitewatch"] = self.metadata()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("sitewatch", {})
        self.data_info = dict(meta.get("training", {}).get("data", {}))
        for key in ("bands", "mean", "std"):
            if key in meta:
                self.data_info[key] = meta[key]

    # -- steps ---------------------------------------------------------------------------------
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return self.model(image)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"])
        loss = self.criterion(logits, batch["mask"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["image"])
        loss = self.criterion(logits, batch["mask"])
        self.log("val/loss", loss, batch_size=batch["image"].shape[0], sync_dist=True)
        probability = torch.sigmoid(logits[:, 0])
        self.val_metrics.update(probability, batch["mask"])
        for index in batch["source"].unique().tolist():
            name = self.source_names[index] if index < len(self.source_names) else None
            if name in self.source_metrics:
                chosen = batch["source"] == index
                self.source_metrics[name].update(probability[chosen], batch["mask"][chosen])

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.log_dict(values, prog_bar=True, sync_dist=True)
        iou = float(values["val/iou"])
        self._best_val_iou = max(iou, getattr(self, "_best_val_iou", None) or 0.0)
        self.val_metrics.reset()
        for collection in self.source_metrics.values():
            self.log_dict(collection.compute(), sync_dist=True)
            collection.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr,
                                      weight_decay=self.hparams.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = min(self.hparams.warmup_steps, max(total // 10, 1))
        scheduler = torch.optim.lr_scheduler.SequentialLR(
            optimizer,
            [torch.optim.lr_scheduler.LinearLR(optimizer, 0.01, 1.0, total_iters=warmup),
             torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(total - warmup, 1),
                                                        eta_min=self.hparams.lr * 0.01)],
            milestones=[warmup],
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
