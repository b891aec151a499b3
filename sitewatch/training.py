"""Training entry point: LightningCLI over :class:`SegmentationTask` and the data module.

``python train.py fit --config configs/cpu_smoke.yaml`` (or ``sitewatch train fit ...``).
After fitting, the best checkpoint is exported to ``model.safetensors`` in the log folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch.distributed as dist
from lightning.pytorch.cli import LightningCLI

from sitewatch.checkpoint import export_model
from sitewatch.data.datamodule import BuildingDataModule
from sitewatch.errors import SitewatchError
from sitewatch.model import SegmentationTask


class ExportInferenceModel(L.Callback):
    """At the end of ``fit``, export the best (else last) checkpoint to an inference file.

    Args:
        filename: name of the exported file, written in the trainer's log folder.
    """

    def __init__(self, filename: str = "model.safetensors") -> None:
        self.filename = filename
        self.exported: Path | None = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fast_dev_run:
            return
        folder = Path(trainer.log_dir or trainer.default_root_dir)  # a collective call under DDP
        if not trainer.is_global_zero:
            return
        callback = trainer.checkpoint_callback
        source = None
        if callback is not None:
            source = callback.best_model_path or getattr(callback, "last_model_path", "")
        if not source:
            return
        self.exported = folder / self.filename
        sha = export_model(Path(source), self.exported)
        print(final_scores(trainer))
        print(f"exported {source} -> {self.exported} (sha256 {sha})")


def final_scores(trainer: L.Trainer) -> str:
    """One line with the last validation scores and the best checkpoint's monitored score."""
    last = {key: float(value) for key, value in trainer.callback_metrics.items()
            if key.startswith("val/") and key.count("/") == 1}
    shown = ", ".join(f"{key} {value:.3f}" for key, value in sorted(last.items()))
    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_score", None)
    monitor = getattr(callback, "monitor", None)
    best_text = f"; best {monitor} {float(best):.3f}" if best is not None and monitor else ""
    return f"final validation (epoch {trainer.current_epoch}): {shown or 'none'}{best_text}"


class SitewatchCLI(LightningCLI):
    """LightningCLI with sitewatch's defaults: seed 42, config saved beside the logs."""


def main(args: list[str] | None = None) -> None:
    """Run the training CLI; user errors print one line and exit with code 2."""
    finished = False
    argv = sys.argv
    if args is not None:  # LightningCLI reads sys.argv; given both, it warns about the mix
        sys.argv = [argv[0], *args]
    try:
        SitewatchCLI(
            SegmentationTask,
            BuildingDataModule,
            seed_everything_default=42,
            save_config_kwargs={"overwrite": True},
        )
        finished = True
    except SitewatchError as error:
        print(f"sitewatch: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    finally:
        sys.argv = argv
        close_process_group(wait_for_peers=finished)


def close_process_group(wait_for_peers: bool = True) -> None:
    """Destroy the torch.distributed process group if one is open (DDP runs).

    Lightning leaves the group open after ``fit``; a gloo group still alive when the interpreter
    exits can abort the process ("terminate called without an active exception", exit -6), so
    each rank closes it, after a barrier when the run finished normally (after an error the peers
    may never arrive).
    """
    if dist.is_available() and dist.is_initialized():
        try:
            if wait_for_peers:
                dist.barrier()
        finally:
            dist.destroy_process_group()
