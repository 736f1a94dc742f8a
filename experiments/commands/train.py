"""The ``train`` command (registered under the ``ablate`` console script by ``experiments.cli``).

Examples::

    ablate train --preset tiny --out runs/tiny
    ablate train --preset default --threads 1 --out runs/default_series   # the shipped series: 908 s on 1 thread; bitwise identical on the machine that made it
    ablate train --preset default --out runs/kjv --corpus my_texts/ --steps 5000 --seed 1
    ablate train --preset tiny --family gpt2 --out runs/tiny_gpt2      # same shape as GPT-2
    ablate train --preset tiny --family gpt_neox --out runs/tiny_neox  # ... or as GPT-NeoX/Pythia

Re-running the same command after an interruption resumes from the newest checkpoint.
The module also runs standalone: ``python -m experiments.commands.train --preset tiny --out DIR``.
"""

from __future__ import annotations

import click

from checkpoints.presets import FAMILIES

__all__ = ["train_command"]


@click.command("train")
@click.option("--preset", default="default", show_default=True,
              help="Training preset: tiny (seconds, tests), default (the series the package ships; ~15 min on 1 thread), "
                   "paper (20 layers x 16 heads x d 2048; GPU).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder; re-use it to resume an interrupted run.")
@click.option("--family", type=click.Choice(list(FAMILIES)), default="llama", show_default=True,
              help="Architecture to build with the preset's shape: llama, gpt2 (learned positions) "
                   "or gpt_neox (Pythia-style).")
@click.option("--corpus", default=None,
              help="Natural-text source: 'default' (public-domain English shipped with the install), "
                   "'hf:NAME[:CONFIG]' (a Hugging Face dataset, streamed; needs hub access), or "
                   "comma-separated local .txt files/folders.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Override the preset's number of optimiser steps (>= 1).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Override the preset's seed (init and data).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads (default: min(2, CPU count)). Use 1 when other processes share the CPU.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--sleep-per-step", type=float, default=0.0, hidden=True,
              help="Testing aid: sleep per step so a kill can land mid-run.")
def train_command(preset, out_dir, family, corpus, steps, seed, threads, no_progress, sleep_per_step):
    """Train a small Llama, GPT-2 or GPT-NeoX LM from scratch and save a checkpoint series (resumable)."""
    from checkpoints.corpus import CorpusError
    from checkpoints.presets import get_preset
    from checkpoints.trainer import TrainerError, train

    try:
        cfg = get_preset(preset, steps=steps, seed=seed, family=family)
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="--preset") from exc
    except ValueError as exc:  # the preset's shape does not fit the family (e.g. n_kv_heads)
        raise click.BadParameter(str(exc), param_hint="--family") from exc
    try:
        series = train(cfg, out_dir, corpus=corpus, threads=threads, progress=not no_progress,
                       sleep_per_step=sleep_per_step)
    except (TrainerError, CorpusError) as exc:
        raise click.ClickException(str(exc)) from exc
    last = series[-1] if len(series) else None
    click.echo(f"{len(series)} checkpoints in {out_dir} (series.json); "
               f"last step {last.step if last else '-'}, eval loss "
               f"{last.extra.get('eval_loss') if last else '-'}")


if __name__ == "__main__":
    train_command()
