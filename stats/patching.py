"""Restoration by activation patching: do the SIHs carry the label mapping that shuffling destroys?

Input: the tidy ``patching`` table of a run (:func:`experiments.tidy.patching_table`): one row per
(step, condition, control_index, head_set, task, shots, item) with ``clean_<m>``, ``corrupted_<m>``
and ``patched_<m>`` for a metric ``m`` (default ``gold_logprob``: log P(true label of the query)).
*Corrupted* is the shuffled-label prompt (format and label set kept, mapping broken); *patched* is
the corrupted prompt with the set's heads given their clean-prompt outputs at the query token.

Per unit (step, tested set, task), items averaged within task first (as in :mod:`stats.drops`)::

    gap_t         = mean_i (clean_i - corrupted_i)       how much the mapping mattered
    restoration_t = mean_i (patched_i - corrupted_i) / gap_t

``restoration = 1``: patching the set alone brings the clean behaviour back; ``0``: no effect.
A task whose ``gap_t`` is below ``min_gap`` (default 0.1 nats of log-probability) is *excluded*
for that (step, set): the model did not use the mapping, so there is nothing to restore (reported
with the reason, never silently dropped).

Specific restoration of a set = its restoration - the mean restoration of the R random sets
**matched to its size** (same number of heads) on the same task (same step); ``R`` counts only the
matched random sets that have a restoration for that task. Tests per (step, set), over tasks:

* ``p_signflip``: one-sided paired sign-flip test that the mean specific restoration is > 0
  (:func:`stats.contrasts.sign_flip_test`; exact enumeration for small task counts);
* ``p_random``: empirical p of the set's mean restoration against the R random sets' means
  (:func:`stats.contrasts.empirical_p`; (1 + #{random >= set}) / (R + 1));
* ``p_holm``: ``p_signflip`` Holm-adjusted across the run's steps, per set;
* ``ci_low`` / ``ci_high``: 95% percentile bootstrap of the mean specific restoration over tasks,
  then items within each drawn task (the same items for the set and its random sets, since all
  are measured on the same prompts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .contrasts import empirical_p, sign_flip_test
from .corrections import holm
from .effects import percentile_ci

__all__ = ["PatchingResult", "restoration_units", "analyze_patching", "DEFAULT_MIN_GAP"]

#: smallest clean - corrupted gap (per metric) for a task to count as "the mapping mattered"
DEFAULT_MIN_GAP: dict[str, float] = {"gold_logprob": 0.1, "pd_cont": 0.05, "pd": 0.05, "fc": 0.05}

UNIT = ["step", "tokens_seen", "condition", "control_index", "head_set", "task"]


@dataclass
class PatchingResult:
    """``table``: one row per (step, tested set); ``units``: one row per (step, set, task), random
    sets included, with ``gap``, ``gain``, ``restoration`` and (tested sets) ``specific``."""

    table: pd.DataFrame
    units: pd.DataFrame
    metric: str
    min_gap: float

    def summary(self) -> str:
        if self.table.empty:
            return "Patching: no tested set had a task where shuffling the labels hurt (nothing to restore)."
        from .tables import fmt_ci, fmt_num, p_phrase

        parts = []
        for r in self.table.itertuples():
            if not np.isfinite(r.restoration):
                continue
            parts.append(f"the {r.condition} heads at step {r.step} restored {fmt_num(r.restoration)} of the "
                         f"{self.metric} gap (matched random sets {fmt_num(r.random_restoration)}; specific "
                         f"{fmt_ci(r.specific, r.ci_low, r.ci_high)}, sign-flip {p_phrase(r.p_signflip)}, "
                         f"{r.n_tasks} tasks, R = {r.R})")
        if not parts:
            return "Patching: every task was excluded (clean - corrupted gap below the threshold)."
        return "Patching clean head outputs into shuffled-label prompts: " + "; ".join(parts) + "."


def restoration_units(patching: pd.DataFrame, *, metric: str = "gold_logprob",
                      min_gap: float | None = None) -> pd.DataFrame:
    """Per (step, set, task): ``gap``, ``gain``, ``restoration`` (NaN and ``excluded`` when the
    gap is below ``min_gap``), and ``specific`` for non-random sets.

    Raises:
        ValueError: the table lacks the metric's clean / corrupted / patched columns.
    """
    need = [f"{w}_{metric}" for w in ("clean", "corrupted", "patched")]
    missing = [c for c in need + ["step", "condition", "task"] if c not in patching.columns]
    if missing:
        raise ValueError(f"stats.patching: the patching table lacks {missing}; it comes from a run with "
                         "operators.patch = true (RUN/patching.parquet), and metric must be one of its "
                         "clean_/corrupted_/patched_ columns")
    if min_gap is None:
        min_gap = DEFAULT_MIN_GAP.get(metric, 0.05)
    df = patching.copy()
    for c in ("tokens_seen", "head_set"):
        if c not in df:
            df[c] = np.nan if c == "tokens_seen" else ""
    if "control_index" not in df:
        df["control_index"] = -1
    df["k"] = df["head_set"].fillna("").astype(str).map(lambda h: len([x for x in h.split(",") if x.strip()]))
    df["_gap"] = df[need[0]] - df[need[1]]
    df["_gain"] = df[need[2]] - df[need[1]]
    u = (df.groupby(UNIT + ["k"], dropna=False, sort=False)
           .agg(n_items=("_gap", "size"), gap=("_gap", "mean"), gain=("_gain", "mean")).reset_index())
    ok = u["gap"] >= min_gap
    u["restoration"] = np.where(ok, u["gain"] / u["gap"].where(ok, 1.0), np.nan)
    u["excluded"] = np.where(ok, "", f"clean - corrupted gap < {min_gap:g}: the mapping was not used")
    rr = u[(u["condition"] == "random") & np.isfinite(u["restoration"])]
    rnd = rr.groupby(["step", "task", "k"]).agg(random_restoration=("restoration", "mean"),
                                                R=("control_index", "nunique"))
    u = u.merge(rnd.reset_index(), on=["step", "task", "k"], how="left")
    u["R"] = u["R"].fillna(0).astype(int)
    u["specific"] = np.where(u["condition"] == "random", np.nan, u["restoration"] - u["random_restoration"])
    return u


def _boot_arrays(patching: pd.DataFrame, metric: str, step, k, hs, tasks) -> list[tuple]:
    """Per task: (gap (m,), tested gain (m,), random gains (R, m)) on the task's shared items."""
    c, co, pa = (f"{w}_{metric}" for w in ("clean", "corrupted", "patched"))
    d = patching[(patching["step"] == step)]
    out = []
    for t in tasks:
        x = d[d["task"] == t]
        tg = x[(x["condition"] != "random") & (x["head_set"].astype(str) == hs)].sort_values(["shots", "item"])
        keys = list(zip(tg["shots"], tg["item"]))
        gap = (tg[c] - tg[co]).to_numpy(float)
        gain = (tg[pa] - tg[co]).to_numpy(float)
        rg = []
        for _, r in x[x["condition"] == "random"].groupby("control_index"):
            if len([h for h in str(r["head_set"].iloc[0]).split(",") if h.strip()]) != k:
                continue
            r = r.set_index(["shots", "item"]).reindex(keys)
            v = (r[pa] - r[co]).to_numpy(float)
            if np.isfinite(v).all():
                rg.append(v)
        out.append((gap, gain, np.array(rg).reshape(len(rg), len(keys))))
    return out


def _task_item_bootstrap(arrays: list[tuple], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Mean specific restoration over tasks, resampling tasks then items (the item draw is shared by
    the set and its random sets; one item draw per (replicate, task))."""
    T = len(arrays)
    spec = np.full((n_boot, T), np.nan)
    for t, (gap, gain, rg) in enumerate(arrays):
        ii = rng.integers(0, gap.size, size=(n_boot, gap.size))
        g = gap[ii].mean(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            rest = gain[ii].mean(axis=1) / g
            rr = (rg[:, ii].mean(axis=2) / g).mean(axis=0) if rg.shape[0] else np.full(n_boot, np.nan)
        spec[:, t] = np.where(g > 0, rest - rr, np.nan)
    ti = rng.integers(0, T, size=(n_boot, T))
    drawn = spec[np.arange(n_boot)[:, None], ti]
    ok = np.isfinite(drawn)
    cnt = ok.sum(axis=1)
    return np.where(cnt > 0, np.where(ok, drawn, 0).sum(axis=1) / np.maximum(cnt, 1), np.nan)


def analyze_patching(patching: pd.DataFrame, *, metric: str = "gold_logprob", min_gap: float | None = None,
                     n_boot: int = 2000, seed: int = 0) -> PatchingResult:
    """Restoration per (step, tested set) with its tests (module docstring)."""
    u = restoration_units(patching, metric=metric, min_gap=min_gap)
    gap = DEFAULT_MIN_GAP.get(metric, 0.05) if min_gap is None else min_gap
    rng = np.random.default_rng(seed)
    rows = []
    tested = u[u["condition"] != "random"]
    for (step, cond, hs), g in tested.groupby(["step", "condition", "head_set"], sort=False, dropna=False):
        g = g[np.isfinite(g["restoration"])]
        k = int(g["k"].iloc[0]) if len(g) else 0
        rand = u[(u["step"] == step) & (u["condition"] == "random") & (u["k"] == k) & u["task"].isin(g["task"])
                 & np.isfinite(u["restoration"])]
        complete = rand.groupby("control_index")["task"].nunique() == len(g)
        rand = rand[rand["control_index"].isin(complete.index[complete])]
        rand_means = rand.groupby("control_index")["restoration"].mean().to_numpy()
        spec = g["specific"].to_numpy(dtype=float)
        spec = spec[np.isfinite(spec)]
        row = {"step": step, "tokens_seen": g["tokens_seen"].iloc[0] if len(g) else np.nan, "condition": cond,
               "head_set": hs, "metric": metric, "n_tasks": len(g), "R": int(rand_means.size),
               "gap": g["gap"].mean() if len(g) else np.nan,
               "restoration": g["restoration"].mean() if len(g) else np.nan,
               "random_restoration": float(np.mean(rand_means)) if rand_means.size else np.nan,
               "specific": spec.mean() if spec.size else np.nan,
               "ci_low": np.nan, "ci_high": np.nan, "p_signflip": np.nan, "p_random": np.nan, "note": ""}
        n_excl = int((tested[(tested["step"] == step) & (tested["condition"] == cond)]["excluded"] != "").sum())
        notes = [f"{n_excl} task(s) excluded (gap < {gap:g})"] if n_excl else []
        n_unmatched = int((g["R"] == 0).sum())
        if n_unmatched:
            notes.append(f"{n_unmatched} task(s) have no size-matched random set with data (k = {k})")
        if spec.size >= 2:
            row["p_signflip"] = float(sign_flip_test(spec, seed=seed).pvalue)
            if n_boot and {"shots", "item"} <= set(patching.columns):
                arrays = _boot_arrays(patching, metric, step, k, str(hs), list(g.loc[np.isfinite(g["specific"]), "task"]))
                row["ci_low"], row["ci_high"] = percentile_ci(_task_item_bootstrap(arrays, n_boot, rng))
        elif len(g):
            notes.append("fewer than 2 tasks: no test")
        if len(g) and row["R"] > 0:
            row["p_random"] = empirical_p(row["restoration"], rand_means)
        elif len(g):
            notes.append("no size-matched random sets with data on every task")
        if len(g) and abs(row["restoration"]) < 0.05 and row["specific"] > 0:
            # an honest flag: a positive specific value can come from random sets that made it worse
            notes.append("the set itself restores ~nothing (|restoration| < 0.05); the positive specific "
                         "value comes from random sets whose patch lowered the score")
        row["note"] = "; ".join(notes)
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        table["p_holm"] = np.nan
        for _, idx in table.groupby("condition").groups.items():  # Holm across steps, per tested set
            table.loc[idx, "p_holm"] = holm(table.loc[idx, "p_signflip"].to_numpy())
        cols = ["step", "tokens_seen", "condition", "head_set", "metric", "n_tasks", "R", "gap", "restoration",
                "random_restoration", "specific", "ci_low", "ci_high", "p_signflip", "p_holm", "p_random", "note"]
        table = table[cols]
    return PatchingResult(table=table, units=u, metric=metric, min_gap=gap)
