"""Normalised and specific drops: from the tidy ablation results table to per-task units.

Input contract (produced by the runner: :func:`experiments.tidy.results_table`)
------------------------------------------------------------------------------
A tidy :class:`pandas.DataFrame` ``results`` with one row per
(step, condition, control_index, operator, task, shots, item) and the columns

========================  =====================================================================
``step``                  int, checkpoint step
``tokens_seen``           int, tokens seen at that step (used for emergence, log10 tokens)
``condition``             str: ``"clean"`` (no intervention), ``"target"`` (selected heads),
                          ``"random"`` (matched random head set), ``"induction"`` or any other
                          name (another tested head set)
``head_set``              str like ``"L0H1,L1H3"`` (empty / ``""`` for clean rows)
``operator``              str: ``"zero"``, ``"mean"``, ``"resample"``; ``"none"`` for clean
``control_index``         int, index of the random set (0..R-1); ``-1`` for non-random rows
``task``                  str, ICL task. The pseudo-task ``"lr_docs"`` holds document-level LR
                          (held-out text): a *secondary* measure (:func:`document_lr`), never a
                          unit of the paired test.
``shots``                 int (0-shot prompts are the FC floor, not a level of ICL: they never
                          enter a drop, and are counted in :attr:`DropTables.counts`)
``item``                  int, the **query** index: the same query at every shot count, so
                          ``(task, item)`` across shots is one resampling cluster
``lr``                    loss reduction of the item *inside its own prompt* (answer loss of the
                          first demonstrations - of the last ones; higher = more ability). Floor 0.
``fc``, ``pd``            format compliance / pattern discovery (0/1 or in [0, 1])
``fc_floor``, ``pd_floor`` the same metrics' floors (no-label prompt for FC; chance for PD), read
                          from the **clean** rows.
========================  =====================================================================

Column names can be remapped with :class:`Columns`.

Which items enter (nothing dropped silently)
--------------------------------------------
An item (step, task, shots, query) enters the drops when ``shots >= 1`` and all three abilities are
finite on its clean row; an ablated row enters when, in addition, all three are finite on it. Every
other row is counted by reason in :attr:`DropTables.counts` (zero-shot, LR undefined with fewer than
2 demonstrations, NaN metric on the clean or ablated row) and reported in the tables' notes.
Because the three abilities are averaged over the *same* items of the *same* prompts under the
*same* intervention, a task's PD - LR and PD - FC differences are paired within task.

Normalised drop (docs/statistics.md)
-----------------------------------------------------
For item i of task t at checkpoint c, ability a, ablation condition k::

    drop_{i,a,k} = (clean_{i,a} - ablated_{i,a,k}) / G_{t,c,a},
    G_{t,c,a}    = mean_i (clean_{i,a} - floor_{i,a})          (task x checkpoint normaliser)

with floor = 0 for LR.

"Ability present" (pre-registered)
----------------------------------
A (step, task, ability) is *present* when both hold, else its drops are NaN and the exclusion is
reported in :attr:`DropTables.normalisers` with its reason:

1. the clean model is reliably above its floor: a one-sided test at ``presence_alpha`` (.05) over
   queries (the resampling unit). For a 0/1 metric with a constant floor (PD vs chance) it is the
   exact binomial test of the queries' outcomes at their largest shot count (one prompt per
   query, so the outcomes are independent); otherwise (FC vs its no-label prompt, LR vs 0) the
   sign-flip test of the per-query mean of ``clean - floor`` (:func:`stats.contrasts.sign_flip_test`);
2. ``G >= min_gap[a]`` (finite, > 0; validated). A gap below ``2 * min_gap`` is flagged
   ``near_threshold``. Because G >= min_gap > 0, ``|drop| <= range / min_gap``: a near-zero gap
   can never amplify a drop.

Capped drops
------------
A task's mean drop is at most 1: an ability can be lost fully, not more. Where ablation takes the
model *below* its floor (PD under chance once the model stops producing labels at all; FC under its
no-label prompt), the raw mean would exceed 1 and a head that only carries the label format would
show a larger PD drop than FC drop. So where a set's mean drop on a task exceeds 1, its item drops
are divided by that mean (the task mean becomes 1; the items keep their relative sizes, so the
bootstrap and the mixed model see the same capped values). Found by the known-answer check's
format twin (``tests/integration/test_known_answer.py``).

Specific drop = drop under the tested head set - mean drop over the R matched random sets that have
data for that task (matched by step, operator, task and head-set size k; ``R`` counts only those).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sst

from .contrasts import sign_flip_test

ABILITIES: tuple[str, ...] = ("lr", "fc", "pd")
DEFAULT_MIN_GAP: dict[str, float] = {"lr": 0.05, "fc": 0.05, "pd": 0.05}
PRESENCE_ALPHA = 0.05
UNIT_KEYS: list[str] = ["step", "operator", "condition", "control_index", "head_set", "task"]
ITEM_KEYS: list[str] = ["step", "task", "shots", "item"]
LR_DOCS = "lr_docs"


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


def validate_min_gap(min_gap: dict[str, float] | None) -> dict[str, float]:
    """The pre-registered thresholds, defaults filled in.

    Raises:
        ValueError: an unknown ability, or a threshold that is not a finite number > 0.
    """
    out = dict(DEFAULT_MIN_GAP)
    for a, v in (min_gap or {}).items():
        if a not in ABILITIES:
            raise ValueError(f"stats: min_gap names unknown ability {a!r}; use any of {list(ABILITIES)}.")
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = float("nan")
        if not np.isfinite(f) or f <= 0:
            raise ValueError(f"stats: min_gap[{a!r}] = {v!r} must be a finite number > 0 (it is the smallest "
                             "clean - floor gap that counts as 'ability present'; a gap near 0 would amplify "
                             "drops without bound). Fix: e.g. min_gap={'%s': 0.05}." % a)
        out[a] = f
    return out


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
    for c in (*ABILITIES, "fc_floor", "pd_floor"):
        if c not in df.columns:
            df[c] = np.nan
    defaults = {"shots": 1, "control_index": -1, "head_set": "", "tokens_seen": np.nan}
    for c, v in defaults.items():
        if c not in df.columns:
            df[c] = v
    df["head_set"] = df["head_set"].fillna("").astype(str)
    df["condition"] = df["condition"].astype(str).replace({cols.clean_label: "clean", cols.random_label: "random"})
    df["task"] = df["task"].astype(str).replace({cols.lr_task: LR_DOCS})
    if "family" not in df.columns:
        df["family"] = df["task"]
    df["operator"] = df["operator"].astype(str)
    df["control_index"] = df["control_index"].fillna(-1).astype(int)
    for a in (*ABILITIES, "fc_floor", "pd_floor"):
        df[a] = pd.to_numeric(df[a], errors="coerce").astype(float)
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
        items: wide table, one row per analysed ablated item: keys, ``k``, ``query`` (cluster id
            ``task:item``), ``clean_<a>``, ``ablated_<a>`` and the normalised ``drop_<a>`` (NaN
            where the ability is absent) for a in LR, FC, PD.
        normalisers: one row per (step, task, ability): ``clean_mean``, ``floor_mean``, ``gap``,
            ``n_items``, ``n_queries``, ``p_present`` (the presence test), ``present_test``,
            ``near_threshold``, ``excluded`` and ``reason`` (the pre-registered exclusion report).
        raw: per (step, operator, condition, control_index, head_set, task, ability): mean raw
            clean / ablated / floor values beside the mean normalised drop.
        counts: per (step, task, condition, operator): rows in the table and rows analysed, with
            the count of every reason a row was left out (nothing is dropped silently).
        documents: the ``lr_docs`` rows (document-level LR, secondary), canonicalised.
        clean: the clean ICL rows (for floors, ``pd_shuffled`` and emergence curves).
    """

    items: pd.DataFrame
    normalisers: pd.DataFrame
    raw: pd.DataFrame
    counts: pd.DataFrame = field(default_factory=pd.DataFrame)
    documents: pd.DataFrame = field(default_factory=pd.DataFrame)
    clean: pd.DataFrame = field(default_factory=pd.DataFrame)
    min_gap: dict = field(default_factory=dict)


def _floor(df: pd.DataFrame, a: str) -> pd.Series:
    return pd.Series(0.0, index=df.index) if a == "lr" else df[f"{a}_floor"]


def _eligibility(df: pd.DataFrame, clean_side: bool) -> pd.Series:
    """Reason a row is left out ('' = analysed)."""
    reason = pd.Series("", index=df.index, dtype=object)
    side = "clean" if clean_side else "ablated"
    for a in reversed(ABILITIES):
        bad = ~np.isfinite(df[a].to_numpy(float))
        if a == "lr":
            short = bad & (df["shots"].to_numpy() < 2)
            reason[short] = "LR undefined (fewer than 2 demonstrations)"
            bad = bad & ~short
        reason[bad] = f"{a.upper()} NaN on the {side} row"
        if clean_side and a != "lr":
            fb = np.isfinite(df[a].to_numpy(float)) & ~np.isfinite(df[f"{a}_floor"].to_numpy(float))
            reason[fb] = f"{a.upper()} floor NaN on the clean row"
    reason[df["shots"].to_numpy() < 1] = "zero-shot (the FC floor, not a level of ICL)"
    return reason


def presence_tests(clean: pd.DataFrame, *, seed: int = 0, n_resamples: int = 1999) -> pd.DataFrame:
    """One-sided "clean above floor" p per (step, task, ability) over queries (module docstring).

    Args:
        clean: analysed clean rows (columns step, task, shots, item, lr/fc/pd, fc_floor/pd_floor).

    Returns:
        Frame (step, task, ability, p_present, present_test).
    """
    out = []
    for a in ABILITIES:
        d = clean[["step", "task", "shots", "item", a]].copy()
        d["floor"] = _floor(clean, a).to_numpy(float)
        d["x"] = d[a] - d["floor"]
        binary = a != "lr" and bool(np.isin(d[a].to_numpy(), (0.0, 1.0)).all())
        fl = d.groupby(["step", "task"])["floor"].agg(["min", "max"])
        const = (fl["max"] - fl["min"]).abs() < 1e-12
        groups = []
        if binary and const.any():
            top = d[d["shots"] == d.groupby(["step", "task", "item"])["shots"].transform("max")]
            g = top.groupby(["step", "task"]).agg(k=(a, "sum"), n=(a, "size"), p0=("floor", "first"))
            g = g[const.reindex(g.index).fillna(False).to_numpy()]
            p = sst.binom.sf(g["k"].to_numpy() - 1, g["n"].to_numpy(), g["p0"].to_numpy())
            groups.append(pd.DataFrame({"p_present": p, "present_test": "exact binomial vs chance, one prompt "
                                        "per query at its largest shot count"}, index=g.index))
            rest = const.index[~const.to_numpy()]
        else:
            rest = const.index
        if len(rest):
            q = d.set_index(["step", "task"]).loc[rest].reset_index()
            qm = q.groupby(["step", "task", "item"])["x"].mean()
            per = qm.groupby(level=[0, 1]).apply(lambda s: s.to_numpy())
            res = pd.Series(np.nan, index=per.index)
            sizes = per.map(len)
            for n in np.unique(sizes):
                ix = sizes.index[sizes == n]
                if n < 2:
                    continue
                X = np.stack(per.loc[ix].to_numpy())
                res.loc[ix] = np.atleast_1d(sign_flip_test(X, n_resamples=n_resamples, max_exact=2 ** 16,
                                                           seed=seed).pvalue)
            groups.append(pd.DataFrame({"p_present": res.to_numpy(), "present_test":
                                        "sign-flip over queries of mean(clean - floor)"}, index=res.index))
        if groups:
            g = pd.concat(groups)
            g.index.names = ["step", "task"]
            out.append(g.reset_index().assign(ability=a))
    if not out:
        return pd.DataFrame(columns=["step", "task", "ability", "p_present", "present_test"])
    return pd.concat(out, ignore_index=True)


def normalised_drops(results: pd.DataFrame, cols: Columns = Columns(),
                     min_gap: dict[str, float] | None = None, *, presence_alpha: float | None = PRESENCE_ALPHA,
                     seed: int = 0) -> DropTables:
    """Per-item normalised drops with task x checkpoint normalisers (module docstring).

    Formula: ``drop = (clean - ablated) / G``, ``G = mean_items(clean - floor)`` per
    (step, task, ability); floor = 0 for LR, ``fc_floor`` / ``pd_floor`` for FC / PD.

    Args:
        results: the tidy results table (see module docstring).
        cols: column-name mapping.
        min_gap: pre-registered thresholds per ability (validated, > 0).
        presence_alpha: level of the pre-registered "clean above floor" test (None: the gap rule
            alone, e.g. for hand-made tables with too few queries for any test).

    Returns:
        DropTables.

    Raises:
        ValueError: invalid min_gap, duplicated clean keys, or ablated rows whose
            (step, task, shots, item) has no clean row.
    """
    thr = validate_min_gap(min_gap)
    df = canonicalise(results, cols)
    docs = df[df["task"] == LR_DOCS]
    df = df[df["task"] != LR_DOCS]
    clean_all = df[df["condition"] == "clean"]
    dup = clean_all.duplicated(ITEM_KEYS)
    if dup.any():
        raise ValueError(f"stats.drops: {int(dup.sum())} duplicated clean rows for keys {ITEM_KEYS}, e.g. "
                         f"{clean_all.loc[dup, ITEM_KEYS].iloc[0].to_dict()}. Fix: one clean row per "
                         "(step, task, shots, item).")
    abl_all = df[df["condition"] != "clean"]
    if abl_all.empty:
        raise ValueError("stats.drops: no ablated rows (condition other than clean); nothing to compare.")

    # -- which clean items enter
    creason = _eligibility(clean_all, clean_side=True)
    clean = clean_all[creason == ""]

    # -- normalisers and the pre-registered presence test
    rows = []
    for a in ABILITIES:
        g = pd.DataFrame({"step": clean["step"], "task": clean["task"], "item": clean["item"],
                          "clean": clean[a], "floor": _floor(clean, a)})
        if g.empty:
            continue
        agg = g.groupby(["step", "task"], as_index=False).agg(
            clean_mean=("clean", "mean"), floor_mean=("floor", "mean"), n_items=("clean", "size"),
            n_queries=("item", "nunique"))
        agg["ability"] = a
        rows.append(agg)
    cols_n = ["step", "task", "ability", "clean_mean", "floor_mean", "gap", "n_items", "n_queries", "threshold",
              "p_present", "present_test", "near_threshold", "excluded", "reason"]
    if rows:
        nm = pd.concat(rows, ignore_index=True)
        nm["gap"] = nm["clean_mean"] - nm["floor_mean"]
        nm["threshold"] = nm["ability"].map(thr)
        pres = presence_tests(clean, seed=seed)
        nm = nm.merge(pres, on=["step", "task", "ability"], how="left")
        reliable = (nm["p_present"] < presence_alpha) if presence_alpha is not None else pd.Series(True, index=nm.index)
        big = nm["gap"] >= nm["threshold"]
        nm["excluded"] = ~(reliable & big)
        nm["near_threshold"] = ~nm["excluded"] & (nm["gap"] < 2 * nm["threshold"])
        reasons = []
        for r in nm.itertuples(index=False):
            why = []
            if not r.gap >= r.threshold:
                why.append(f"clean - floor = {r.gap:.3g} < threshold {r.threshold:.3g}")
            if presence_alpha is not None and not r.p_present < presence_alpha:
                why.append(f"clean not reliably above its floor (presence test p = {r.p_present:.3g}, "
                           f"{r.n_queries} queries)")
            reasons.append(f"{r.ability.upper()} absent at step {r.step}, task {r.task!r}: " + "; ".join(why)
                           if why else "")
        nm["reason"] = reasons
        normalisers = nm[cols_n]
    else:
        normalisers = pd.DataFrame(columns=cols_n)

    # -- ablated rows against their clean row
    merged = abl_all.merge(clean_all[ITEM_KEYS + list(ABILITIES)], on=ITEM_KEYS, how="left",
                           suffixes=("", "_clean"), indicator=True)
    orphan = merged["_merge"] != "both"
    if orphan.any():
        ex = merged.loc[orphan, ITEM_KEYS].drop_duplicates().head(3).to_dict("records")
        raise ValueError(f"stats.drops: {int(orphan.sum())} ablated rows have no clean row with the same "
                         f"{ITEM_KEYS}, e.g. {ex}. Fix: run the clean condition on every item that is ablated.")
    merged = merged.drop(columns="_merge")
    ckey = pd.MultiIndex.from_frame(clean_all[ITEM_KEYS])
    cr = pd.Series(creason.to_numpy(), index=ckey)
    areason = pd.Series(cr.reindex(pd.MultiIndex.from_frame(merged[ITEM_KEYS])).to_numpy(), index=merged.index)
    own = _eligibility(merged, clean_side=False)
    areason = areason.where(areason != "", own)

    counts = _counts(clean_all, creason, merged, areason)

    items = merged[areason.to_numpy() == ""].copy()
    items["k"] = items["head_set"].map({h: head_count(h) for h in items["head_set"].unique()})
    items["query"] = items["task"].astype(str) + ":" + items["item"].astype(str)
    nmi = normalisers.set_index(["step", "task", "ability"])
    for a in ABILITIES:
        items[f"clean_{a}"] = items.pop(f"{a}_clean")
        items[f"ablated_{a}"] = items.pop(a)
        key = pd.MultiIndex.from_arrays([items["step"], items["task"], np.full(len(items), a)])
        gap = nmi["gap"].reindex(key).to_numpy(float)
        ex = nmi["excluded"].reindex(key).fillna(True).to_numpy(bool)
        items[f"gap_{a}"] = gap
        items[f"drop_{a}"] = np.where(ex, np.nan, (items[f"clean_{a}"] - items[f"ablated_{a}"]) / np.where(ex, 1, gap))
        # an ability can be lost fully, not more: where a set's mean drop on a task exceeds 1 (the
        # ablated model fell below the floor, e.g. PD under chance once no label is produced), its
        # item drops are scaled so that the task's mean drop is 1 (module docstring, "Capped drops")
        grp = items.groupby(["step", "operator", "condition", "control_index", "head_set", "task"], dropna=False)
        m = grp[f"drop_{a}"].transform("mean").to_numpy(float)
        items[f"drop_{a}"] = np.where(np.isfinite(m) & (m > 1), items[f"drop_{a}"] / np.where(m > 1, m, 1), items[f"drop_{a}"])
    keep = ["step", "tokens_seen", "operator", "condition", "control_index", "head_set", "k", "task", "family",
            "shots", "item", "query"] + [f"{w}_{a}" for a in ABILITIES for w in ("clean", "ablated", "gap", "drop")]
    items = items[keep].reset_index(drop=True)
    raw = _raw(items)
    return DropTables(items=items, normalisers=normalisers, raw=raw, counts=counts, documents=docs,
                      clean=clean_all.assign(analysed=(creason == "").to_numpy()), min_gap=thr)


def _counts(clean_all, creason, merged, areason) -> pd.DataFrame:
    """Rows in the table vs rows analysed, per (step, task, condition, operator), by reason."""
    parts = []
    for frame, reason in ((clean_all, creason), (merged, areason)):
        f = frame[["step", "task", "condition", "operator"]].copy()
        f["reason"] = reason.to_numpy()
        parts.append(f)
    f = pd.concat(parts, ignore_index=True)
    tab = f.groupby(["step", "task", "condition", "operator", "reason"]).size().unstack("reason", fill_value=0)
    tab = tab.rename(columns={"": "analysed"})
    if "analysed" not in tab.columns:
        tab["analysed"] = 0
    tab.insert(0, "rows", tab.sum(axis=1))
    tab.columns.name = None
    return tab.reset_index()


def _raw(items: pd.DataFrame) -> pd.DataFrame:
    """Long per-unit means: (unit keys, ability) -> clean, ablated, floor, gap, drop, n_items, n_queries."""
    g = items.groupby(UNIT_KEYS, sort=True)
    base = g.agg(tokens_seen=("tokens_seen", "first"), k=("k", "first"), n_items=("item", "size"),
                 n_queries=("query", "nunique")).reset_index()
    parts = []
    for a in ABILITIES:
        m = g.agg(clean=(f"clean_{a}", "mean"), ablated=(f"ablated_{a}", "mean"), gap=(f"gap_{a}", "first"),
                  drop=(f"drop_{a}", "mean")).reset_index()
        m["floor"] = m["clean"] - m["gap"]
        parts.append(base.merge(m, on=UNIT_KEYS).assign(ability=a))
    if not parts or items.empty:
        return pd.DataFrame(columns=UNIT_KEYS + ["ability", "tokens_seen", "k", "n_items", "n_queries", "clean",
                                                 "ablated", "gap", "drop", "floor"])
    return pd.concat(parts, ignore_index=True)


def unit_table(raw: pd.DataFrame, normalisers: pd.DataFrame | None = None) -> pd.DataFrame:
    """Wide per-task units: one row per (step, operator, condition, control_index, head_set, task).

    Columns ``lr``, ``fc``, ``pd`` hold the mean normalised drops over the task's analysed items
    (the same items for all three); ``valid`` says whether all three exist; ``reason`` says why not.
    """
    idx = UNIT_KEYS
    if raw.empty:
        return pd.DataFrame(columns=idx + list(ABILITIES) + ["tokens_seen", "k", "n_items", "n_queries",
                                                             "reason", "valid"])
    wide = raw.set_index(idx + ["ability"])["drop"].unstack("ability").reindex(columns=list(ABILITIES))
    wide.columns.name = None
    wide = wide.reset_index()
    meta = raw.groupby(idx, as_index=False).agg(tokens_seen=("tokens_seen", "first"), k=("k", "first"),
                                                n_items=("n_items", "first"), n_queries=("n_queries", "first"))
    units = wide.merge(meta, on=idx, how="left")
    excl = {}
    if normalisers is not None and not normalisers.empty:
        ex = normalisers[normalisers["excluded"]]
        excl = {(s, t, a): r for s, t, a, r in zip(ex["step"], ex["task"], ex["ability"], ex["reason"])}
    reasons = []
    for row in units.itertuples(index=False):
        rs = [excl.get((row.step, row.task, a)) or f"{a.upper()} not measured for task {row.task!r} at step {row.step}"
              for a in ABILITIES if not np.isfinite(getattr(row, a))]
        reasons.append("; ".join(rs))
    units["reason"] = reasons
    units["valid"] = units[list(ABILITIES)].notna().all(axis=1)
    units["k"] = units["k"].astype(int)
    return units


def specific_units(units: pd.DataFrame) -> pd.DataFrame:
    """Tested-set units with specific drops ``s_a = drop_a - mean_r drop_a(random r)``.

    Random sets are matched to a tested head set by (step, operator, task) and head-set size k.
    ``R`` counts only the matched random sets that have valid drops for that task (0 when none:
    ``s_*`` are then NaN).
    """
    tested = units[units["condition"] != "random"].copy()
    rnd = units[(units["condition"] == "random") & units["valid"]]
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


def item_basis(items: pd.DataFrame) -> pd.DataFrame:
    """Item-level drops of tested sets with specific drops ``s_<a>`` against the matched random-set
    mean at the same item (random sets with data for that item only)."""
    dcols = [f"drop_{a}" for a in ABILITIES]
    rnd = items[items["condition"] == "random"]
    tested = items[items["condition"] != "random"].copy()
    for a in ABILITIES:
        tested[a] = tested[f"drop_{a}"]
    if rnd.empty:
        for a in ABILITIES:
            tested[f"s_{a}"] = np.nan
        return tested
    rk = ["step", "operator", "k", "task", "shots", "item"]
    rm = rnd.groupby(rk, as_index=False)[dcols].mean().rename(columns={f"drop_{a}": f"r_{a}" for a in ABILITIES})
    tested = tested.merge(rm, on=rk, how="left")
    for a in ABILITIES:
        tested[f"s_{a}"] = tested[a] - tested[f"r_{a}"]
    return tested.drop(columns=[f"r_{a}" for a in ABILITIES])


def document_lr(documents: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Secondary measure: document-level LR (``lr_docs`` rows) per (step, operator, ablated set).

    ``drop = mean_d(clean_d - ablated_d) / mean_d(clean_d)`` over the held-out documents, with a
    percentile bootstrap CI over documents (clean and ablated resampled jointly). Reported beside
    the primary test; it never enters a paired test (one number per checkpoint cannot be paired
    with a task without its sampling error).
    """
    cols = ["step", "tokens_seen", "operator", "condition", "control_index", "head_set", "n_docs", "clean_lr",
            "ablated_lr", "drop", "ci_low", "ci_high", "note"]
    if documents is None or documents.empty:
        return pd.DataFrame(columns=cols)
    d = documents[np.isfinite(documents["lr"].to_numpy(float))]
    keys = ["step", "operator", "condition", "control_index", "head_set"]
    clean = d[d["condition"] == "clean"][["step", "item", "lr"]].rename(columns={"lr": "clean"})
    abl = d[d["condition"] != "clean"].merge(clean, on=["step", "item"], how="inner")
    if abl.empty:
        return pd.DataFrame(columns=cols)
    out = abl.groupby(keys, as_index=False, sort=True).agg(tokens_seen=("tokens_seen", "first"),
                                                          n_docs=("lr", "size"), clean_lr=("clean", "mean"),
                                                          ablated_lr=("lr", "mean"))
    pos = out["clean_lr"] > 0
    out["drop"] = np.where(pos, (out["clean_lr"] - out["ablated_lr"]) / out["clean_lr"].where(pos, 1.0), np.nan)
    out["note"] = np.where(pos, "", "clean document LR <= 0: no ability to normalise by")
    out["ci_low"] = np.nan
    out["ci_high"] = np.nan
    if n_boot:
        rng = np.random.default_rng(seed)
        for i, (_, g) in enumerate(abl.groupby(keys, sort=True)):
            c, a = g["clean"].to_numpy(float), g["lr"].to_numpy(float)
            if not pos.iloc[i] or c.size < 2:
                continue
            ix = rng.integers(0, c.size, size=(n_boot, c.size))
            cm = c[ix].mean(1)
            with np.errstate(divide="ignore", invalid="ignore"):
                b = (cm - a[ix].mean(1)) / cm
            b = b[np.isfinite(b)]
            if b.size:
                out.loc[out.index[i], ["ci_low", "ci_high"]] = np.quantile(b, [0.025, 0.975])
    return out[cols]
