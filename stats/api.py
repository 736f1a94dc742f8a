"""One call from the results table to significance tables: :func:`analyze` and :func:`run_stats`.

Pipeline (docs/statistics.md; input contract in :mod:`stats.drops`):

1. normalised drops per item and ability, task x checkpoint normalisers, pre-registered exclusion
   of absent abilities (:func:`stats.drops.normalised_drops`);
2. per-task units (items averaged within task), LR from ``lr_docs`` broadcast when needed;
3. specific drops = tested set - mean of the R matched random sets (the test *basis* when R > 0;
   otherwise the tested set's own drops, ``basis`` column says which);
4. per (step, operator, tested head set): IUT of two one-sided sign-flip tests over tasks
   (:mod:`stats.contrasts`), composite contrast S_PD - (S_LR + S_FC)/2 with a task-then-item
   bootstrap CI, d_z, Cliff's delta (:mod:`stats.effects`), empirical p against the R random sets
   (statistic min(mean(PD - LR), mean(PD - FC)) of raw drops), Holm across pre-registered steps
   and BH across exploratory steps per (operator, head set) (:mod:`stats.corrections`);
5. robustness: Wilcoxon IUT, crossed mixed model with captured warnings (:mod:`stats.robustness`);
6. exploratory per-task breakdown (sign-flip over items within a task, BH across tasks);
7. optional emergence analysis over checkpoints (:mod:`stats.emergence`).

Rows that cannot be computed are kept with NaN and a ``note`` saying why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import contrasts, corrections, effects, robustness
from .drops import ABILITIES, Columns, DropTables, normalised_drops, specific_units, unit_table
from .emergence import EmergenceResult

GROUP = ["step", "operator", "condition", "head_set"]


@dataclass
class SignificanceResult:
    """Results object: tidy frames plus a readable summary and writers.

    Attributes:
        table: one row per (step, operator, tested head set): drops, contrast, CIs, p-values, notes.
        breakdown: exploratory per-task IUT with BH-adjusted p (``p_bh``) per (step, operator, set).
        robustness: mixed-model contrasts per (operator, tested head set), with captured warnings.
        drops: the :class:`stats.drops.DropTables` (items, normalisers/exclusions, raw metrics).
        units: per-task units with specific drops.
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

    def summary(self) -> str:
        """One plain-language paragraph generated from the numbers."""
        from .tables import summary_paragraph
        return summary_paragraph(self)

    def write(self, run_dir: str | Path) -> dict[str, Path]:
        """Write RUN/tables/{significance,emergence,...}.{csv,md,tex} and summary.md; returns paths."""
        from .tables import write_tables
        return write_tables(self, Path(run_dir) / "tables")


def _item_basis(items: pd.DataFrame) -> pd.DataFrame:
    """Item-level drops of tested sets with specific drops (``s_*``) against the random-set mean."""
    key = ["step", "operator", "condition", "control_index", "head_set", "k", "task", "shots", "item"]
    w = items.set_index(key + ["ability"])["drop"].unstack("ability").reindex(columns=list(ABILITIES))
    w.columns.name = None
    w = w.reset_index()
    rnd = w[w["condition"] == "random"]
    tested = w[w["condition"] != "random"].copy()
    if rnd.empty:
        for a in ABILITIES:
            tested[f"s_{a}"] = np.nan
        return tested
    rk = ["step", "operator", "k", "task", "shots", "item"]
    rm = rnd.groupby(rk, as_index=False)[list(ABILITIES)].mean().rename(columns={a: f"r_{a}" for a in ABILITIES})
    tested = tested.merge(rm, on=rk, how="left")
    for a in ABILITIES:
        tested[f"s_{a}"] = tested[a] - tested[f"r_{a}"]
    return tested.drop(columns=[f"r_{a}" for a in ABILITIES])


def analyze(results: pd.DataFrame, *, cols: Columns = Columns(), min_gap: dict[str, float] | None = None,
            basis: str = "auto", preregistered_steps: list[int] | None = None, alpha: float = 0.05,
            max_exact: int = contrasts.DEFAULT_MAX_EXACT, n_resamples: int = contrasts.DEFAULT_RESAMPLES,
            n_boot: int = 2000, p_resolution: float | None = None, wilcoxon: bool = True,
            mixed_model: bool = True, breakdown: bool = True, emergence_curves: pd.DataFrame | None = None,
            emergence_pairs: list[tuple[str, str]] | None = None, seed: int = 0) -> SignificanceResult:
    """Run the whole statistical analysis of an ablation results table.

    Args:
        results: tidy results table (input contract in :mod:`stats.drops`).
        cols: column-name mapping.
        min_gap: pre-registered "ability present" thresholds on clean - floor, per ability.
        basis: "specific" (tested - random mean), "target" (tested set's own drops) or "auto"
            (specific when matched random sets exist, else target).
        preregistered_steps: steps in the Holm family; None = all steps. Other steps are exploratory
            and get BH-adjusted p (``p_bh``) instead.
        alpha: level used for decisions in the summary and p-resolution checks.
        max_exact, n_resamples: exact enumeration up to 2^n <= max_exact, else Monte Carlo.
        n_boot: task-then-item bootstrap replicates (0 = no CI).
        p_resolution: smallest p the random-head comparison must be able to reach (default alpha);
            if 1/(R+1) exceeds it, ``p_random`` is NaN with a reason.
        wilcoxon, mixed_model, breakdown: switch the robustness/exploratory parts.
        emergence_curves: long (step, tokens_seen, curve, value) curves for the emergence analysis.
        seed: seed for Monte Carlo tests and bootstraps.

    Returns:
        SignificanceResult.
    """
    if basis not in ("auto", "specific", "target"):
        raise ValueError(f"stats.analyze: basis must be 'auto', 'specific' or 'target', got {basis!r}.")
    res_p = alpha if p_resolution is None else p_resolution
    dt = normalised_drops(results, cols, min_gap)
    units = unit_table(dt.raw, dt.normalisers)
    tested = specific_units(units)
    if tested.empty:
        raise ValueError("stats.analyze: no tested head set (only clean and random rows). Include condition 'target'.")
    rnd = units[units["condition"] == "random"]
    # null statistics of the random sets (raw drops): T_r = min(mean(PD-LR), mean(PD-FC))
    rv = rnd[rnd["valid"]].assign(d1=lambda d: d["pd"] - d["lr"], d2=lambda d: d["pd"] - d["fc"])
    null = rv.groupby(["step", "operator", "k", "control_index"]).agg(d1=("d1", "mean"), d2=("d2", "mean"))
    null = np.minimum(null["d1"], null["d2"]).rename("T").reset_index()
    null_groups = {k: g["T"].to_numpy() for k, g in null.groupby(["step", "operator", "k"])}

    tested = tested.sort_values(GROUP + ["task"]).reset_index(drop=True)
    col = {c: tested[c].to_numpy() for c in ["lr", "fc", "pd", "s_lr", "s_fc", "s_pd", "valid", "R", "k",
                                             "tokens_seen", "lr_source", "reason", "task"]}
    for c in ["lr", "fc", "pd", "s_lr", "s_fc", "s_pd"]:
        col[c] = col[c].astype(float)
    rows, arrays = [], []
    for key, pos in tested.groupby(GROUP, sort=True).indices.items():
        step, op, cond, hs = key
        R = int(col["R"][pos].max())
        k = int(col["k"][pos[0]])
        b = basis if basis != "auto" else ("specific" if R > 0 else "target")
        notes = []
        if b == "specific" and R == 0:
            notes.append("basis 'specific' requested but no matched random sets: used target drops")
            b = "target"
        cols_b = [f"s_{a}" if b == "specific" else a for a in ABILITIES]
        ok = col["valid"][pos].astype(bool) & np.all([np.isfinite(col[c][pos]) for c in cols_b], axis=0)
        vpos, dpos = pos[ok], pos[~ok]
        if len(dpos):
            why = {}
            for j in dpos:
                for a, cb in zip(ABILITIES, cols_b):
                    if not np.isfinite(col[cb][j]):
                        tag = (f"{a.upper()} absent (clean - floor below the pre-registered threshold)"
                               if a.upper() + " absent" in col["reason"][j]
                               else f"{a.upper()} not measured" if np.isnan(col[a][j])
                               else f"{a.upper()} lacks a matched random set")
                        why[tag] = why.get(tag, 0) + 1
            notes.append(f"{len(dpos)} of {len(pos)} task(s) excluded: "
                         + ", ".join(f"{t} in {v}" for t, v in why.items()) + " (details: exclusions.csv)")
        lr_b, fc_b, pd_b = (col[c][vpos] for c in cols_b)
        nv = len(vpos)
        mean = (lambda c: float(np.mean(col[c][vpos])) if nv else np.nan)
        row = {"step": step, "tokens_seen": col["tokens_seen"][pos[0]], "operator": op, "condition": cond,
               "head_set": hs, "k": k, "basis": b, "n_tasks": nv, "R": R,
               "lr_source": ",".join(sorted(set(col["lr_source"][vpos]))),
               "d_lr": mean("lr"), "d_fc": mean("fc"), "d_pd": mean("pd"),
               "s_lr": mean("s_lr"), "s_fc": mean("s_fc"), "s_pd": mean("s_pd")}
        c = effects.composite(pd_b, lr_b, fc_b)
        row["contrast"] = float(np.mean(c)) if c.size else np.nan
        row["d_z"], why = effects.d_z(c)
        if why and nv:
            notes.append(why)
        row["cliffs_delta"], _ = effects.cliffs_delta(pd_b, (lr_b + fc_b) / 2)
        # empirical p against random sets (statistic on the tested set's own drops)
        nul = null_groups.get((step, op, k), np.empty(0))
        obs = contrasts.iut_statistic(col["pd"][vpos], col["lr"][vpos], col["fc"][vpos]) if nv else np.nan
        row["T_obs"] = float(obs)
        try:
            if not nv:
                raise ValueError("p (random heads): no usable tasks")
            row["p_random"] = contrasts.empirical_p(obs, nul, min_resolution=res_p)
        except ValueError as exc:
            row["p_random"] = np.nan
            notes.append(str(exc).replace("stats.contrasts.empirical_p: ", "p (random heads): "))
        if nv < 2:
            notes.append(f"IUT not run: {nv} usable task(s); a sign-flip test over tasks needs >= 2")
        elif 2.0 ** -nv > alpha:
            notes.append(f"with {nv} tasks the smallest attainable p is {2.0 ** -nv:.3f} > alpha")
        rows.append(row)
        arrays.append((pd_b, lr_b, fc_b, notes, vpos))

    table = pd.DataFrame(rows)
    n = len(table)
    for c in ("p_pd_lr", "p_pd_fc", "p_iut", "contrast_ci_low", "contrast_ci_high", "p_wilcoxon"):
        table[c] = np.nan
    table["p_method"] = ""
    # vectorised IUT: batch groups with the same number of tasks
    sizes = np.array([a[0].size for a in arrays])
    for m in np.unique(sizes[sizes >= 2]):
        ix = np.nonzero(sizes == m)[0]
        P = np.stack([arrays[i][0] for i in ix])
        L = np.stack([arrays[i][1] for i in ix])
        F = np.stack([arrays[i][2] for i in ix])
        r = contrasts.iut_test(P, L, F, max_exact=max_exact, n_resamples=n_resamples, seed=seed)
        table.loc[ix, "p_pd_lr"] = np.atleast_1d(r.p_lr)
        table.loc[ix, "p_pd_fc"] = np.atleast_1d(r.p_fc)
        table.loc[ix, "p_iut"] = np.atleast_1d(r.pvalue)
        table.loc[ix, "p_method"] = "exact" if r.exact else f"Monte Carlo ({n_resamples})"

    item_b = _item_basis(dt.items) if (n_boot or mixed_model or breakdown) else None
    brows = []
    for i in range(n):
        pd_b, lr_b, fc_b, notes, valid = arrays[i]
        row = table.iloc[i]
        if wilcoxon and pd_b.size >= 2:
            w = robustness.wilcoxon_iut(pd_b, lr_b, fc_b)
            table.loc[i, "p_wilcoxon"] = w.pvalue
            if w.reason:
                notes.append(w.reason)
        if item_b is not None and (n_boot or breakdown) and len(valid):
            key = (item_b["step"] == row["step"]) & (item_b["operator"] == row["operator"]) & \
                  (item_b["condition"] == row["condition"]) & (item_b["head_set"] == row["head_set"])
            ib = item_b[key]
            cb = [f"s_{a}" if row["basis"] == "specific" else a for a in ABILITIES]
            tasks = list(col["task"][valid])
            from_docs = col["lr_source"][valid] == "lr_docs"
            docs = ib.loc[ib["task"] == "lr_docs", cb[0]].to_numpy(float)
            per_task = [ib.loc[ib["task"] == t, cb].to_numpy(float) for t in tasks]
            if n_boot:
                boot = effects.hierarchical_bootstrap(per_task, lr_docs=docs if docs.size else None,
                                                      lr_from_docs=from_docs, n_boot=n_boot, seed=seed + i)
                table.loc[i, ["contrast_ci_low", "contrast_ci_high"]] = effects.percentile_ci(boot)
            if breakdown:
                lr_const = float(np.nanmean(docs)) if docs.size else np.nan
                bp = []
                for t, x, fd in zip(tasks, per_task, from_docs):
                    lr_i = np.full(len(x), lr_const) if fd else x[:, 0]
                    ok = np.isfinite(x[:, 1]) & np.isfinite(x[:, 2]) & np.isfinite(lr_i)
                    br = {"step": row["step"], "operator": row["operator"], "condition": row["condition"],
                          "head_set": row["head_set"], "task": t, "n_items": int(ok.sum()),
                          "pd_minus_lr": np.mean(x[ok, 2] - lr_i[ok]) if ok.any() else np.nan,
                          "pd_minus_fc": np.mean(x[ok, 2] - x[ok, 1]) if ok.any() else np.nan,
                          "p_iut": np.nan, "note": ""}
                    if ok.sum() >= 2:
                        r = contrasts.iut_test(x[ok, 2], lr_i[ok], x[ok, 1], max_exact=max_exact,
                                               n_resamples=min(n_resamples, 1999), seed=seed)
                        br["p_iut"] = r.pvalue
                    else:
                        br["note"] = f"{int(ok.sum())} usable item(s), need >= 2"
                    bp.append(br)
                padj = corrections.bh([b["p_iut"] for b in bp], alpha)
                for b, p in zip(bp, padj):
                    b["p_bh"] = p
                brows += bp
    table["note"] = ["; ".join(dict.fromkeys(a[3])) for a in arrays]

    # multiplicity: Holm across pre-registered steps, BH across exploratory steps, per (operator, set)
    prereg = table["step"].isin(preregistered_steps) if preregistered_steps is not None else pd.Series(True, index=table.index)
    table["preregistered"] = prereg.to_numpy()
    table["p_holm"] = np.nan
    table["p_bh"] = np.nan
    for _, g in table.groupby(["operator", "condition"]):
        pr = g.index[g["preregistered"]]
        ex = g.index[~g["preregistered"]]
        if len(pr):
            table.loc[pr, "p_holm"] = corrections.holm(table.loc[pr, "p_iut"], alpha)
        if len(ex):
            table.loc[ex, "p_bh"] = corrections.bh(table.loc[ex, "p_iut"], alpha)

    rob = []
    if mixed_model and item_b is not None:
        for (op, cond), g in item_b.groupby(["operator", "condition"]):
            bcol = "s" if table.loc[(table["operator"] == op) & (table["condition"] == cond), "basis"].eq("specific").all() else ""
            long = g.melt(id_vars=["step", "task", "shots", "item"],
                          value_vars=[f"{bcol}_{a}" if bcol else a for a in ABILITIES],
                          var_name="ability", value_name="y")
            long["ability"] = long["ability"].str.replace("s_", "", regex=False)
            long["item"] = long["item"].astype(str) + "/" + long["shots"].astype(str)
            mm = robustness.mixed_model(long, value="y")
            rob.append({"operator": op, "condition": cond, "basis": "specific" if bcol else "target",
                        "n_obs": mm.n_obs, "pd_minus_lr": mm.pd_minus_lr, "se_pd_minus_lr": mm.se_pd_minus_lr,
                        "p_pd_minus_lr": mm.p_pd_minus_lr, "pd_minus_fc": mm.pd_minus_fc,
                        "se_pd_minus_fc": mm.se_pd_minus_fc, "p_pd_minus_fc": mm.p_pd_minus_fc,
                        "p_iut": mm.p_iut, "converged": mm.converged,
                        "variance_components": "; ".join(f"{k}={v:.3g}" for k, v in mm.variance_components.items()),
                        "warnings": " | ".join(dict.fromkeys(mm.warnings)), "note": mm.reason})
    emer = None
    if emergence_curves is not None:
        from .emergence import emergence_analysis
        emer = emergence_analysis(emergence_curves, pairs=emergence_pairs, seed=seed)
    settings = {"basis": basis, "alpha": alpha, "min_gap": dt.normalisers.groupby("ability")["threshold"].first().to_dict(),
                "preregistered_steps": preregistered_steps, "max_exact": max_exact, "n_resamples": n_resamples,
                "n_boot": n_boot, "p_resolution": res_p, "seed": seed}
    order = ["step", "tokens_seen", "operator", "condition", "head_set", "k", "basis", "n_tasks", "R", "lr_source",
             "d_pd", "d_lr", "d_fc", "s_pd", "s_lr", "s_fc", "contrast", "contrast_ci_low", "contrast_ci_high",
             "d_z", "cliffs_delta", "p_pd_lr", "p_pd_fc", "p_iut", "p_method", "preregistered", "p_holm", "p_bh",
             "T_obs", "p_random", "p_wilcoxon", "note"]
    return SignificanceResult(table=table[order], breakdown=pd.DataFrame(brows), robustness=pd.DataFrame(rob),
                              drops=dt, units=tested, emergence=emer, settings=settings)


def run_stats(run_dir: str | Path, **kwargs) -> SignificanceResult:
    """Read RUN/results.parquet (+ head_scores / icl_summary / patching if present), analyse, write RUN/tables/.

    Emergence curves: ``icl_summary.parquet`` if present, else the clean model's ability gaps
    (clean - floor) from the results; plus ``head_scores.parquet`` restricted to the target heads.
    Pairs compared: every head-score curve with every ability curve (or ability pairs when no head
    scores exist).

    Raises:
        FileNotFoundError: no RUN/results.parquet.
    """
    from .emergence import curves_from_normalisers, curves_from_table

    run = Path(run_dir)
    path = run / "results.parquet"
    if not path.exists():
        raise FileNotFoundError(f"stats.run_stats: {path} not found. Run the experiment first "
                                "(`ablate run SPEC`) or point at the run folder that holds results.parquet.")
    results = pd.read_parquet(path)
    cols = kwargs.get("cols", Columns())
    dt = normalised_drops(results, cols, kwargs.get("min_gap"))
    tokens = results.groupby(cols.step)[cols.tokens_seen].first() if cols.tokens_seen in results else None
    if (run / "icl_summary.parquet").exists():
        abil = curves_from_table(pd.read_parquet(run / "icl_summary.parquet"), prefix="ICL:", tokens=tokens)
    else:
        abil = curves_from_normalisers(dt.normalisers, tokens)
    curves, pairs = abil, None
    if (run / "head_scores.parquet").exists():
        tgt = results.loc[results[cols.condition] == "target", cols.head_set] if cols.head_set in results else pd.Series([], dtype=str)
        heads = {h.strip() for s in tgt.dropna().unique() for h in str(s).split(",") if h.strip()}
        hs = curves_from_table(pd.read_parquet(run / "head_scores.parquet"), prefix="heads:", heads=heads or None,
                               tokens=tokens)
        curves = pd.concat([abil, hs], ignore_index=True)
        pairs = [(h, a) for h in sorted(hs["curve"].unique()) for a in sorted(abil["curve"].unique())]
    if curves["step"].nunique() < 5:
        curves = None  # too few checkpoints: emergence is skipped and said so in the summary
    kwargs.setdefault("emergence_curves", curves)
    kwargs.setdefault("emergence_pairs", pairs)
    out = analyze(results, **kwargs)
    if (run / "patching.parquet").exists():
        from .patching import analyze_patching

        out.patching = analyze_patching(pd.read_parquet(run / "patching.parquet"),
                                        n_boot=kwargs.get("n_boot", 2000), seed=kwargs.get("seed", 0))
    out.write(run)
    return out
