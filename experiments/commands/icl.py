"""``ablate icl``: measure in-context learning of a checkpoint series (or one model).

    ablate icl --series runs/series --out runs/icl            # every checkpoint
    ablate icl --series runs/series --steps 0,500,1000 --out runs/icl
    ablate icl --model path/to/model_or.gguf --out runs/icl_one

Writes ``RUN/icl_items.parquet`` and ``RUN/icl_summary.parquet`` (see :mod:`ablate.icl.series`). A
one-section spec (``[levels]``) run through :mod:`experiments.runner`: one ``levels/step=S`` cell per
checkpoint, so an interrupted run resumes where it stopped; a single model is step 0.
"""

from __future__ import annotations

import click


def _ints(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError as e:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from e


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


@click.command("icl")
@click.option("--series", "series", type=click.Path(file_okay=False), default=None,
              help="Checkpoint series folder (series.json or step_N sub-folders).")
@click.option("--model", "model", type=click.Path(), default=None,
              help="A single model (HF folder or .gguf file) instead of a series.")
@click.option("--steps", default=None, help="Comma-separated steps to evaluate (default: all).")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True, help="Run folder.")
@click.option("--tasks", default=None, help="Comma-separated task names (default: all tasks).")
@click.option("--shots", default="0,1,2,3,4,5,10,20", show_default=True, help="Comma-separated shot counts.")
@click.option("--n-items", default=36, show_default=True, type=int, help="Items per task and shot count.")
@click.option("--controls", default="clean,shuffled,nolabel", show_default=True,
              help="Prompt controls: clean, shuffled, nolabel.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--part", default="heldout", show_default=True, type=click.Choice(["heldout", "train", "all"]),
              help="Word-list part used for category words.")
@click.option("--batch-size", default=16, show_default=True, type=int, help="Prompts per forward pass.")
@click.option("--add-bos", is_flag=True, help="Prepend the BOS token to every prompt.")
@click.option("--device", default="auto", show_default=True, help="auto (a GPU when there is one), cpu, cuda or cuda:N.")
@click.option("--dtype", default="auto", show_default=True, help="auto (float32 on CPU, bfloat16 on GPU), or a dtype.")
@click.option("--remote", is_flag=True, help="Run the traces on NDIF (a hub model via --model; needs NDIF_API_KEY).")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def icl_command(series, model, steps, out, tasks, shots, n_items, controls, seed, part, batch_size,
                add_bos, device, dtype, remote, no_progress):
    """Measure FC, PD and in-prompt LR per item for every checkpoint of a series."""
    import pandas as pd

    from experiments.runner import run_spec

    if (series is None) == (model is None):
        raise click.UsageError("give exactly one of --series DIR or --model PATH")
    if model is not None and steps is not None:
        raise click.UsageError("--steps only applies to --series")
    spec = levels_spec(series=series, model=model, steps=_ints(steps), seed=seed, tasks=_names(tasks),
                       shots=_ints(shots), n_items=n_items, controls=_names(controls), part=part,
                       batch_size=batch_size, add_bos=add_bos)
    summary = run_spec(spec, out, progress=not no_progress, device=device, dtype=dtype, remote=remote)
    if summary.cells_failed:
        raise click.ClickException(f"{summary.cells_failed} checkpoint(s) failed: {summary.failed}; "
                                   f"see `ablate status {out}` and re-run to retry them")
    n_items_rows = len(pd.read_parquet(f"{out}/icl_items.parquet"))
    n_summary = len(pd.read_parquet(f"{out}/icl_summary.parquet"))
    click.echo(f"wrote {out}/icl_items.parquet ({n_items_rows} rows) and {out}/icl_summary.parquet "
               f"({n_summary} rows)")


def levels_spec(*, series=None, model=None, steps=None, seed: int = 0, name: str = "icl", tasks=None, **levels):
    """The one-section spec ``ablate icl`` runs (``levels``: keys of the spec's ``[levels]`` section)."""
    from experiments.spec import spec_from_dict

    src = {"path": str(series)} if series is not None else {"model": str(model)}
    src["steps"] = "all" if steps is None else list(steps)
    lv = {k: (list(v) if isinstance(v, tuple) else v) for k, v in levels.items() if v is not None}
    lv["tasks"] = "all" if tasks is None else list(tasks)
    return spec_from_dict({"name": name, "seed": seed, "series": src, "levels": lv}, source="ablate icl")
