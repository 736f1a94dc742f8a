"""``ablate info MODEL``: load a model and print its architecture adapter."""

from __future__ import annotations

import click


@click.command("info")
@click.argument("model")
@click.option("--revision", default=None, help="Hub revision (e.g. Pythia's step3000).")
def info_command(model, revision):
    """Load MODEL (folder, hub name or .gguf) and print its architecture adapter."""
    from ablate import load_model
    from ablate.model.errors import AblateError

    try:
        h = load_model(model, revision=revision)
    except AblateError:
        raise
    except Exception as e:  # transformers' own errors on a file that is not a model
        raise click.ClickException(
            f"cannot load {model}: {type(e).__name__}: {e}; give a Hugging Face model folder, a hub name "
            "or a .gguf file of a supported architecture (see `ablate info --help`)") from None
    for k, v in h.describe().items():
        click.echo(f"{k:>12}: {v}")
