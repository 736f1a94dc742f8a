"""Normalised and specific drops: from the tidy ablation results table to per-task units.

Input contract (produced by the experiments runner)
---------------------------------------------------
A tidy :class:`pandas.DataFrame` ``results`` with one row per
(step, condition, control_index, operator, task, shots, item) and the columns

========================  =====================================================================
``step``                  int, checkpoint step
``tokens_seen``           int, tokens seen at that step (used for emergence, log10 tokens)
``condition``             str: ``"clean"`` (no intervention), ``"target"`` (selected heads),
                          ``"random"`` (matched random head set), ``"induction"`` or any other
                          name (another tested head set)
``head_set``              str like ``"L0H1,L1H3"`` (empty / ``""`` for clean rows)
``operator``              str: ``"zero"``, ``"mean"``, ``"resample"``, ``"patch"``; ``"none"`` for clean
``control_index``         int, index of the random set (0..R-1); ``-1`` for non-random rows
``task``                  str, ICL task; LR may live on its own pseudo-task ``"lr_docs"``
``shots``                 int
``item``                  int, item index within (task, shots)
``lr``                    loss reduction of the item (loss early window - loss late window;
                          higher = more ability). Floor is 0.
``fc``, ``pd``            format compliance / pattern discovery (0/1 or in [0, 1])
``fc_floor``, ``pd_floor`` the same metrics on the item's control prompt (zero-shot / no-label
                          prompt for FC; chance or shuffled-label prompt for PD), read from the
                          **clean** rows.
========================  =====================================================================

Metrics that are not measured for a row are NaN (e.g. ``fc``/``pd`` on ``lr_docs`` rows, ``lr`` on
prompt tasks when LR is measured on documents). Column names can be remapped with :class:`Columns`.

Normalised drop (docs/statistics.md)
-----------------------------------------------------
For item i of task t at checkpoint c, ability a, ablation condition k::

    drop_{i,a,k} = (clean_{i,a} - ablated_{i,a,k}) / G_{t,c,a},
    G_{t,c,a}    = mean_i (clean_{i,a} - floor_{i,a})          (task x checkpoint normaliser)

with floor = 0 for LR. A (task, checkpoint, ability) whose gap G is below the pre-registered
threshold ``min_gap[a]`` means the ability is *absent*: its drops are undefined (NaN) and the
exclusion is reported in :attr:`DropTables.normalisers` with its reason.

Units and the LR-on-documents decision
--------------------------------------
Tests are run over **tasks** (items nested: drops are averaged within task first). Each unit is a
(step, operator, condition, control_index, task) with its three mean drops. When a prompt task has
no LR of its own but the pseudo-task ``lr_task`` (default ``"lr_docs"``) has LR at that
(step, operator, condition, control_index), the checkpoint-level LR drop (mean over the documents)
is paired with every task: PD - LR differences then compare each task's PD drop with one shared LR
value, i.e. the test treats the LR drop as a fixed reference (its own sampling error enters only
through the hierarchical bootstrap, which resamples the documents). The ``lr_task`` row itself is
not a unit. ``lr_source`` records which rule was used.

Specific drop = drop under the tested head set - mean drop over the R matched random sets
(matched by step, operator, task, and the head-set size k).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

ABILITIES: tuple[str, ...] = ("lr", "fc", "pd")
DEFAULT_MIN_GAP: dict[str, float] = {"lr": 0.05, "fc": 0.05, "pd": 0.05}
UNIT_KEYS: list[str] = ["step", "operator", "condition", "control_index", "head_set", "task"]


@dataclass(frozen=True)
class Columns:
    """Column names of the input results table (defaults follow the input contract).

    Example: ``Columns(pd="pattern_acc", pd_floor="pattern_chance")``.
    """

    step: str = "step"
    tokens_seen: str = "tokens_seen"
    condition: str = "condition"
    head_set: str = "head_set"
    operator: str = "operator"
    control_index: str = "control_index"
    task: str = "task"
    shots: str = "shots"
    item: str = "item"
    lr: str = "lr"
    fc: str = "fc"
    pd: str = "pd"
    fc_floor: str = "fc_floor"
    pd_floor: str = "pd_floor"
    clean_label: str = "clean"
    random_label: str = "random"
    lr_task: str = "lr_docs"
    extra_raw: tuple[str, ...] = field(default=("loss_early", "loss_late"))

    def mapping(self) -> dict[str, str]:
        """Input column name -> canonical name, for the columns of the contract."""
        names = ["step", "tokens_seen", "condition", "head_set", "operator", "control_index",
                 "task", "shots", "item", "lr", "fc", "pd", "fc_floor", "pd_floor"]
        return {getattr(self, n): n for n in names}


REQUIRED = ["step", "condition", "operator", "task", "item"]


def canonicalise(results: pd.DataFrame, cols: Columns = Columns()) -> pd.DataFrame:
    """Rename input columns to canonical names, fill optional ones and validate types.

    Raises:
        ValueError: a required column is missing, no clean rows exist, or no ability column exists.
    """
    if not isinstance(results, pd.DataFrame):
        raise TypeError(f"stats: results must be a pandas DataFrame, got {type(results).__name__}.")
    mapping = cols.mapping()
    df = results.rename(columns={k: v for k, v in mapping.items() if k in results.columns}).copy()
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(
            f"stats.drops: results table lacks required column(s) {missing} (have {list(results.columns)}). "
            "Fix: produce the input contract documented in stats/drops.py, or map names with "
            "stats.drops.Columns(step='my_step', ...).")
    if not any(a in df.columns for a in ABILITIES):
        raise ValueError("stats.drops: results table has none of the ability columns lr/fc/pd "
                         f"(have {list(results.columns)}); map them with stats.drops.Columns(lr=..., fc=..., pd=...).")
    for a in ABILITIES:
        if a not in df.columns:
            df[a] = np.nan
    for c in ("fc_floor", "pd_floor"):
        if c not in df.columns:
            df[c] = np.nan
    if "shots" not in df.columns:
        df["shots"] = 0
    if "control_index" not in df.columns:
        df["control_index"] = -1
    if "head_set" not in df.columns:
        df["head_set"] = ""
    if "tokens_seen" not in df.columns:
        df["tokens_seen"] = np.nan
    df["head_set"] = df["head_set"].fillna("").astype(str)
    df["condition"] = df["condition"].astype(str).replace({cols.clean_label: "clean", cols.random_label: "random"})
    df["task"] = df["task"].astype(str).replace({cols.lr_task: "lr_docs"})
    df["operator"] = df["operator"].astype(str)
    df["control_index"] = df["control_index"].fillna(-1).astype(int)
    for extra in cols.extra_raw:
        if extra in results.columns and extra not in df.columns:
            df[extra] = results[extra]
    if not (df["condition"] == "clean").any():
        raise ValueError(f"stats.drops: no clean rows (condition == {cols.clean_label!r}); normalised drops "
                         "need the unablated model's metrics. Fix: include the clean condition in the run.")
    return df


def head_count(head_set: str) -> int:
    """Number of heads in a head-set string such as ``"L0H1,L1H3"`` (0 for empty)."""
    return len([h for h in str(head_set).split(",") if h.strip()])


@dataclass
class DropTables:
    """Output of :func:`normalised_drops`.

    Attributes:
        items: long table, one row per ablated item x ability: keys, ``clean``, ``ablated``,
            ``floor``, ``gap`` (task x checkpoint normaliser), ``drop`` (NaN when excluded).
        normalisers: one row per (step, task, ability): ``clean_mean``, ``floor_mean``, ``gap``,
            ``n_items``, ``excluded`` and ``reason`` (the pre-registered exclusion report).
        raw: per (step, operator, condition, control_index, head_set, task, ability): mean raw
            clean / ablated / floor values beside the mean normalised drop.
    """

    items: pd.DataFrame
    normalisers: pd.DataFrame
    raw: pd.DataFrame


def normalised_drops(results: pd.DataFrame, cols: Columns = Columns(),
                     min_gap: dict[str, float] | None = None) -> DropTables:
    """Per-item normalised drops with task x checkpoint normalisers.

    Formula: ``drop = (clean - ablated) / G``, ``G = mean_items(clean - floor)`` per
    (step, task, ability); floor = 0 for LR, ``fc_floor`` / ``pd_floor`` for FC / PD.

    Args:
        results: the tidy results table (see module docstring).
        cols: column-name mapping.
        min_gap: pre-registered threshold per ability; G below it = ability absent (excluded).

    Returns:
        DropTables.

    Raises:
        ValueError: duplicated clean keys, or ablated rows whose (step, task, shots, item) has no
            clean row.
    """
    gaps_thr = dict(DEFAULT_MIN_GAP)
    gaps_thr.update(min_gap or {})
    df = canonicalise(results, cols)
    keys = ["step", "task", "shots", "item"]
    clean = df[df["condition"] == "clean"]
    dup = clean.duplicated(keys)
    if dup.any():
        raise ValueError(f"stats.drops: {int(dup.sum())} duplicated clean rows for keys {keys}, e.g. "
                         f"{clean.loc[dup, keys].iloc[0].to_dict()}. Fix: one clean row per (step, task, shots, item).")
    abl = df[df["condition"] != "clean"]
    if abl.empty:
        raise ValueError("stats.drops: no ablated rows (condition other than clean); nothing to compare.")

    # normalisers at task x checkpoint level
    floors = {"lr": pd.Series(0.0, index=clean.index), "fc": clean["fc_floor"], "pd": clean["pd_floor"]}
    norm_rows = []
    for a in ABILITIES:
        g = pd.DataFrame({"step": clean["step"], "task": clean["task"], "clean": clean[a],
                          "floor": floors[a].where(clean[a].notna())})
        g = g[g["clean"].notna()]
        if g.empty:
            continue
        if a != "lr" and g["floor"].isna().any():
            bad = g[g["floor"].isna()].iloc[0]
            raise ValueError(f"stats.drops: {a} is measured but {a}_floor is NaN on clean rows, e.g. step "
                             f"{bad['step']}, task {bad['task']!r}. Fix: record the control-prompt value "
                             f"({a}_floor) on the clean rows.")
        agg = g.groupby(["step", "task"], as_index=False).agg(
            clean_mean=("clean", "mean"), floor_mean=("floor", "mean"), n_items=("clean", "size"))
        agg["ability"] = a
        agg["gap"] = agg["clean_mean"] - agg["floor_mean"]
        agg["threshold"] = gaps_thr[a]
        agg["excluded"] = ~(agg["gap"] >= gaps_thr[a])
        agg["reason"] = np.where(
            agg["excluded"],
            [f"{a.upper()} absent at step {s}, task {t!r}: clean - floor = {gv:.3g} < threshold {gaps_thr[a]:.3g}"
             for s, t, gv in zip(agg["step"], agg["task"], agg["gap"])], "")
        norm_rows.append(agg)
    normalisers = pd.concat(norm_rows, ignore_index=True)[
        ["step", "task", "ability", "clean_mean", "floor_mean", "gap", "n_items", "threshold", "excluded", "reason"]]

    merged = abl.merge(clean[keys + list(ABILITIES) + ["fc_floor", "pd_floor"]], on=keys, how="left",
                       suffixes=("", "_clean"), indicator=True)
    orphan = merged["_merge"] != "both"
    if orphan.any():
        ex = merged.loc[orphan, keys].drop_duplicates().head(3).to_dict("records")
        raise ValueError(f"stats.drops: {int(orphan.sum())} ablated rows have no clean row with the same "
                         f"{keys}, e.g. {ex}. Fix: run the clean condition on every item that is ablated.")
    base_cols = ["step", "tokens_seen", "operator", "condition", "control_index", "head_set", "task", "shots", "item"]
    extras = [c for c in cols.extra_raw if c in merged.columns]
    parts = []
    for a in ABILITIES:
        floor = 0.0 if a == "lr" else merged[f"{a}_floor_clean"]
        p = merged[base_cols + extras].copy()
        p["ability"] = a
        p["clean"] = merged[f"{a}_clean"]
        p["ablated"] = merged[a]
        p["floor"] = floor
        p = p[p["clean"].notna() & p["ablated"].notna()]
        parts.append(p)
    items = pd.concat(parts, ignore_index=True)
    items = items.merge(normalisers[["step", "task", "ability", "gap", "excluded"]],
                        on=["step", "task", "ability"], how="left")
    items["drop"] = np.where(items["excluded"], np.nan, (items["clean"] - items["ablated"]) / items["gap"])
    items["k"] = items["head_set"].map(head_count)

    gkeys = UNIT_KEYS + ["ability"]
    agg = {"tokens_seen": ("tokens_seen", "first"), "k": ("k", "first"), "n_items": ("drop", "size"),
           "clean": ("clean", "mean"), "ablated": ("ablated", "mean"), "floor": ("floor", "mean"),
           "gap": ("gap", "first"), "drop": ("drop", "mean")}
    for e in extras:
        agg[e] = (e, "mean")
    raw = items.groupby(gkeys, as_index=False, sort=True).agg(**agg)
    return DropTables(items=items, normalisers=normalisers, raw=raw)


def unit_table(raw: pd.DataFrame, normalisers: pd.DataFrame | None = None) -> pd.DataFrame:
    """Wide per-task units: one row per (step, operator, condition, control_index, head_set, task).

    Columns ``lr``, ``fc``, ``pd`` hold the mean normalised drops; ``lr_source`` is ``"task"`` or
    ``"lr_docs"`` (checkpoint-level LR broadcast, see module docstring); ``valid`` says whether all
    three drops exist; ``reason`` says why not.
    """
    idx = UNIT_KEYS
    wide = raw.set_index(idx + ["ability"])["drop"].unstack("ability")
    wide = wide.reindex(columns=list(ABILITIES))
    wide.columns.name = None
    wide = wide.reset_index()
    meta = raw.groupby(idx, as_index=False).agg(tokens_seen=("tokens_seen", "first"), k=("k", "first"))
    wide = wide.merge(meta, on=idx, how="left")
    measured = raw.groupby(idx + ["ability"]).size().unstack("ability").reindex(columns=list(ABILITIES)).notna()
    measured.columns = [f"has_{a}" for a in ABILITIES]
    wide = wide.merge(measured.reset_index(), on=idx, how="left")
    wide["lr_source"] = np.where(wide["has_lr"], "task", "")

    docs = wide[wide["task"] == "lr_docs"]
    units = wide[wide["task"] != "lr_docs"].copy()
    if not docs.empty:
        k = ["step", "operator", "condition", "control_index", "head_set"]
        d = docs[k + ["lr"]].rename(columns={"lr": "lr_docs_drop"})
        units = units.merge(d, on=k, how="left", indicator="_docs")
        has_docs = (units["_docs"] == "both").to_numpy()
        broadcast = ~units["has_lr"].to_numpy() & has_docs
        units.loc[broadcast, "lr_source"] = "lr_docs"
        units.loc[broadcast, "lr"] = units.loc[broadcast, "lr_docs_drop"]
        units = units.drop(columns="_docs")
        units = units.drop(columns="lr_docs_drop")

    excl = {}
    if normalisers is not None and not normalisers.empty:
        ex = normalisers[normalisers["excluded"]]
        excl = {(s, t, a): r for s, t, a, r in zip(ex["step"], ex["task"], ex["ability"], ex["reason"])}
    reasons = []
    for row in units.itertuples(index=False):
        rs = []
        for a in ABILITIES:
            if not np.isnan(getattr(row, a)):
                continue
            src_task = "lr_docs" if (a == "lr" and row.lr_source == "lr_docs") else row.task
            r = excl.get((row.step, src_task, a))
            if r:
                rs.append(r)
            elif a == "lr" and row.lr_source == "" :
                rs.append(f"LR not measured for task {row.task!r} and no 'lr_docs' rows at step {row.step}")
            else:
                rs.append(f"{a.upper()} not measured for task {row.task!r} at step {row.step}")
        reasons.append("; ".join(rs))
    units["reason"] = reasons
    units["valid"] = units[list(ABILITIES)].notna().all(axis=1)
    units["k"] = units["k"].astype(int)
    return units.drop(columns=[f"has_{a}" for a in ABILITIES])


def specific_units(units: pd.DataFrame) -> pd.DataFrame:
    """Tested-set units with specific drops ``s_a = drop_a - mean_r drop_a(random r)``.

    Random sets are matched to a tested head set by (step, operator, task) and head-set size k;
    ``R`` is the number of matched random sets (0 when none: ``s_*`` are then NaN).
    """
    tested = units[~units["condition"].isin(["random"])].copy()
    rnd = units[units["condition"] == "random"]
    k = ["step", "operator", "task", "k"]
    if rnd.empty:
        for a in ABILITIES:
            tested[f"s_{a}"] = np.nan
        tested["R"] = 0
        return tested
    rmean = rnd.groupby(k, as_index=False).agg(
        **{f"r_{a}": (a, "mean") for a in ABILITIES}, R=("control_index", "nunique"))
    tested = tested.merge(rmean, on=k, how="left")
    tested["R"] = tested["R"].fillna(0).astype(int)
    for a in ABILITIES:
        tested[f"s_{a}"] = tested[a] - tested[f"r_{a}"]
    return tested.drop(columns=[f"r_{a}" for a in ABILITIES])
