"""``ablate scan``: head scores of every checkpoint of a series (or one model) -> head_scores.parquet.

Registered in the ``ablate`` console script by ``experiments.cli`` as ``scan_command``::

    ablate scan --series runs/series --out runs/scan1
    ablate scan --model path/to/SmolLM2-135M-Instruct.Q4_1.gguf --out runs/smol --n-sentences 200
"""

from __future__ import annotations

import click

__all__ = ["scan_command"]


def _steps(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError as e:
        raise click.BadParameter(f"--steps takes comma-separated integers, e.g. 0,100,200 (got {text!r})") from e


@click.command("scan")
@click.option("--series", "series", type=click.Path(exists=True, file_okay=False), default=None,
              help="Series folder: step_N checkpoint folders and/or series.json.")
@click.option("--model", "model", type=click.Path(exists=True), default=None,
              help="A single model (HF folder or .gguf file) instead of a series.")
@click.option("--steps", default=None, help="Comma-separated steps to scan (default: all).")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True, help="Run folder.")
@click.option("--sentences", default=None,
              help="Sentence file (one per line), 'kjv', or 'hf:NAME[:CONFIG][:SPLIT][:COLUMN]' "
                   "(default: the shipped ablate/triplets/data/sentences.txt).")
@click.option("--n-sentences", type=int, default=None, help="Seeded subsample of the sentences.")
@click.option("--tau", type=float, default=2.2, show_default=True,
              help="Dominance threshold of the QK gate; 0 = argmax only.")
@click.option("--tau-percentile", type=float, default=None,
              help="Set tau to this percentile of the dominance ratios instead.")
@click.option("--seed", type=int, default=0, show_default=True)
def scan_command(series, model, steps, out, sentences, n_sentences, tau, tau_percentile, seed):
    """Score every head (relation index per relation and direction, fake-tail baseline, copying,
    prefix matching) at every checkpoint; resumable per checkpoint."""
    from ablate.model.errors import AblateError
    from ablate.scores.scan import ScanConfig, scan_series

    cfg = ScanConfig(sentences=sentences, n_sentences=n_sentences, tau=(tau if tau and tau > 0 else None),
                     tau_percentile=tau_percentile, seed=seed)
    try:
        path = scan_series(series, out, cfg, steps=_steps(steps), model=model)
    except AblateError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"wrote {path}")
