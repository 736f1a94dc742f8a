"""Evaluate in-context learning of a model or a checkpoint series into tidy tables.

Tables
------
``icl_items`` (one row per step x task x shots x item x control x condition)::

    step, tokens_seen, task, kind, shots, item, control, condition, condition_index, n_classes,
    chance, gold, output, greedy_first, n_tokens, fc, pd, fc_cont, pd_cont, gold_logprob,
    rank_in_labels, demo_loss_first, demo_loss_last, lr_prompt

``icl_summary`` (one row per step x task x shots x control x condition): ``n`` and the means of the
metrics, the standard errors ``fc_sem`` / ``pd_sem``, ``chance``, and ``min_shots_fc80``: the
smallest shot count (<= 20) whose mean FC reaches 0.8 for that (step, task, control, condition),
NaN when none does.

Examples::

    from ablate.icl.series import evaluate_model, summarize
    items = evaluate_model(handle, tasks=["binary_fruit_month"], n_items=36)
    summary = summarize(items)

    from ablate.icl.series import evaluate_series          # resumable, one part file per checkpoint
    items, summary = evaluate_series("runs/series", "runs/icl_run", steps=[0, 1000])

Command line: ``ablate icl --series DIR [--steps 0,1000] --out RUN`` (see :mod:`experiments.commands.icl`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from ablate.model.errors import AblateError
from experiments.run_files import atomic_write_parquet, check_run_config, local_series
from ablate.icl.metrics import METRIC_COLUMNS, evaluate_items
from ablate.icl.tasks import CONTROLS, DEFAULT_SHOTS, TASKS, IclItem, get_task, make_items

__all__ = ["IclRunError", "build_items", "evaluate_model", "summarize", "min_shots_to_fc",
           "discover_series", "evaluate_series", "DEFAULT_N_ITEMS"]

#: Items per (task, shots): a multiple of 2, 3, 4 and 9, so golds are exactly class-balanced.
DEFAULT_N_ITEMS = 36


class IclRunError(AblateError):
    """A series folder or run folder is unusable (missing, or a resume with other settings)."""


def build_items(tasks: Iterable[str] | None = None, *, shots: Iterable[int] = DEFAULT_SHOTS,
                n_items: int = DEFAULT_N_ITEMS, seed: int = 0, controls: Iterable[str] = CONTROLS,
                part: str = "heldout") -> list[IclItem]:
    """Items of several tasks (all registered tasks by default); see :func:`~ablate.icl.tasks.make_items`."""
    names = list(TASKS) if tasks is None else [get_task(t).name for t in tasks]
    if not names:
        raise IclRunError("no tasks selected")
    out: list[IclItem] = []
    for t in names:
        out += make_items(t, shots=list(shots), n_items=n_items, seed=seed, controls=list(controls), part=part)
    return out


def evaluate_model(handle: Any, *, tasks: Iterable[str] | None = None, shots: Iterable[int] = DEFAULT_SHOTS,
                   n_items: int = DEFAULT_N_ITEMS, controls: Iterable[str] = CONTROLS, seed: int = 0,
                   part: str = "heldout", conditions: Sequence[Any] = (None,), reference: dict | None = None,
                   batch_size: int = 16, add_bos: bool = False, step: int | None = None,
                   tokens_seen: int | None = None, progress: bool = True):
    """The ``icl_items`` table of one model (optionally under several intervention conditions).

    Args:
        handle: a :class:`~ablate.model.handle.ModelHandle`.
        tasks: task names (default: all of :data:`~ablate.icl.tasks.TASKS`).
        shots, n_items, controls, seed, part: see :func:`~ablate.icl.tasks.make_items`.
        conditions, reference, batch_size, add_bos: see :func:`~ablate.icl.metrics.evaluate_items`.
        step, tokens_seen: written into the table (``None`` for a lone model).
        progress: show a progress bar.
    """
    items = build_items(tasks, shots=shots, n_items=n_items, seed=seed, controls=controls, part=part)
    df = evaluate_items(handle, items, conditions=conditions, reference=reference, batch_size=batch_size,
                        add_bos=add_bos, progress=progress, desc=f"icl step {step}" if step is not None else "icl")
    df.insert(0, "tokens_seen", tokens_seen)
    df.insert(0, "step", step)
    df.insert(3, "kind", df["task"].map(lambda t: TASKS[t].kind if t in TASKS else ""))
    df["step"] = df["step"].astype("Int64")
    df["tokens_seen"] = df["tokens_seen"].astype("Int64")
    return df


_GROUP = ["step", "tokens_seen", "task", "kind", "shots", "control", "condition"]


def min_shots_to_fc(items, threshold: float = 0.8, cap: int = 20):
    """Smallest shot count (<= ``cap``) whose mean FC reaches ``threshold``, per
    (step, tokens_seen, task, kind, control, condition); NaN when none does."""

    g = [c for c in _GROUP if c != "shots"]
    fc = items.groupby(_GROUP, dropna=False)["fc"].mean().reset_index()
    fc = fc[fc["shots"] <= cap]
    ok = fc[fc["fc"] >= threshold]
    res = ok.groupby(g, dropna=False)["shots"].min().rename("min_shots_fc80")
    keys = fc[g].drop_duplicates()
    out = keys.merge(res.reset_index(), on=g, how="left")
    out["min_shots_fc80"] = out["min_shots_fc80"].astype(float)
    return out


def summarize(items, *, fc_threshold: float = 0.8, cap: int = 20):
    """The ``icl_summary`` table: per (step, task, shots, control, condition) means and SEMs."""
    import numpy as np

    gb = items.groupby(_GROUP, dropna=False)
    cols = [c for c in METRIC_COLUMNS if c in items.columns]
    s = gb[cols].mean()
    s.insert(0, "n", gb.size())
    s["chance"] = gb["chance"].mean()
    for m in ("fc", "pd"):
        s[f"{m}_sem"] = gb[m].std(ddof=1) / np.sqrt(gb[m].count())
    s = s.reset_index()
    return s.merge(min_shots_to_fc(items, fc_threshold, cap), on=[c for c in _GROUP if c != "shots"], how="left")


# --------------------------------------------------------------------------------------------
# series

def discover_series(folder: str | os.PathLike) -> list[dict]:
    """``[{"step", "tokens_seen", "path"}]`` of a series folder, sorted by step
    (see :class:`checkpoints.series.CheckpointSeries`).

    Raises:
        IclRunError: the folder does not exist or holds no checkpoints.
    """
    return [{"step": st, "tokens_seen": tok, "path": str(path)} for st, tok, path in local_series(folder, IclRunError)]


def _check_config(out: Path, config: dict) -> None:
    check_run_config(out / "icl_config.json", config, "an ICL run", IclRunError)


def evaluate_series(series: str | os.PathLike | None, out: str | os.PathLike, *,
                    steps: Iterable[int] | None = None, model: str | os.PathLike | None = None,
                    tasks: Iterable[str] | None = None, shots: Iterable[int] = DEFAULT_SHOTS,
                    n_items: int = DEFAULT_N_ITEMS, controls: Iterable[str] = CONTROLS, seed: int = 0,
                    part: str = "heldout", batch_size: int = 16, add_bos: bool = False,
                    progress: bool = True, loader: Any = None):
    """Evaluate every checkpoint (or one ``model``) and write ``icl_items`` / ``icl_summary``.

    Resumable: each checkpoint's rows go to ``out/icl_parts/step_<N>.parquet`` (temp file +
    ``os.replace``), finished checkpoints are skipped, and the two tables are rebuilt from the
    parts at the end. ``out/icl_config.json`` records the settings; resuming with other settings
    raises :class:`IclRunError`.

    Args:
        series: a series folder (see :func:`discover_series`), or ``None`` with ``model``.
        out: the run folder.
        steps: evaluate only these steps.
        model: a single model (folder or ``.gguf``) instead of a series.
        loader: ``f(path) -> ModelHandle`` (default :func:`ablate.model.handle.load_model`).
        Other arguments: see :func:`evaluate_model`.

    Returns:
        ``(icl_items, icl_summary)`` data frames.
    """
    import pandas as pd

    if (series is None) == (model is None):
        raise IclRunError("give exactly one of a series folder or a single model")
    if loader is None:
        from ablate.model.handle import load_model as loader
    out = Path(out)
    parts = out / "icl_parts"
    parts.mkdir(parents=True, exist_ok=True)
    tasks = list(TASKS) if tasks is None else [get_task(t).name for t in tasks]
    config = {"tasks": tasks, "shots": [int(s) for s in shots], "n_items": int(n_items),
              "controls": list(controls), "seed": int(seed), "part": part, "add_bos": bool(add_bos)}
    _check_config(out, config)
    if model is not None:
        entries = [{"step": None, "tokens_seen": None, "path": str(model), "name": "model"}]
    else:
        entries = discover_series(series)
        if steps is not None:
            want = {int(s) for s in steps}
            missing = sorted(want - {e["step"] for e in entries})
            if missing:
                raise IclRunError(f"steps {missing} are not in the series {series} "
                                  f"(available: {[e['step'] for e in entries]})")
            entries = [e for e in entries if e["step"] in want]
        for e in entries:
            e["name"] = f"step_{e['step']}"
    todo = [e for e in entries if not (parts / f"{e['name']}.parquet").exists()]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(entries), initial=len(entries) - len(todo), desc="checkpoints", unit="ckpt")
    for e in todo:
        handle = loader(e["path"])
        df = evaluate_model(handle, step=e["step"], tokens_seen=e["tokens_seen"], batch_size=batch_size,
                            add_bos=add_bos, progress=progress, **config_kwargs(config))
        atomic_write_parquet(df, parts / f"{e['name']}.parquet")
        del handle
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    frames = [pd.read_parquet(parts / f"{e['name']}.parquet") for e in entries]
    items = pd.concat(frames, ignore_index=True)
    items["step"] = items["step"].astype("Int64")
    items["tokens_seen"] = items["tokens_seen"].astype("Int64")
    summary = summarize(items)
    atomic_write_parquet(items, out / "icl_items.parquet")
    atomic_write_parquet(summary, out / "icl_summary.parquet")
    return items, summary


def config_kwargs(config: dict) -> dict:
    """The :func:`evaluate_model` keyword arguments stored in a run's ``icl_config.json``."""
    return {k: config[k] for k in ("tasks", "shots", "n_items", "controls", "seed", "part")}
