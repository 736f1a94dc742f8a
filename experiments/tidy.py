"""From raw cell rows to the tidy ``results`` table that :mod:`stats` reads.

Raw rows (RUN/raw_icl.parquet, RUN/raw_lr.parquet) keep every control prompt and every window.
``results`` has one row per (step, condition, control_index, operator, task, shots, item) with:

=================  ===========================================================================
``condition``      ``clean`` / ``target`` / ``induction`` / ``random`` (the head set's role)
``lr``             loss reduction, **higher = more in-context ability** (one sign everywhere):
                   on ICL rows the item's in-prompt LR ``lr_prompt`` (answer loss of the first
                   demonstrations minus that of the last ones, :mod:`ablate.icl.metrics`; NaN with
                   fewer than 2 demonstrations), so LR, FC and PD of an item come from the same
                   prompt under the same intervention; on the pseudo-task ``lr_docs`` the
                   document-level LR ``loss_early - loss_late`` (Olsson-style windows on held-out
                   text, ``ablate.icl.loss_reduction``): a *secondary* measure that
                   :mod:`stats` reports but never pairs with a task
``fc``, ``pd``     greedy format compliance / pattern discovery on the real-label prompt (0/1)
``fc_floor``       FC of the same item's *no-label* prompt (format not shown)
``pd_floor``       chance within the label set (1 / number of classes)
``pd_shuffled``    PD on the shuffled-label prompt (reported beside the floor; a mapping-free control)
``family``         the task's family (``classification`` / ``relation`` / ``pattern``), for curves
``fc_cont``, ``pd_cont``, ``gold_logprob``, ``lr_prompt``   continuous companions of the above
``loss_early``, ``loss_late``   the raw window losses of ``lr_docs`` rows
=================  ===========================================================================

Clean rows are written once per checkpoint, with ``operator = "none"``. ``item`` is the query
index: :func:`ablate.icl.tasks.make_items` reuses the same query at every shot count, so
``(task, item)`` across shots is one resampling unit for :mod:`stats`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KEYS = ["step", "tokens_seen", "condition", "head_set", "operator", "control_index", "task", "shots", "item"]


def _family(task: str) -> str:
    from ablate.icl.tasks import TASKS

    t = TASKS.get(task)
    return t.kind if t is not None else str(task)


def _clean_once(df: pd.DataFrame, primary: str) -> pd.DataFrame:
    clean = df[df["role"] == "clean"]
    clean = clean[clean["operator"].isin((primary, "none"))].assign(operator="none", head_set="")  # "none": one clean cell per step (runner)
    return pd.concat([clean, df[df["role"] != "clean"]], ignore_index=True)


def results_table(raw_icl: pd.DataFrame, raw_lr: pd.DataFrame, primary: str) -> pd.DataFrame:
    """Build the stats input table (see module docstring) from the raw cell rows."""
    parts = []
    if len(raw_icl):
        icl = _clean_once(raw_icl, primary).rename(columns={"role": "condition"})
        idx = ["step", "tokens_seen", "condition", "head_set", "operator", "control_index", "task", "shots", "item"]
        real = icl[icl["control"] == "clean"].set_index(idx)
        out = real[["fc", "pd", "fc_cont", "pd_cont", "gold_logprob", "lr_prompt", "chance"]].copy()
        out["lr"] = out["lr_prompt"]
        nolab = icl[icl["control"] == "nolabel"].set_index(idx)["fc"]
        shuf = icl[icl["control"] == "shuffled"].set_index(idx)["pd"]
        out["fc_floor"] = nolab.reindex(out.index) if len(nolab) else np.nan
        out["pd_floor"] = out.pop("chance")
        out["pd_shuffled"] = shuf.reindex(out.index) if len(shuf) else np.nan
        out = out.reset_index()
        out["family"] = out["task"].map({t: _family(t) for t in out["task"].unique()})
        parts.append(out)
    if len(raw_lr):
        lr = _clean_once(raw_lr, primary).rename(columns={"role": "condition", "doc": "item"})
        # lr_late = loss_early - loss_late: higher = more ability, the sign of lr_prompt
        lr = lr.assign(shots=0, task="lr_docs", family="lr_docs", lr=lr["lr_late"], fc=np.nan, pd=np.nan,
                       fc_floor=np.nan, pd_floor=np.nan)
        cols = KEYS + ["family", "lr", "fc", "pd", "fc_floor", "pd_floor", "loss_early", "loss_late", "lr_mid", "olsson"]
        parts.append(lr[[c for c in cols if c in lr.columns]])
    if not parts:
        return pd.DataFrame(columns=KEYS + ["lr", "fc", "pd", "fc_floor", "pd_floor"])
    df = pd.concat(parts, ignore_index=True)
    order = {"clean": 0, "target": 1, "induction": 2, "random": 3}
    df["_o"] = df["condition"].map(order).fillna(9)
    df = df.sort_values(["step", "_o", "operator", "control_index", "task", "shots", "item"], kind="stable")
    return df.drop(columns="_o").reset_index(drop=True)


#: metrics carried into the patching table (clean / corrupted / patched copies of each)
PATCH_METRICS = ("gold_logprob", "pd_cont", "pd", "fc")


def patching_table(raw_patch: pd.DataFrame) -> pd.DataFrame:
    """The tidy ``patching`` table: one row per (step, patched set, task, shots, item).

    From the raw rows of the ``patch/`` cells: ``clean_<m>`` is metric ``m`` on the clean prompt,
    ``corrupted_<m>`` on the shuffled-label prompt, ``patched_<m>`` on the shuffled-label prompt with
    the set's heads patched from the clean prompt (at the query token), for ``m`` in
    :data:`PATCH_METRICS`. The gold label is the true label of the query in all three, so
    ``(patched - corrupted) / (clean - corrupted)`` is the fraction of the clean behaviour the
    set restores (:mod:`stats.patching`).
    """
    keys = ["step", "tokens_seen", "task", "shots", "item"]
    cols = ["step", "tokens_seen", "condition", "head_set", "control_index", "task", "shots", "item"]
    if not len(raw_patch):
        return pd.DataFrame(columns=cols + [f"{w}_{m}" for w in ("clean", "corrupted", "patched")
                                            for m in PATCH_METRICS])
    raw = raw_patch.rename(columns={"role": "condition"})
    clean = raw[(raw["control"] == "clean") & (raw["condition"] == "clean")]
    corr = raw[(raw["control"] == "shuffled") & (raw["condition"] == "clean")]
    pat = raw[(raw["control"] == "shuffled") & (raw["condition"] != "clean")]
    m = list(PATCH_METRICS)
    out = pat[cols + m].rename(columns={c: f"patched_{c}" for c in m})
    for name, part in (("clean", clean), ("corrupted", corr)):
        out = out.merge(part[keys + m].rename(columns={c: f"{name}_{c}" for c in m}), on=keys, how="left",
                        validate="many_to_one")
    order = {"target": 0, "induction": 1, "random": 2}
    out["_o"] = out["condition"].map(order).fillna(9)
    out = out.sort_values(["step", "_o", "control_index", "task", "shots", "item"], kind="stable")
    front = cols + [f"{w}_{c}" for c in m for w in ("clean", "corrupted", "patched")]
    return out[front].reset_index(drop=True)
