"""``ablate info MODEL``: load a model and print its architecture adapter."""

from __future__ import annotations

import click


@click.command("info")
@click.argument("model")
@click.option("--revision", default=None, help="Hub revision (e.g. Pythia's step3000).")
def info_command(model, revision):
    """Load MODEL (folder, hub name or .gguf) and print its architecture adapter."""
    from ablate import load_model

    h = load_model(model, revision=revision)
    for k, v in h.describe().items():
        click.echo(f"{k:>12}: {v}")
