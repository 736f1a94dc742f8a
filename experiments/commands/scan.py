"""``ablate scan``: head scores of every checkpoint of a series (or one model) -> head_scores.parquet.

Registered in the ``ablate`` console script by ``experiments.cli`` as ``scan_command``::

    ablate scan --series runs/series --out runs/scan1
    ablate scan --model path/to/SmolLM2-135M-Instruct.Q4_1.gguf --out runs/smol --n-sentences 200
    ablate scan --series runs/series --out runs/scan2 --relations subj,obj --nulls baseline,shuffled
    ablate scan --model PATH --out runs/scan3 --kg wordnet,templates      # + KG relations (Q1)

Every ``[scores]`` setting has a flag (values are validated by the spec, with did-you-mean).

A one-section spec (``[scores]``) run through :mod:`experiments.runner`: one ``scores/step=S`` cell
per checkpoint; ``ablate icl`` and ``ablate run`` into the same folder reuse them.
"""

from __future__ import annotations

import click

__all__ = ["scan_command", "scan_spec"]


def _steps(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError as e:
        raise click.BadParameter(f"--steps takes comma-separated integers, e.g. 0,100,200 (got {text!r})") from e


def _names(text: str | None) -> list[str] | None:
    return None if not text else [t.strip() for t in text.split(",") if t.strip()]


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
@click.option("--relations", default=None, help="Comma-separated syntactic relations (default: subj,obj,mod).")
@click.option("--kg", default=None,
              help="Comma-separated KG sources scored beside them: wordnet, builtin, templates, tsv:PATH "
                   "(relations Hyponym-of, Part-of, Antonym-of, Category-of, or the TSV's own).")
@click.option("--kg-pairs", type=int, default=None, help="Pairs per KG relation (default 100).")
@click.option("--directions", default=None, help="Comma-separated: forward, reverse (default: both).")
@click.option("--nulls", default=None,
              help="Comma-separated RI nulls: baseline (fake tail), shuffled (default: baseline).")
@click.option("--ov", default=None, help="What enters the OV raise: normed (default) or raw.")
@click.option("--max-tokens", type=int, default=None, help="Drop longer sentences (default 64).")
@click.option("--n-random", type=int, default=None,
              help="Random sequences for copying / prefix matching (default 32).")
@click.option("--random-length", type=int, default=None, help="Length of those sequences (default 24).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto (a GPU when there is one), cpu, cuda or cuda:N.")
@click.option("--dtype", default="auto", show_default=True, help="auto (float32 on CPU, bfloat16 on GPU), or a dtype.")
def scan_command(series, model, steps, out, sentences, n_sentences, tau, tau_percentile, relations, kg, kg_pairs,
                 directions, nulls, ov, max_tokens, n_random, random_length, seed, device, dtype):
    """Score every head (relation index per relation and direction, fake-tail baseline, copying,
    prefix matching) at every checkpoint; resumable per checkpoint."""
    from experiments.runner import run_spec

    if (series is None) == (model is None):
        raise click.UsageError("pass exactly one of a series folder (--series) or a single model (--model)")
    spec = scan_spec(series=series, model=model, steps=_steps(steps), seed=seed, sentences=sentences,
                     n_sentences=n_sentences, tau=tau or 0.0, tau_percentile=tau_percentile,
                     relations=_names(relations), kg=_names(kg), kg_pairs=kg_pairs, directions=_names(directions), nulls=_names(nulls), ov=ov,
                     max_tokens=max_tokens, n_random=n_random, random_length=random_length)
    summary = run_spec(spec, out, device=device, dtype=dtype)
    if summary.cells_failed:
        raise click.ClickException(f"{summary.cells_failed} checkpoint(s) failed: {summary.failed}; "
                                   f"see `ablate status {out}` and re-run to retry them")
    click.echo(f"wrote {out}/head_scores.parquet")


def scan_spec(*, series=None, model=None, steps=None, seed: int = 0, name: str = "scan", **scores):
    """The one-section spec ``ablate scan`` runs (``scores``: keys of the spec's ``[scores]`` section)."""
    from experiments.spec import spec_from_dict

    src = {"path": str(series)} if series is not None else {"model": str(model)}
    src["steps"] = "all" if steps is None else list(steps)
    sc = {k: (list(v) if isinstance(v, tuple) else v) for k, v in scores.items() if v is not None}
    return spec_from_dict({"name": name, "seed": seed, "series": src, "scores": sc}, source="ablate scan")
