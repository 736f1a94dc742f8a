"""One call from the results table to significance tables: :func:`analyze` and :func:`run_stats`.

Pipeline (docs/statistics.md; input contract in :mod:`stats.drops`), one named
stage per step, each passing a small record to the next:

1. :func:`stats.drops.normalised_drops` -- per-item drops of LR, FC and PD measured on the same
   prompts, task x checkpoint normalisers, the pre-registered "ability present" test, counts of
   every row left out;
2. units -- per-task mean drops; specific drops = tested set - mean of the R matched random sets
   that have data for that task;
3. :func:`_test_groups` -- one :class:`TestGroup` per (step, operator, tested head set): the tasks
   that enter, their basis (specific / target) drops, R, and the notes that say what was left out;
4. :func:`_primary` -- the IUT of two one-sided sign-flip tests over tasks (:mod:`stats.contrasts`),
   vectorised over groups with the same number of tasks;
5. :func:`_random_head_p` -- empirical p against the R random sets (statistic
   min(mean(PD - LR), mean(PD - FC)) of raw drops, over the same tasks);
6. :func:`_effects` -- composite contrast S_PD - (S_LR + S_FC)/2, d_z, Cliff's delta, and its
   task-then-query bootstrap CI (:mod:`stats.effects`);
7. :func:`_multiplicity` -- Holm across pre-registered steps (untestable or absent ones kept in the
   family with p = 1), BH across exploratory steps, per (operator, tested set);
8. :func:`_breakdown` -- exploratory per-task IUT (sign-flip over queries within the task, BH);
9. :func:`_robustness` -- Wilcoxon IUT; crossed mixed model (task, query, checkpoint);
10. the secondary document-level LR (:func:`stats.drops.document_lr`) and emergence.

Rows that cannot be computed are kept with NaN and a ``note`` saying why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from . import contrasts, corrections, effects, robustness
from .drops import (ABILITIES, Columns, DropTables, document_lr, item_basis, normalised_drops, specific_units,
                    unit_table)
from .emergence import EmergenceResult

GROUP = ["step", "operator", "condition", "head_set"]


@dataclass
class SignificanceResult:
    """Results object: tidy frames plus a readable summary and writers.

    Attributes:
        table: one row per (step, operator, tested head set): drops, contrast, CIs, p-values, notes.
        breakdown: exploratory per-task IUT with BH-adjusted p (``p_bh``) per (step, operator, set).
        robustness: mixed-model contrasts per (operator, tested head set), with captured warnings.
        drops: the :class:`stats.drops.DropTables` (items, normalisers/exclusions, raw, counts).
        units: per-task units with specific drops.
        documents: the secondary document-level LR drops (never part of a paired test).
        emergence: :class:`stats.emergence.EmergenceResult` or None.
        patching: :class:`stats.patching.PatchingResult` (restoration by patching) or None.
        settings: the analysis parameters (for the record).
    """

    table: pd.DataFrame
    breakdown: pd.DataFrame
    robustness: pd.DataFrame
    drops: DropTables
    units: pd.DataFrame
    emergence: EmergenceResult | None = None
    settings: dict = field(default_factory=dict)
    patching: Any = None  #: :class:`stats.patching.PatchingResult` when the run patched (else None)
    paths: Any = None  #: the :func:`stats.paths.analyze_paths` table when the run path-patched (else None)
    documents: pd.DataFrame = field(default_factory=pd.DataFrame)
    relations: Any = None  #: :class:`stats.relations.RelationsResult` when the run scored KG relations / by relation

    def summary(self) -> str:
        """One plain-language paragraph generated from the numbers."""
        from .tables import summary_paragraph
        return summary_paragraph(self)

    def write(self, run_dir: str | Path) -> dict[str, Path]:
        """Write RUN/tables/{significance,emergence,...}.{csv,md,tex} and summary.md; returns paths."""
        from .tables import write_tables
        return write_tables(self, Path(run_dir) / "tables")


@dataclass(frozen=True)
class Settings:
    """The analysis parameters of one :func:`analyze` call."""

    basis: str = "auto"
    preregistered_steps: tuple[int, ...] | None = None
    alpha: float = 0.05
    max_exact: int = contrasts.DEFAULT_MAX_EXACT
    n_resamples: int = contrasts.DEFAULT_RESAMPLES
    n_boot: int = 2000
    p_resolution: float = 0.05
    seed: int = 0


class TestGroup(NamedTuple):
    """One row of the significance table before testing: what enters the primary test."""

    key: tuple            # (step, operator, condition, head_set)
    tokens_seen: float
    k: int
    basis: str            # "specific" or "target"
    R: int                # smallest number of matched random sets with data over the tasks used
    tasks: tuple          # tasks that enter
    own: np.ndarray       # (n_tasks, 3) the tested set's own drops (LR, FC, PD)
    test: np.ndarray      # (n_tasks, 3) the basis drops that are tested
    n_items: int
    n_queries: int
    notes: list


def _group_notes(g: pd.DataFrame, counts: pd.DataFrame | None, step, op, cond) -> list[str]:
    notes = []
    if counts is not None and not counts.empty:
        c = counts[(counts["step"] == step) & (counts["operator"] == op) & (counts["condition"] == cond)]
        left = [col for col in c.columns if col not in ("step", "task", "condition", "operator", "rows", "analysed")]
        lost = {col: int(c[col].sum()) for col in left if c[col].sum() > 0}
        if lost:
            notes.append(f"ablated rows analysed {int(c['analysed'].sum())} of {int(c['rows'].sum())} ("
                         + ", ".join(f"{v} {k}" for k, v in lost.items()) + ")")
    return notes


def _test_groups(tested: pd.DataFrame, basis: str, counts: pd.DataFrame | None) -> list[TestGroup]:
    """Stage 3: per (step, operator, tested set), the tasks that enter and their drops."""
    out = []
    for key, g in tested.sort_values(GROUP + ["task"]).groupby(GROUP, sort=True):
        step, op, cond, hs = key
        notes = _group_notes(g, counts, step, op, cond)
        valid = g[g["valid"]]
        bad = g[~g["valid"]]
        if len(bad):
            why = {}
            for r in bad["reason"]:
                for part in str(r).split("; "):
                    if " absent at step" in part:
                        tag = part.split(" at step")[0]
                    elif " not measured" in part:
                        tag = part.split(" for task")[0]
                    else:
                        continue  # the second clause of an 'absent' reason (details in exclusions.csv)
                    why[tag] = why.get(tag, 0) + 1
            notes.append(f"{len(bad)} of {len(g)} task(s) excluded: " + ", ".join(
                f"{t} ({v})" for t, v in why.items()) + " (details: exclusions.csv)")
        has_r = valid["R"] > 0
        b = basis if basis != "auto" else ("specific" if has_r.any() else "target")
        if b == "specific" and not has_r.any():
            notes.append("basis 'specific' requested but no matched random set has data: used target drops")
            b = "target"
        if b == "specific" and not has_r.all():
            miss = sorted(valid.loc[~has_r, "task"])
            notes.append(f"{len(miss)} task(s) excluded: no matched random set with data ({', '.join(miss)})")
            valid = valid[has_r]
        if b == "specific" and len(valid) and valid["R"].nunique() > 1:
            notes.append(f"matched random sets with data per task: {valid['R'].min()}-{valid['R'].max()}")
        cols_b = [f"s_{a}" if b == "specific" else a for a in ABILITIES]
        own = valid[list(ABILITIES)].to_numpy(float)
        test = valid[cols_b].to_numpy(float)
        ts = g["tokens_seen"].iloc[0]  # None for a single model (step 0, no training count)
        out.append(TestGroup(key, float("nan") if ts is None or pd.isna(ts) else float(ts), int(g["k"].iloc[0]), b,
                             int(valid["R"].min()) if len(valid) else 0, tuple(valid["task"]), own, test,
                             int(valid["n_items"].sum()) if len(valid) else 0,
                             int(valid["n_queries"].sum()) if len(valid) else 0, notes))
    return out


def _primary(groups: list[TestGroup], s: Settings) -> pd.DataFrame:
    """Stage 4: IUT per group (vectorised over groups with the same number of tasks)."""
    n = len(groups)
    res = pd.DataFrame({"p_pd_lr": np.full(n, np.nan), "p_pd_fc": np.nan, "p_iut": np.nan, "p_method": ""})
    sizes = np.array([len(g.tasks) for g in groups])
    for m in np.unique(sizes[sizes >= 2]):
        ix = np.nonzero(sizes == m)[0]
        X = np.stack([groups[i].test for i in ix])  # (G, m, 3)
        r = contrasts.iut_test(X[..., 2], X[..., 0], X[..., 1], max_exact=s.max_exact,
                               n_resamples=s.n_resamples, seed=s.seed)
        res.loc[ix, "p_pd_lr"] = np.atleast_1d(r.p_lr)
        res.loc[ix, "p_pd_fc"] = np.atleast_1d(r.p_fc)
        res.loc[ix, "p_iut"] = np.atleast_1d(r.pvalue)
        res.loc[ix, "p_method"] = "exact" if r.exact else f"Monte Carlo ({s.n_resamples})"
    for i, g in enumerate(groups):
        m = len(g.tasks)
        if m < 2:
            g.notes.append(f"IUT not run: {m} usable task(s); a sign-flip test over tasks needs >= 2")
        elif 2.0 ** -m > s.alpha:
            g.notes.append(f"with {m} tasks the smallest attainable p is {2.0 ** -m:.3f} > alpha")
    return res


def _random_head_p(groups: list[TestGroup], units: pd.DataFrame, s: Settings) -> pd.DataFrame:
    """Stage 5: empirical p of T = min(mean(PD-LR), mean(PD-FC)) (own drops) against random sets
    matched by (step, operator, k) that have valid data on every task the group uses."""
    rnd = units[(units["condition"] == "random") & units["valid"]]
    pools = {}
    if len(rnd):
        w = rnd.assign(d1=rnd["pd"] - rnd["lr"], d2=rnd["pd"] - rnd["fc"]).set_index(
            ["step", "operator", "k", "control_index", "task"])[["d1", "d2"]].unstack("task")
        for key, idx in w.groupby(level=[0, 1, 2]).indices.items():
            pools[key] = w.iloc[idx]
    rows = []
    for g in groups:
        step, op, _, _ = g.key
        row = {"T_obs": np.nan, "p_random": np.nan, "R_null": 0}
        if len(g.tasks):
            row["T_obs"] = float(contrasts.iut_statistic(g.own[:, 2], g.own[:, 0], g.own[:, 1]))
            w = pools.get((step, op, g.k))
            null = np.empty(0)
            if w is not None:
                tasks = [t for t in g.tasks if t in w["d1"].columns]
                if len(tasks) == len(g.tasks):
                    d1, d2 = w["d1"][list(g.tasks)].to_numpy(float), w["d2"][list(g.tasks)].to_numpy(float)
                    ok = np.isfinite(d1).all(1) & np.isfinite(d2).all(1)
                    if (~ok).any():
                        g.notes.append(f"{int((~ok).sum())} random set(s) lack data on some of the tested "
                                       "tasks: left out of the random-heads null")
                    null = np.minimum(d1[ok].mean(1), d2[ok].mean(1))
                else:
                    g.notes.append("no random set has data on every tested task: no random-heads p")
            row["R_null"] = int(null.size)
            try:
                row["p_random"] = contrasts.empirical_p(row["T_obs"], null, min_resolution=s.p_resolution)
            except ValueError as exc:
                g.notes.append(str(exc).replace("stats.contrasts.empirical_p: ", "p (random heads): "))
        rows.append(row)
    return pd.DataFrame(rows)


def _cluster_arrays(ib: pd.DataFrame, tasks: tuple, cols: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per task: (sums (n_queries, 3), counts (n_queries,)) of the basis drops over each query's items."""
    out = []
    for t in tasks:
        x = ib[ib["task"] == t]
        agg = x.groupby("item")[cols].agg(["sum", "count"])
        sums = np.column_stack([agg[(c, "sum")].to_numpy(float) for c in cols])
        cnt = agg[(cols[0], "count")].to_numpy(float)
        out.append((sums, cnt))
    return out


def _effects(groups: list[TestGroup], ib: pd.DataFrame | None, s: Settings) -> pd.DataFrame:
    """Stage 6: composite contrast, d_z, Cliff's delta and the task-then-query bootstrap CI."""
    rows = []
    index = {} if ib is None else {k: v for k, v in ib.groupby(GROUP, sort=False).groups.items()}
    for i, g in enumerate(groups):
        row = {"contrast": np.nan, "d_z": np.nan, "cliffs_delta": np.nan, "contrast_ci_low": np.nan,
               "contrast_ci_high": np.nan}
        if len(g.tasks):
            c = effects.composite(g.test[:, 2], g.test[:, 0], g.test[:, 1])
            row["contrast"] = float(np.mean(c))
            row["d_z"], why = effects.d_z(c)
            if why:
                g.notes.append(why)
            row["cliffs_delta"], _ = effects.cliffs_delta(g.test[:, 2], (g.test[:, 0] + g.test[:, 1]) / 2)
            if s.n_boot and ib is not None and g.key in index:
                sub = ib.loc[index[g.key]]
                cols = [f"s_{a}" if g.basis == "specific" else a for a in ABILITIES]
                sub = sub[np.isfinite(sub[cols].to_numpy(float)).all(1)]
                arrays = _cluster_arrays(sub, g.tasks, cols)
                boot = effects.cluster_bootstrap(arrays, n_boot=s.n_boot, seed=s.seed + i)
                row["contrast_ci_low"], row["contrast_ci_high"] = effects.percentile_ci(boot)
        rows.append(row)
    return pd.DataFrame(rows)


def _multiplicity(table: pd.DataFrame, s: Settings) -> pd.DataFrame:
    """Stage 7: Holm across pre-registered steps (absent / untestable ones kept with p = 1), BH
    across exploratory steps, per (operator, tested set)."""
    table = table.copy()
    pre = s.preregistered_steps
    table["preregistered"] = table["step"].isin(pre).to_numpy() if pre is not None else True
    if pre is not None and len(table):
        add = []
        for (op, cond), g in table.groupby(["operator", "condition"]):
            for st in sorted(set(pre) - set(g["step"])):
                add.append({"step": st, "operator": op, "condition": cond, "head_set": "", "k": int(g["k"].iloc[0]),
                            "basis": "", "n_tasks": 0, "R": 0, "preregistered": True, "p_method": "",
                            "note": f"pre-registered checkpoint {st} is absent from the results: kept in the Holm "
                                    "family with p = 1"})
        if add:
            table = pd.concat([table, pd.DataFrame(add)], ignore_index=True).sort_values(
                ["step", "operator", "condition"], kind="stable").reset_index(drop=True)
    table["p_holm"] = np.nan
    table["p_bh"] = np.nan
    for _, g in table.groupby(["operator", "condition"]):
        pr = g.index[g["preregistered"].astype(bool)]
        ex = g.index[~g["preregistered"].astype(bool)]
        if len(pr):
            p = table.loc[pr, "p_iut"].to_numpy(float)
            untestable = ~np.isfinite(p)
            adj = corrections.holm(np.where(untestable, 1.0, p), s.alpha)
            table.loc[pr, "p_holm"] = np.where(untestable, np.nan, adj)
            if untestable.any() and (~untestable).any():
                for j in pr[untestable]:
                    if "Holm family with p = 1" not in str(table.loc[j, "note"]):
                        table.loc[j, "note"] = "; ".join(x for x in (table.loc[j, "note"],
                                                                       "untestable: kept in the Holm family with p = 1") if x)
        if len(ex):
            table.loc[ex, "p_bh"] = corrections.bh(table.loc[ex, "p_iut"], s.alpha)
    return table


def _breakdown(groups: list[TestGroup], ib: pd.DataFrame | None, s: Settings) -> pd.DataFrame:
    """Stage 8 (exploratory): per task, IUT by sign-flips over its queries; BH across tasks."""
    if ib is None:
        return pd.DataFrame()
    index = {k: v for k, v in ib.groupby(GROUP, sort=False).groups.items()}
    rows = []
    for g in groups:
        if g.key not in index or not len(g.tasks):
            continue
        sub = ib.loc[index[g.key]]
        cols = [f"s_{a}" if g.basis == "specific" else a for a in ABILITIES]
        sub = sub[np.isfinite(sub[cols].to_numpy(float)).all(1)]
        bp = []
        for t, (sums, cnt) in zip(g.tasks, _cluster_arrays(sub, g.tasks, cols)):
            m = sums / cnt[:, None]
            br = dict(zip(GROUP, g.key), task=t, n_queries=len(cnt), n_items=int(cnt.sum()),
                      pd_minus_lr=float(np.mean(m[:, 2] - m[:, 0])) if len(cnt) else np.nan,
                      pd_minus_fc=float(np.mean(m[:, 2] - m[:, 1])) if len(cnt) else np.nan, p_iut=np.nan, note="")
            if len(cnt) >= 2:
                r = contrasts.iut_test(m[:, 2], m[:, 0], m[:, 1], max_exact=s.max_exact,
                                       n_resamples=min(s.n_resamples, 1999), seed=s.seed)
                br["p_iut"] = r.pvalue
            else:
                br["note"] = f"{len(cnt)} usable quer(y/ies), need >= 2"
            bp.append(br)
        for b, p in zip(bp, corrections.bh([b["p_iut"] for b in bp], s.alpha)):
            b["p_bh"] = p
        rows += bp
    return pd.DataFrame(rows)


def _robustness(groups: list[TestGroup], table: pd.DataFrame, ib: pd.DataFrame | None, *, wilcoxon: bool,
                mixed_model: bool) -> pd.DataFrame:
    """Stage 9: Wilcoxon IUT per group (into ``table``) and the crossed mixed model per (op, set)."""
    for i, g in enumerate(groups):
        if wilcoxon and len(g.tasks) >= 2:
            w = robustness.wilcoxon_iut(g.test[:, 2], g.test[:, 0], g.test[:, 1])
            table.loc[i, "p_wilcoxon"] = w.pvalue
            if w.reason:
                g.notes.append(w.reason)
    rob = []
    if mixed_model and ib is not None and len(ib):
        for (op, cond), g in ib.groupby(["operator", "condition"]):
            spec = table.loc[(table["operator"] == op) & (table["condition"] == cond), "basis"].eq("specific").all()
            vcols = [f"s_{a}" if spec else a for a in ABILITIES]
            long = g.melt(id_vars=["step", "task", "item"], value_vars=vcols, var_name="ability", value_name="y")
            long["ability"] = long["ability"].str.replace("s_", "", regex=False)
            mm = robustness.mixed_model(long, value="y")  # item = query: one cluster across shots
            rob.append({"operator": op, "condition": cond, "basis": "specific" if spec else "target",
                        "n_obs": mm.n_obs, "pd_minus_lr": mm.pd_minus_lr, "se_pd_minus_lr": mm.se_pd_minus_lr,
                        "p_pd_minus_lr": mm.p_pd_minus_lr, "pd_minus_fc": mm.pd_minus_fc,
                        "se_pd_minus_fc": mm.se_pd_minus_fc, "p_pd_minus_fc": mm.p_pd_minus_fc,
                        "p_iut": mm.p_iut, "converged": mm.converged,
                        "variance_components": "; ".join(f"{k}={v:.3g}" for k, v in mm.variance_components.items()),
                        "warnings": " | ".join(dict.fromkeys(mm.warnings)), "note": mm.reason})
    return pd.DataFrame(rob)


ORDER = ["step", "tokens_seen", "operator", "condition", "head_set", "k", "basis", "n_tasks", "n_queries", "n_items",
         "R", "d_pd", "d_lr", "d_fc", "s_pd", "s_lr", "s_fc", "contrast", "contrast_ci_low", "contrast_ci_high",
         "d_z", "cliffs_delta", "p_pd_lr", "p_pd_fc", "p_iut", "p_method", "preregistered", "p_holm", "p_bh",
         "T_obs", "R_null", "p_random", "p_wilcoxon", "doc_lr_drop", "note"]


def analyze(results: pd.DataFrame, *, cols: Columns = Columns(), min_gap: dict[str, float] | None = None,
            basis: str = "auto", preregistered_steps: list[int] | None = None, alpha: float = 0.05,
            max_exact: int = contrasts.DEFAULT_MAX_EXACT, n_resamples: int = contrasts.DEFAULT_RESAMPLES,
            n_boot: int = 2000, p_resolution: float | None = None, wilcoxon: bool = True,
            mixed_model: bool = True, breakdown: bool = True, emergence_curves: pd.DataFrame | None = None,
            emergence_pairs: list[tuple[str, str]] | None = None, seed: int = 0,
            drops: DropTables | None = None) -> SignificanceResult:
    """Run the whole statistical analysis of an ablation results table.

    Args:
        results: tidy results table (input contract in :mod:`stats.drops`).
        cols: column-name mapping.
        min_gap: pre-registered "ability present" thresholds on clean - floor, per ability (> 0).
        basis: "specific" (tested - random mean), "target" (tested set's own drops) or "auto"
            (specific when matched random sets exist, else target).
        preregistered_steps: steps in the Holm family; None = all steps. Other steps are exploratory
            and get BH-adjusted p (``p_bh``) instead. Pre-registered steps that are absent or
            untestable stay in the family with p = 1.
        alpha: level used for decisions in the summary and p-resolution checks.
        max_exact, n_resamples: exact enumeration up to 2^n <= max_exact, else Monte Carlo.
        n_boot: task-then-query bootstrap replicates (0 = no CI).
        p_resolution: smallest p the random-head comparison must be able to reach (default alpha);
            if 1/(R+1) exceeds it, ``p_random`` is NaN with a reason.
        wilcoxon, mixed_model, breakdown: switch the robustness/exploratory parts.
        emergence_curves: long (step, tokens_seen, curve, value) curves for the emergence analysis.
        seed: seed for Monte Carlo tests and bootstraps.
        drops: precomputed :func:`stats.drops.normalised_drops` of ``results`` (computed once by
            :func:`run_stats`); None = compute here.

    Returns:
        SignificanceResult.
    """
    if basis not in ("auto", "specific", "target"):
        raise ValueError(f"stats.analyze: basis must be 'auto', 'specific' or 'target', got {basis!r}.")
    res_p = alpha if p_resolution is None else float(p_resolution)
    if not (0 < res_p < 1):
        raise ValueError(f"stats.analyze: p_resolution must lie in (0, 1), got {p_resolution!r}.")
    s = Settings(basis, None if preregistered_steps is None else tuple(int(x) for x in preregistered_steps),
                 alpha, max_exact, n_resamples, n_boot, res_p, seed)
    dt = drops if drops is not None else normalised_drops(results, cols, min_gap, seed=seed)
    units = unit_table(dt.raw, dt.normalisers)
    tested = specific_units(units)
    if tested.empty:
        raise ValueError("stats.analyze: no tested head set with analysable items (only clean and random rows, "
                         "or every item left out; see DropTables.counts). Include condition 'target'.")
    groups = _test_groups(tested, basis, dt.counts)
    table = pd.DataFrame([dict(zip(GROUP, g.key), tokens_seen=g.tokens_seen, k=g.k, basis=g.basis,
                               n_tasks=len(g.tasks), n_queries=g.n_queries, n_items=g.n_items, R=g.R,
                               **{f"d_{a}": (float(np.mean(g.own[:, j])) if len(g.tasks) else np.nan)
                                  for j, a in enumerate(ABILITIES)},
                               **{f"s_{a}": (float(np.mean(g.test[:, j])) if len(g.tasks) and g.basis == "specific"
                                             else np.nan) for j, a in enumerate(ABILITIES)})
                          for g in groups])
    table = pd.concat([table, _primary(groups, s), _random_head_p(groups, units, s)], axis=1)
    need_items = n_boot or mixed_model or breakdown
    ib = item_basis(dt.items) if need_items else None
    table = pd.concat([table, _effects(groups, ib, s)], axis=1)
    table["p_wilcoxon"] = np.nan
    rob = _robustness(groups, table, ib, wilcoxon=wilcoxon, mixed_model=mixed_model)
    brk = _breakdown(groups, ib, s) if breakdown else pd.DataFrame()
    docs = document_lr(dt.documents, n_boot=min(n_boot, 1000), seed=seed)
    if len(docs):
        d = docs[docs["condition"] != "random"].set_index(GROUP)["drop"]
        table["doc_lr_drop"] = d.reindex(pd.MultiIndex.from_frame(table[GROUP])).to_numpy()
    else:
        table["doc_lr_drop"] = np.nan
    table["note"] = ["; ".join(dict.fromkeys(g.notes)) for g in groups]
    table = _multiplicity(table, s)
    emer = None
    if emergence_curves is not None:
        from .emergence import emergence_analysis
        emer = emergence_analysis(emergence_curves, pairs=emergence_pairs, seed=seed)
    settings = {"basis": basis, "alpha": alpha, "min_gap": dict(dt.min_gap), "preregistered_steps": preregistered_steps,
                "max_exact": max_exact, "n_resamples": n_resamples, "n_boot": n_boot, "p_resolution": res_p,
                "seed": seed}
    return SignificanceResult(table=table.reindex(columns=ORDER), breakdown=brk, robustness=rob, drops=dt,
                              units=tested, emergence=emer, settings=settings, documents=docs)


def _run_spec(run: Path) -> dict:
    """The run's spec from RUN/manifest.json ({} when absent or unreadable)."""
    mf = run / "manifest.json"
    if not mf.exists():
        return {}
    try:
        return json.loads(mf.read_text()).get("spec", {}) or {}
    except (OSError, ValueError):
        return {}


def _spec_p_resolution(spec: dict) -> float | None:
    v = (spec.get("controls") or {}).get("p_resolution")
    return None if v is None else float(v)


def run_stats(run_dir: str | Path, **kwargs) -> SignificanceResult:
    """Read RUN/results.parquet (+ head_scores / head_sets / patching if present), analyse, write RUN/tables/.

    The normalised drops are computed once and shared by the significance tests and the emergence
    curves. Emergence curves (:func:`stats.emergence.ability_curves`): the clean abilities LR, FC
    and PD per task family (clean - floor over analysed items), and the selected heads' scores from
    ``head_scores.parquet``; their nulls (fake-tail baseline) are kept as bands, not dated.
    ``p_resolution`` defaults to the run spec's ``controls.p_resolution`` when set.

    Raises:
        FileNotFoundError: no RUN/results.parquet.
    """
    from .emergence import ability_curves, head_score_curves

    run = Path(run_dir)
    path = run / "results.parquet"
    if not path.exists():
        raise FileNotFoundError(f"stats.run_stats: {path} not found. Run the experiment first "
                                "(`ablate run SPEC`) or point at the run folder that holds results.parquet.")
    results = pd.read_parquet(path)
    cols = kwargs.get("cols", Columns())
    spec = _run_spec(run)
    if kwargs.get("p_resolution") is None:
        kwargs["p_resolution"] = _spec_p_resolution(spec)
    dt = normalised_drops(results, cols, kwargs.get("min_gap"), seed=kwargs.get("seed", 0))
    curves, pairs = ability_curves(dt), None
    if (run / "head_scores.parquet").exists():
        tgt = results.loc[results[cols.condition] == "target", cols.head_set] if cols.head_set in results else pd.Series([], dtype=str)
        heads = {h.strip() for s_ in tgt.dropna().unique() for h in str(s_).split(",") if h.strip()}
        hs = head_score_curves(pd.read_parquet(run / "head_scores.parquet"), heads=heads or None)
        if len(hs):
            dated = hs[~hs["null"]]
            curves = pd.concat([curves, hs], ignore_index=True)
            pairs = [(h, a) for h in sorted(dated["curve"].unique()) for a in sorted(curves.loc[~curves["null"] &
                     ~curves["curve"].isin(dated["curve"]), "curve"].unique())]
    if curves.empty or curves["step"].nunique() < 5:
        curves = None  # too few checkpoints: emergence is skipped and said so in the summary
    kwargs.setdefault("emergence_curves", curves)
    kwargs.setdefault("emergence_pairs", pairs)
    out = analyze(results, drops=dt, **kwargs)
    if (run / "patching.parquet").exists():
        from .patching import analyze_patching

        out.patching = analyze_patching(pd.read_parquet(run / "patching.parquet"),
                                        n_boot=kwargs.get("n_boot", 2000), seed=kwargs.get("seed", 0))
    if (run / "paths.parquet").exists():
        from .paths import analyze_paths

        out.paths = analyze_paths(pd.read_parquet(run / "paths.parquet"), n_boot=min(kwargs.get("n_boot", 2000), 1000),
                                  seed=kwargs.get("seed", 0))
    out.write(run)
    from .relations import is_relations_spec, write_relations_tables

    if is_relations_spec(spec):
        out.relations = write_relations_tables(run, spec, seed=kwargs.get("seed", 0))
    return out
