"""APA-style significance and emergence tables (CSV / Markdown / LaTeX) and the summary paragraph.

APA number style: p without a leading zero and three decimals (``.006``), ``< .001`` below .001,
``> .999`` above .999; other statistics with two decimals and a leading zero; CIs in brackets
(``0.31 [0.12, 0.50]``). Cells that could not be computed read ``n/a`` and the row's note says why.
LaTeX goes through :meth:`pandas.io.formats.style.Styler.to_latex` with ``hrules=True`` (booktabs
rules: \\toprule, \\midrule, \\bottomrule; needs ``\\usepackage{booktabs}``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

NA = "n/a"


def fmt_p(p: float) -> str:
    """APA p-value cell: ``.006``, ``< .001``, ``> .999``; NaN -> ``n/a``."""
    if p is None or not np.isfinite(p):
        return NA
    if p < 0.001:
        return "< .001"
    if p > 0.999:
        return "> .999"
    return f"{p:.3f}".lstrip("0")


def p_phrase(p: float) -> str:
    """APA p in running text: ``p = .006`` / ``p < .001``."""
    s = fmt_p(p)
    return "p " + (s if s[0] in "<>" else "= " + s) if s != NA else "p n/a"


def fmt_num(x: float, digits: int = 2) -> str:
    """Number with a leading zero and ``digits`` decimals; NaN -> ``n/a``."""
    if x is None or not np.isfinite(x):
        return NA
    s = f"{x:.{digits}f}"
    return "0." + "0" * digits if s in ("-0." + "0" * digits,) else s


def fmt_ci(est: float, lo: float, hi: float, digits: int = 2) -> str:
    """``est [lo, hi]`` (the bracket part omitted when the CI is missing)."""
    if not np.isfinite(lo) or not np.isfinite(hi):
        return fmt_num(est, digits)
    return f"{fmt_num(est, digits)} [{fmt_num(lo, digits)}, {fmt_num(hi, digits)}]"


def significance_display(table: pd.DataFrame) -> pd.DataFrame:
    """The significance table in APA style with the issue's column names."""
    rows = []
    for r in table.itertuples(index=False):
        holm = fmt_p(r.p_holm) if r.preregistered else (fmt_p(r.p_bh) + " (BH)" if np.isfinite(r.p_bh) else NA)
        rows.append({
            "checkpoint": str(r.step),
            "heads (k)": f"{r.condition} ({r.k})",
            "operator": r.operator,
            "dPD": fmt_num(r.d_pd), "dLR": fmt_num(r.d_lr), "dFC": fmt_num(r.d_fc),
            "specific contrast [95% CI]": fmt_ci(r.contrast, r.contrast_ci_low, r.contrast_ci_high)
            + ("" if r.basis == "specific" else " (target)"),
            "d_z": fmt_num(r.d_z),
            "p (IUT)": fmt_p(r.p_iut),
            "p (Holm)": holm,
            "p (random heads, R)": f"{fmt_p(r.p_random)} ({int(r.R_null) if np.isfinite(r.R_null) else 0})",
            "tasks (queries)": f"{int(r.n_tasks) if np.isfinite(r.n_tasks) else 0} ({int(r.n_queries) if np.isfinite(r.n_queries) else 0})",
            "doc. LR drop (secondary)": fmt_num(r.doc_lr_drop),
            "note": r.note,
        })
    return pd.DataFrame(rows)


def emergence_display(curves: pd.DataFrame, pairs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """APA-style order-of-emergence table (one row per curve) and per-pair table.

    The curve table is :func:`stats.emergence.emergence_order`: rises first by midpoint, then
    falls, then "not emerged" / "steady trend"; the null band (range of the curve's null over
    checkpoints) beside each curve; the model comparison that decided it.
    """
    from .emergence import emergence_order

    o = emergence_order(curves)
    cur = curves.set_index("curve") if len(curves) else curves
    c = pd.DataFrame({
        "order": o["order"], "curve": o["curve"], "emergence": o["emergence"],
        "midpoint, log10 tokens [95% CI]": [fmt_ci(m, lo, hi) if np.isfinite(m) else "not emerged"
                                            for m, lo, hi in zip(o["midpoint_log10_tokens"], o["ci_low"], o["ci_high"])],
        "best model (AICc)": o["best_model"],
        "null band": [f"[{fmt_num(lo)}, {fmt_num(hi)}]" if np.isfinite(lo) else "" for lo, hi in
                      zip(o["null_low"], o["null_high"])],
        "change point, log10 tokens": [fmt_num(cur.loc[k, "change_point_log10_tokens"]) if k in cur.index else NA
                                       for k in o["curve"]],
        "checkpoints": [int(cur.loc[k, "n"]) if k in cur.index else 0 for k in o["curve"]],
        "note": [cur.loc[k, "note"] if k in cur.index else "" for k in o["curve"]]})
    if pairs is None or pairs.empty:
        return c, pd.DataFrame()
    p = pd.DataFrame({
        "curve A": pairs["curve_a"], "curve B": pairs["curve_b"], "rises first": pairs["rises_first"],
        "lead B - A, log10 tokens [95% CI]": [fmt_ci(v, lo, hi) for v, lo, hi in
                                              zip(pairs["lead"], pairs["lead_ci_low"], pairs["lead_ci_high"])],
        "r, first differences [95% CI]": [fmt_ci(v, lo, hi) for v, lo, hi in
                                          zip(pairs["r_diff"], pairs["r_diff_ci_low"], pairs["r_diff_ci_high"])],
        "r, detrended [95% CI]": [fmt_ci(v, lo, hi) for v, lo, hi in
                                  zip(pairs["r_detrended"], pairs["r_detrended_ci_low"], pairs["r_detrended_ci_high"])],
        "Granger p A to B (exploratory)": [fmt_p(v) for v in pairs["granger_p_a_to_b"]],
        "Granger p B to A (exploratory)": [fmt_p(v) for v in pairs["granger_p_b_to_a"]],
        "note": pairs["note"]})
    return c, p


def to_markdown(df: pd.DataFrame) -> str:
    """GitHub-flavoured Markdown table (pipes in cells escaped)."""
    if df.empty:
        return "(no rows)\n"
    cells = df.astype(object).apply(lambda s: s.map(lambda v: str(v).replace("|", "\\|")))
    head = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(r) + " |" for r in cells.to_numpy()]
    return "\n".join([head, sep, *body]) + "\n"


def to_latex(df: pd.DataFrame, caption: str | None = None, label: str | None = None) -> str:
    """LaTeX tabular through pandas Styler with booktabs rules (``hrules=True``), cells escaped."""
    if df.empty:
        return "% (no rows)\n"
    sty = df.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    return sty.to_latex(hrules=True, caption=caption, label=label, column_format="l" * df.shape[1])


def _write_three(df: pd.DataFrame, base: Path, caption: str, notes: list[str] | None = None,
                 extra_md: str = "", extra_tex: str = "") -> list[Path]:
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = [base.with_suffix(".csv"), base.with_suffix(".md"), base.with_suffix(".tex")]
    df.to_csv(paths[0], index=False)
    md = f"**{caption}**\n\n" + to_markdown(df.drop(columns=["note"], errors="ignore"))
    if notes:
        md += "\nNotes:\n" + "".join(f"- {n}\n" for n in notes if n)
    paths[1].write_text(md + extra_md)
    paths[2].write_text(to_latex(df.drop(columns=["note"], errors="ignore"), caption=caption) + extra_tex)
    return paths


def write_tables(result, out_dir: Path) -> dict[str, Path]:
    """Write every table of a SignificanceResult into ``out_dir``; returns name -> path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    disp = significance_display(result.table)
    notes = [f"checkpoint {s}, {c}/{o}: {n}" for s, c, o, n in
             zip(result.table["step"], result.table["condition"], result.table["operator"], result.table["note"]) if n]
    notes.append("dPD/dLR/dFC: mean normalised drop (clean - ablated)/(clean - floor) of the tested heads over tasks, "
                 "all three measured on the same prompts (LR inside the prompt: answer loss of the first minus the last "
                 "demonstrations). Zero-shot prompts are the FC floor and enter no drop. "
                 "Specific contrast: S_PD - (S_LR + S_FC)/2 of drops minus the mean of the R matched random head sets "
                 "with data ('(target)' = no random sets: own drops); 95% CI: bootstrap over tasks, then queries. "
                 "p (IUT) = max of one-sided sign-flip tests over tasks PD > LR, PD > FC. "
                 "p (Holm): across pre-registered checkpoints (absent or untestable ones count as p = 1); "
                 "'(BH)': Benjamini-Hochberg for exploratory ones. Doc. LR drop: document-level LR (held-out text), "
                 "a secondary measure that enters no test.")
    nt = result.drops.normalisers
    if len(nt):
        near = nt[nt["near_threshold"].astype(bool)]
        if len(near):
            notes.append(f"{len(near)} task x checkpoint x ability cell(s) are present but near the threshold "
                         "(clean - floor < 2 x min_gap): " + ", ".join(
                             f"{r.ability.upper()} {r.task} step {r.step} ({r.gap:.3f})" for r in near.head(8).itertuples())
                         + (" ..." if len(near) > 8 else "") + " (exclusions.csv)")
    for p in _write_three(disp, out_dir / "significance", "Does ablation hurt pattern discovery more than loss "
                          "reduction and format compliance?", notes):
        written[p.name] = p
    result.table.to_csv(out_dir / "significance_tidy.csv", index=False)
    written["significance_tidy.csv"] = out_dir / "significance_tidy.csv"
    for name, df in (("breakdown_exploratory", result.breakdown), ("robustness", result.robustness),
                     ("exclusions", result.drops.normalisers), ("drops_raw", result.drops.raw),
                     ("item_counts", result.drops.counts), ("document_lr", getattr(result, "documents", pd.DataFrame()))):
        df.to_csv(out_dir / f"{name}.csv", index=False)
        written[f"{name}.csv"] = out_dir / f"{name}.csv"
    if result.emergence is not None:
        c, p = emergence_display(result.emergence.curves, result.emergence.pairs)
        md_pairs = "\n**Curve pairs (correlations on first differences / detrended residuals; Granger exploratory)**\n\n" \
                   + to_markdown(p.drop(columns=["note"], errors="ignore")) if not p.empty else ""
        tex_pairs = "\n" + to_latex(p.drop(columns=["note"], errors="ignore"), caption="Curve pairs") if not p.empty else ""
        cnotes = [f"{a}: {n}" for a, n in zip(c["curve"], c["note"]) if n]
        for path in _write_three(c, out_dir / "emergence", "Order of emergence (sigmoid midpoints where a sigmoid "
                                 "beats a constant and a line in log tokens)",
                                 cnotes, md_pairs, tex_pairs):
            written[path.name] = path
        result.emergence.curves.to_csv(out_dir / "emergence_tidy.csv", index=False)
        result.emergence.pairs.to_csv(out_dir / "emergence_pairs.csv", index=False)
        written["emergence_pairs.csv"] = out_dir / "emergence_pairs.csv"
    pt = getattr(result, "patching", None)
    if pt is not None:
        disp = patching_display(pt.table)
        pnotes = [f"checkpoint {s}, {c}: {n}" for s, c, n in
                  zip(pt.table.get("step", []), pt.table.get("condition", []), pt.table.get("note", [])) if n]
        pnotes.append(f"Restoration = mean over tasks of mean_i(patched - corrupted) / mean_i(clean - corrupted) "
                      f"on {pt.metric}; corrupted = shuffled-label prompt, patched = the set's heads given their "
                      f"clean-prompt outputs at the query token. Specific = set - mean of R matched random sets. "
                      f"Tasks whose clean - corrupted gap is below {pt.min_gap:g} are excluded. p (sign-flip): "
                      f"one-sided over tasks, specific > 0; p (Holm) across checkpoints; p (random): empirical.")
        for path in _write_three(disp, out_dir / "patching", "Does patching the heads' clean outputs restore the "
                                 "label mapping that shuffling destroyed?", pnotes):
            written[path.name] = path
        pt.table.to_csv(out_dir / "patching_tidy.csv", index=False)
        pt.units.to_csv(out_dir / "patching_units.csv", index=False)
        written["patching_tidy.csv"] = out_dir / "patching_tidy.csv"
    pa = getattr(result, "paths", None)
    if pa is not None and len(pa):
        disp = paths_display(pa)
        notes = ["Drop = -(intervened - clean) of the gold label's first distinguishing token at the query "
                 "(log-prob or logit, as the spec says), mean over a task's items, then over tasks; 95% CI: "
                 "bootstrap over tasks, then items. Groups sum the paths of one kind (direct; every later MLP; "
                 "later heads' queries, keys, values); nonlinear = total - sum of paths. Share = drop / total "
                 "drop (n/a when the total drop is below 0.05). Specific = set - mean of the R matched random "
                 "sets; p (random): empirical against them; p (sign-flip): over tasks, specific > 0. "
                 "Exploratory: not corrected across paths."]
        for path in _write_three(disp, out_dir / "paths", "Through which paths does each head set's output "
                                 "reach the label?", notes):
            written[path.name] = path
        pa.to_csv(out_dir / "paths_tidy.csv", index=False)
        written["paths_tidy.csv"] = out_dir / "paths_tidy.csv"
    (out_dir / "summary.md").write_text(result.summary() + "\n")
    written["summary.md"] = out_dir / "summary.md"
    return written


def patching_display(table: pd.DataFrame) -> pd.DataFrame:
    """APA-style display of :attr:`stats.patching.PatchingResult.table`."""
    if table.empty:
        return pd.DataFrame(columns=["Checkpoint", "Set", "Heads", "Tasks", "R", "Restoration", "Random sets",
                                     "Specific [95% CI]", "p (sign-flip)", "p (Holm)", "p (random)", "note"])
    return pd.DataFrame({
        "Checkpoint": table["step"], "Set": table["condition"], "Heads": table["head_set"],
        "Tasks": table["n_tasks"], "R": table["R"],
        "Restoration": [fmt_num(x) for x in table["restoration"]],
        "Random sets": [fmt_num(x) for x in table["random_restoration"]],
        "Specific [95% CI]": [fmt_ci(a, b, c) for a, b, c in zip(table["specific"], table["ci_low"], table["ci_high"])],
        "p (sign-flip)": [fmt_p(p) for p in table["p_signflip"]],
        "p (Holm)": [fmt_p(p) for p in table["p_holm"]],
        "p (random)": [fmt_p(p) for p in table["p_random"]],
        "note": table["note"],
    })


def summary_paragraph(result) -> str:
    """A plain-language paragraph generated from the numbers of a SignificanceResult."""
    t = result.table
    alpha = result.settings.get("alpha", 0.05)
    parts = []
    for (op, cond), g in t.groupby(["operator", "condition"], sort=True):
        pre = g[g["preregistered"]]
        tested = pre[np.isfinite(pre["p_iut"])]
        sig = tested[tested["p_holm"] < alpha]
        s = (f"Ablating the {cond} heads (k = {int(g['k'].iloc[0])}) with {op} ablation, pattern discovery dropped "
             f"more than both loss reduction and format compliance at {len(sig)} of {len(tested)} pre-registered "
             f"checkpoints (intersection-union sign-flip test over tasks, Holm-corrected, alpha = {alpha:g})")
        if len(sig):
            best = sig.loc[sig["contrast"].idxmax()]
            s += (f"; the largest {'specific ' if best['basis'] == 'specific' else ''}contrast was at step {best['step']} "
                  f"({fmt_ci(best['contrast'], best['contrast_ci_low'], best['contrast_ci_high'])}, d_z = "
                  f"{fmt_num(best['d_z'])}, {p_phrase(best['p_holm'])} Holm")
            if np.isfinite(best["p_random"]):
                s += f"; against {int(best['R'])} random head sets {p_phrase(best['p_random'])}"
            s += ")"
        elif len(tested):
            best = tested.loc[tested["p_iut"].idxmin()]
            s += (f"; the strongest evidence was at step {best['step']} (contrast "
                  f"{fmt_ci(best['contrast'], best['contrast_ci_low'], best['contrast_ci_high'])}, "
                  f"{p_phrase(best['p_iut'])} uncorrected)")
        untested = len(pre) - len(tested)
        if untested:
            s += f"; {untested} checkpoint(s) could not be tested (see notes)"
        parts.append(s + ".")
    ex = result.drops.normalisers
    n_ex = int(ex["excluded"].sum())
    if n_ex:
        parts.append(f"By the pre-registered rule, {n_ex} task x checkpoint x ability cell(s) were excluded because "
                     f"the ability was absent (clean not reliably above its floor by the presence test, or clean - "
                     f"floor below the minimum gap).")
    cnt = result.drops.counts
    if cnt is not None and len(cnt):
        left = {c: int(cnt[c].sum()) for c in cnt.columns
                if c not in ("step", "task", "condition", "operator", "rows", "analysed") and cnt[c].sum() > 0}
        if left:
            parts.append(f"Of {int(cnt['rows'].sum())} prompt rows, {int(cnt['analysed'].sum())} entered the drops; left out: "
                         + ", ".join(f"{v} {k}" for k, v in left.items()) + " (item_counts.csv).")
    rob = result.robustness
    if rob is not None and not rob.empty:
        bad = rob[~rob["converged"].astype(bool) | (rob["warnings"] != "")]
        parts.append("The crossed mixed model (task, query, checkpoint) gave PD - LR = "
                     + ", ".join(f"{fmt_num(r.pd_minus_lr)} and PD - FC = {fmt_num(r.pd_minus_fc)} for {r.condition}/{r.operator}"
                                 for r in rob.itertuples())
                     + (f"; {len(bad)} fit(s) raised convergence warnings, reported in robustness.csv." if len(bad) else "."))
    em = result.emergence
    if em is not None and not em.curves.empty:
        from .emergence import emergence_order
        o = emergence_order(em.curves)
        rises = o[o["emergence"] == "rises at"]
        falls = o[o["emergence"] == "falls at"]
        s_ = (f"Of {len(o)} curves, {len(rises)} rose with a dated midpoint"
              + (f" (first: {rises.iloc[0]['curve']} at {fmt_num(rises.iloc[0]['midpoint_log10_tokens'])} log10 tokens)"
                 if len(rises) else "")
              + (f", {len(falls)} fell" if len(falls) else "")
              + f" and {len(o) - len(rises) - len(falls)} did not emerge; the order is in the emergence table.")
        parts.append(s_)
    pt = getattr(result, "patching", None)
    if pt is not None:
        parts.append(pt.summary())
    return " ".join(parts)


def paths_display(table: pd.DataFrame) -> pd.DataFrame:
    """Display of :func:`stats.paths.analyze_paths`."""
    return pd.DataFrame({
        "Checkpoint": table["step"], "Set": table["condition"], "Heads": table["head_set"], "Path": table["group"],
        "Tasks": table["n_tasks"], "R": table["R"],
        "Drop [95% CI]": [fmt_ci(a, b, c) for a, b, c in zip(table["drop"], table["ci_low"], table["ci_high"])],
        "Share": [fmt_num(x) for x in table["share"]],
        "Random sets": [fmt_num(x) for x in table["random_drop"]],
        "Specific": [fmt_num(x) for x in table["specific"]],
        "p (random)": [fmt_p(p) for p in table["p_random"]],
        "p (sign-flip)": [fmt_p(p) for p in table["p_signflip"]],
    })
