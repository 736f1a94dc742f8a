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

Across checkpoints (resumable, one ``levels/step=S`` cell per checkpoint, a single model is step 0):
``ablate icl --series DIR [--steps 0,1000] --out RUN`` (:mod:`experiments.commands.icl`, a
``[levels]`` spec run by :mod:`experiments.runner`).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from ablate.model.errors import AblateError
from ablate.icl.metrics import METRIC_COLUMNS, evaluate_items
from ablate.icl.tasks import CONTROLS, DEFAULT_SHOTS, TASKS, IclItem, get_task, make_items

__all__ = ["IclRunError", "build_items", "evaluate_model", "summarize", "min_shots_to_fc", "DEFAULT_N_ITEMS"]

#: Items per (task, shots): a multiple of 2, 3, 4 and 9, so golds are exactly class-balanced.
DEFAULT_N_ITEMS = 36


class IclRunError(AblateError):
    """The ICL items cannot be built (e.g. no tasks selected)."""


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
