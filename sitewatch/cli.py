"""The ``sitewatch`` command line: one command per pipeline stage.

Only this module knows about arguments, progress bars and exit codes. A user mistake
(:class:`~sitewatch.errors.SitewatchError`) prints one line and exits 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import click
import typer

from sitewatch.errors import SitewatchError

app = typer.Typer(
    name="sitewatch",
    help="Building segmentation, footprints and change detection for sites seen from above.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def train(ctx: typer.Context) -> None:
    """Train with LightningCLI (same as ``python train.py``): ``sitewatch train fit --config FILE``."""
    from sitewatch.training import main as train_main

    train_main(list(ctx.args))


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Lightning checkpoint (.ckpt) from training.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write (.safetensors).")],
) -> None:
    """Export a training checkpoint to a compact inference file (safetensors + JSON metadata)."""
    from sitewatch.checkpoint import export_model

    if out.suffix != ".safetensors":
        raise SitewatchError(f"{out}: the exported model file must end in .safetensors")
    sha = export_model(checkpoint, out)
    typer.echo(f"wrote {out} (sha256 {sha})")


@app.command()
def info(model: Annotated[Path, typer.Argument(help="Model file (.safetensors or .ckpt).")]) -> None:
    """Print a model file's metadata as JSON."""
    from sitewatch.checkpoint import load_model

    loaded = load_model(model)
    typer.echo(json.dumps({"path": str(model), "sha256": loaded.sha256, **loaded.metadata},
                          indent=2))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point with one-line errors and meaningful exit codes."""
    try:
        app(args=argv, standalone_mode=False)
    except SitewatchError as error:
        print(f"sitewatch: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        print("sitewatch: interrupted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("sitewatch: interrupted", file=sys.stderr)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Exit as error:
        sys.exit(error.exit_code)


if __name__ == "__main__":
    main()
