"""RUN/report.md and RUN/report.html for ``ablate demo``: figures, significance tables, and
plain-language findings generated from the numbers (present *and* absent phenomena)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: a phenomenon counts as present above these levels (same spirit as the stats' pre-registered gaps)
PM_PRESENT = 0.3          # prefix-matching score of the best head
LR_PRESENT = 0.05         # nats, early-window minus late-window loss
PD_ALPHA = 0.05           # one-sided exact binomial test of PD above chance
MIN_EVENTS = 10           # heads whose RI rests on fewer gated events are left out of the RI summary


def _read(p: Path) -> pd.DataFrame | None:
    return pd.read_parquet(p) if p.exists() else None


def _fmt(x, d=2):
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{d}f}"


def _series_facts(run: Path) -> list[str]:
    out = []
    hs = _read(run / "head_scores.parquet")
    if hs is not None and len(hs):
        pm = hs[hs["score"] == "prefix_matching"].groupby(["step", "tokens_seen"], dropna=False)["value"].max()
        cp = hs[hs["score"] == "copying"].groupby("step")["value"].max()
        if len(pm):
            steps = pm.index.get_level_values(0)
            first_present = [s for s, v in zip(steps, pm.values) if v >= PM_PRESENT]
            out.append(
                "**Prefix matching (induction).** Best head per checkpoint: "
                + ", ".join(f"step {s}: {v:.2f}" for s, v in zip(steps, pm.values))
                + (f". A head reaches >= {PM_PRESENT} from step {first_present[0]} on." if first_present
                   else f". **No head reaches {PM_PRESENT}**: no induction mechanism formed in this series.")
            )
        if len(cp):
            out.append("**Copying score.** Best head: " + ", ".join(f"step {s}: {v:.2f}" for s, v in cp.items()) + ".")
        last = hs["step"].max()
        # an RI resting on a handful of gated events is noise: count heads with >= MIN_EVENTS events
        ok = hs["n_events"] >= MIN_EVENTS
        ri = hs[(hs["score"] == "relation_index") & (hs["step"] == last) & (hs["direction"] == "forward") & ok]
        bl = hs[(hs["score"] == "baseline") & (hs["step"] == last) & (hs["direction"] == "forward") & ok]
        parts = []
        for rel, g in ri.groupby("relation"):
            if g["value"].isna().all() or not len(g):
                parts.append(f"{rel}: no head has enough gated (triplet, position) events, so RI is undefined")
                continue
            b = bl[bl["relation"] == rel]["value"]
            bmax = float(b.max()) if len(b) else float("nan")
            above = int((g["value"] > bmax).sum()) if np.isfinite(bmax) else 0
            top = g.sort_values("value", ascending=False).iloc[0]
            parts.append(f"{rel}: max RI {_fmt(float(top['value']))} (L{int(top['layer'])}H{int(top['head'])}) vs "
                         f"fake-tail baseline max {_fmt(bmax)}; {above} head(s) above the baseline max")
        if parts:
            out.append(f"**Relation index at step {last}** (forward direction; heads with >= {MIN_EVENTS} gated "
                       "events). " + "; ".join(parts) + ".")
    return out


def _icl_facts(run: Path, results: pd.DataFrame | None) -> list[str]:
    out = []
    if results is not None and len(results):
        lr = results[(results["task"] == "lr_docs") & (results["condition"] == "clean")]
        if len(lr):
            m = lr.groupby("step")["lr"].mean()
            present = [s for s, v in m.items() if v >= LR_PRESENT]
            out.append("**Loss reduction** (early-window minus late-window loss, nats, clean model): "
                       + ", ".join(f"step {s}: {v:.2f}" for s, v in m.items())
                       + (f". Present (>= {LR_PRESENT}) from step {present[0]}." if present
                          else f". **Below {LR_PRESENT} at every checkpoint measured.**"))
    items = _read(run / "icl_items.parquet")
    if items is None or not len(items):
        return out
    clean = items[(items["control"] == "clean") & (items["condition"] == "clean")]
    last = clean["step"].max()
    cl = clean[clean["step"] == last] if pd.notna(last) else clean
    fc = cl.groupby("shots")["fc"].mean()
    out.append(f"**Format compliance** at {'step ' + str(last) if pd.notna(last) else 'the model'} by shots "
               f"(all tasks): " + ", ".join(f"{s}: {v:.2f}" for s, v in fc.items())
               + (". It rises with shots." if fc.iloc[-1] > fc.iloc[0] + 0.05 else ". It does **not** rise with shots."))
    from scipy.stats import binomtest

    lines = []
    for kind, g in cl[cl["shots"] == cl["shots"].max()].groupby("kind"):
        k, n = int(g["pd"].sum()), len(g)
        chance = float(g["chance"].mean())
        p = binomtest(k, n, chance, alternative="greater").pvalue if n else float("nan")
        verdict = "above chance" if p < PD_ALPHA else "**not above chance**"
        lines.append(f"{kind}: {k}/{n} = {k / max(n, 1):.2f} vs chance {chance:.2f} (exact binomial p = {p:.3f}, {verdict})")
    out.append(f"**Pattern discovery** at {int(cl['shots'].max())} shots, {'step ' + str(last) if pd.notna(last) else ''}: "
               + "; ".join(lines) + ".")
    if clean["step"].nunique() > 1:
        byk = clean[clean["shots"] == clean["shots"].max()].groupby(["step", "kind"])[["pd", "chance"]].mean()
        byk["excess"] = byk["pd"] - byk["chance"]
        ex = byk["excess"].unstack("kind")
        out.append("PD minus chance at max shots, per checkpoint: "
                   + "; ".join(f"step {s}: " + ", ".join(f"{k} {v:+.2f}" for k, v in row.items()) for s, row in ex.iterrows()) + ".")
    return out


def _ri_by_checkpoint(run: Path) -> list[str]:
    """Per checkpoint and relation: the best head's RI vs the fake-tail baseline's maximum (forward
    direction, heads with >= MIN_EVENTS gated events), and the RI of the selected target heads."""
    hs = _read(run / "head_scores.parquet")
    if hs is None or not len(hs) or hs["step"].nunique() < 2:
        return []
    ok = (hs["direction"] == "forward") & (hs["n_events"] >= MIN_EVENTS)
    ri, bl = hs[(hs["score"] == "relation_index") & ok], hs[(hs["score"] == "baseline") & ok]
    rels = sorted(ri["relation"].dropna().unique())
    if not rels:
        return []
    sets = _read(run / "head_sets.parquet")
    target = {}
    if sets is not None and len(sets):
        for _, r in sets[sets["role"] == "target"].iterrows():
            target[int(r["step"])] = {h for h in str(r["head_set"]).split(",") if h}
    rows = []
    for step in sorted(hs["step"].unique()):
        row = [str(step)]
        for rel in rels:
            g = ri[(ri["step"] == step) & (ri["relation"] == rel)].dropna(subset=["value"])
            b = bl[(bl["step"] == step) & (bl["relation"] == rel)]["value"].dropna()
            if not len(g):
                row.append("n/a")
                continue
            bmax = float(b.max()) if len(b) else float("nan")
            top = g.sort_values("value", ascending=False).iloc[0]
            above = int((g["value"] > bmax).sum()) if np.isfinite(bmax) else 0
            sel = [f"L{int(r.layer)}H{int(r.head)} {r.value:.2f}" for r in g.itertuples()
                   if f"L{int(r.layer)}H{int(r.head)}" in target.get(int(step), set())]
            row.append(f"{top['value']:.2f} (L{int(top['layer'])}H{int(top['head'])}) vs {_fmt(bmax)}; {above} above"
                       + (f"; target {', '.join(sel)}" if sel else ""))
        rows.append(row)
    md = [f"**Relation index by checkpoint** (best head's RI vs the fake-tail baseline's maximum; forward direction, "
          f"heads with >= {MIN_EVENTS} gated events; 'above' = heads whose RI exceeds that maximum; 'target' = the "
          "ablated target heads' RI where they have enough events).", "",
          "| step | " + " | ".join(rels) + " |", "|---" * (len(rels) + 1) + "|"]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    return md + [""]


def _pd_by_checkpoint(run: Path) -> list[str]:
    """PD on the evaluation (held-out) words at the largest shot count, per checkpoint and task, with
    exact (Clopper-Pearson) 95% CIs and one-sided binomial p against chance (pattern and
    classification tasks)."""
    from scipy.stats import binomtest

    items = _read(run / "icl_items.parquet")
    if items is None or not len(items) or items["step"].nunique() < 2:
        return []
    clean = items[(items["control"] == "clean") & (items["condition"] == "clean")
                  & items["kind"].isin(["pattern", "classification"])]
    if not len(clean):
        return []
    top = clean[clean["shots"] == clean["shots"].max()]
    tasks = sorted(top["task"].unique(), key=lambda t: (not t.startswith("pd_"), t))
    rows = []
    for step, g in top.groupby("step"):
        row = [str(step)]
        for t in tasks:
            gt = g[g["task"] == t]
            k, n = int(gt["pd"].sum()), len(gt)
            if not n:
                row.append("")
                continue
            bt = binomtest(k, n, float(gt["chance"].mean()), alternative="greater")
            lo, hi = binomtest(k, n).proportion_ci(0.95, method="exact")
            star = " *" if bt.pvalue < 0.001 else ""
            row.append(f"{k}/{n} = {k / n:.2f} [{lo:.2f}, {hi:.2f}]{star}")
        rows.append(row)
    chance = top.groupby("task")["chance"].mean()
    md = [f"**Pattern discovery by checkpoint** ({int(top['shots'].max())} shots, clean prompts, the tasks' "
          "evaluation words, i.e. held-out words for the category tasks; greedy exact label; 95% exact binomial "
          "CI; * = one-sided binomial p < .001 against chance: " + ", ".join(f"{t} {chance[t]:.2f}" for t in tasks)
          + ").", "", "| step | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    return md + [""]


def _part(run: Path, title: str) -> list[str]:
    from stats.tables import to_markdown

    if not run.exists():
        return []
    md = [f"## {title}", ""]
    results = _read(run / "results.parquet")
    facts = _series_facts(run) + _icl_facts(run, results)
    md += [f"- {f}" for f in facts] + [""]
    md += _pd_by_checkpoint(run) + _ri_by_checkpoint(run)
    hsets = _read(run / "head_sets.parquet")
    if hsets is not None and len(hsets):
        t = hsets[hsets["role"] != "random"][["step", "role", "head_set", "rule"]]
        md += ["**Head sets ablated** (random sets: R matched in size and layer histogram):", "",
               to_markdown(t.astype(str)), ""]
    summ = run / "tables" / "summary.md"
    sig = run / "tables" / "significance.md"
    exc = run / "tables" / "exclusions.csv"
    if summ.exists():
        md += ["**What the significance table shows.** " + summ.read_text().strip(), ""]
    if exc.exists():
        e = pd.read_csv(exc)
        n = int(e["excluded"].sum()) if "excluded" in e else 0
        if n:
            ab = e[e["excluded"]].groupby("ability").size()
            md += ["**Excluded by the pre-registered rule (ability absent: clean - floor below threshold):** "
                   + ", ".join(f"{a.upper()} in {c} task x checkpoint cell(s)" for a, c in ab.items())
                   + " (tables/exclusions.csv).", ""]
    if sig.exists():
        md += [sig.read_text().strip(), ""]
    em = run / "tables" / "emergence.md"
    if em.exists():
        md += ["### Emergence", "", em.read_text().strip(), ""]
    pt = run / "tables" / "patching.md"
    if pt.exists():
        md += ["### Patching (restoration)", "", pt.read_text().strip(), ""]
    figs = sorted((run / "figures").glob("*.png")) if (run / "figures").exists() else []
    for f in figs:
        md += [f"![{f.stem}]({f.relative_to(run.parent).as_posix()})", ""]
    return md


def write_report(out: Path, cfg, timings: dict) -> Path:
    import markdown

    out = Path(out)
    md = ["# Semantic induction heads: demo report", ""]
    md += [f"Preset `{cfg.preset}`; pretrained model `{cfg.pretrained}`. Stage times (s): "
           + ", ".join(f"{k}: {v}" for k, v in timings.items()) + ".", ""]
    md += _part(out / "training", "A. Across training (the built-in series)")
    md += _part(out / "pretrained", f"B. A real pretrained model ({cfg.pretrained})")
    md += ["## How to scale this up", "",
           "Every size is a field of `experiments.demo.DemoConfig` (items per task, shots, random sets R, "
           "sentences, checkpoints). `ablate run sih_ablation --series DIR --out RUN` runs the full protocol "
           "(all checkpoints, 8 random sets, three operators); `ablate stats RUN` and `ablate figures RUN` "
           "render its tables and figures.", ""]
    text = "\n".join(md)
    p = out / "report.md"
    p.write_text(text)
    body = markdown.markdown(text, extensions=["tables"])
    html = ("<!doctype html><html><head><meta charset='utf-8'><title>SIH demo report</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;line-height:1.45;padding:0 1em}"
            "table{border-collapse:collapse;font-size:.85em;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .5em}"
            "th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.5em 0}"
            "</style></head><body>" + body + "</body></html>")
    (out / "report.html").write_text(html)
    return p
