"""Tables of a factors study (:mod:`experiments.factors`): when each curve emerges in each variant, and
the Aoyama et al. (2025) law for induction-head formation against the measured onsets.

**Curves per variant** (one value per checkpoint, x = log10 tokens seen; step 0 has no x and is left out):

* ``induction``: the best head's prefix-matching score (``head_scores.parquet``);
* ``SIH``: the best head's relation index above its own fake-tail null, ``max_h max_r [RI_h(r) -
  RI_h^baseline(r)]`` over the forward relations, heads with >= ``min_events`` gated events;
* ``PD``: the mean over tasks of (``pd_cont`` - chance) at the largest shot count, clean prompts
  (``icl_summary``): the gold label's probability renormalised within the task's label candidates,
  so it is independent of the format (greedy-exact PD counts a model that answers no label as
  wrong, and its curve then rises from below chance to chance as FC is learned: that is FC, not PD;
  measured on the first real run, 2026-12-05). Summaries without ``pd_cont`` fall back to ``pd``;
* ``FC``: the mean FC at the largest shot count, clean prompts.

Each curve is dated by :func:`stats.emergence.fit_sigmoid` (the toolkit's one rule, docs/statistics.md:
a midpoint only when a sigmoid beats a constant and a line; residual-bootstrap 95% CI of the midpoint).

**The law.** Aoyama, Wilcox & Schneider (2025, arXiv 2511.16893): induction heads form after about
``N = 10^c * (B * C)^e`` tokens with ``c = 5.7`` and ``e = 0.5`` (B sequences per batch, C tokens of
context). Per variant: predicted ``log10 N``, the measured midpoint of the ``law.curve`` curve (default
``induction``) and its CI, and their difference. The fit ``midpoint = a + b * log10(B * C)`` over the
variants whose curve is dated:

* ``b`` by least squares, with two CIs: ``ci_dating`` -- a bootstrap that redraws every variant's
  midpoint from its own bootstrap distribution and refits (the uncertainty of dating alone), and
  ``ci_ols`` -- the t interval of ordinary least squares (statsmodels; needs >= 3 distinct B * C);
* ``a_at_law_exponent``: the offset with the exponent fixed at the law's, ``mean(midpoint - e * log10(B*C))``,
  with the same dating bootstrap CI; the law's ``c`` lies inside it or not.

A midpoint is not the same event as the paper's "formation point" (the toolkit dates the middle of the
rise); the table says which it uses. Variants that change another factor (layers, width, few-shot share)
enter ``a_at_law_exponent`` like any other (the law says the onset does not depend on them), but not the
fitted exponent of ``B * C``, which uses only the variants that share the base's other factors (the most
common combination), so that it is not confounded; the note says how many were left out.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .emergence import fit_sigmoid

__all__ = ["CURVES", "variant_curves", "date_curves", "law_table", "law_fit", "factors_tables", "write_factors_tables"]

CURVES = ("induction", "SIH", "PD", "FC")
_NO_DATA = {"induction": "no prefix-matching scores (scores.prefix_matching = false?)",
            "SIH": "no head had the minimum number of gated relation-index events at any checkpoint",
            "PD": "no ICL levels measured", "FC": "no ICL levels measured"}


def variant_curves(head_scores: pd.DataFrame | None, icl_summary: pd.DataFrame | None, *,
                   min_events: int = 10) -> pd.DataFrame:
    """The four curves of one variant as a long table ``step, tokens_seen, curve, value``."""
    parts = []
    if head_scores is not None and not head_scores.empty:
        hs = head_scores
        pm = hs[hs["score"] == "prefix_matching"]
        if not pm.empty:
            g = pm.groupby("step").agg(tokens_seen=("tokens_seen", "first"), value=("value", "max")).reset_index()
            parts.append(g.assign(curve="induction"))
        ri = hs[(hs["score"] == "relation_index") & (hs["direction"].astype(str) == "forward")]
        base = hs[(hs["score"] == "baseline") & (hs["direction"].astype(str) == "forward")]
        if not ri.empty and not base.empty:
            key = ["step", "relation", "layer", "head"]
            m = ri.merge(base[key + ["value"]].rename(columns={"value": "base"}), on=key)
            m = m[m["n_events"].fillna(0) >= min_events]
            if not m.empty:
                m = m.assign(value=m["value"] - m["base"])
                g = m.groupby("step").agg(tokens_seen=("tokens_seen", "first"), value=("value", "max")).reset_index()
                parts.append(g.assign(curve="SIH"))
    if icl_summary is not None and not icl_summary.empty:
        s = icl_summary[icl_summary["control"].astype(str) == "clean"]
        if "condition" in s.columns:
            s = s[s["condition"].astype(str).isin(["clean", "none", "nan", "None"]) | s["condition"].isna()]
        if not s.empty:
            top = s[s["shots"] == s["shots"].max()]
            pd_col = "pd_cont" if "pd_cont" in top.columns and top["pd_cont"].notna().any() else "pd"
            g = top.assign(pdc=top[pd_col] - top["chance"]).groupby("step").agg(
                tokens_seen=("tokens_seen", "first"), PD=("pdc", "mean"), FC=("fc", "mean")).reset_index()
            parts.append(g[["step", "tokens_seen"]].assign(curve="PD", value=g["PD"]))
            parts.append(g[["step", "tokens_seen"]].assign(curve="FC", value=g["FC"]))
    if not parts:
        return pd.DataFrame(columns=["step", "tokens_seen", "curve", "value"])
    out = pd.concat(parts, ignore_index=True)[["step", "tokens_seen", "curve", "value"]]
    out["tokens_seen"] = pd.to_numeric(out["tokens_seen"], errors="coerce").astype(float)
    return out.sort_values(["curve", "step"], kind="stable").reset_index(drop=True)


def date_curves(curves: pd.DataFrame, *, n_boot: int = 200, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Sigmoid dating of every curve of one variant: a table and the bootstrap midpoints per curve."""
    rows, boots = [], {}
    for name in CURVES:
        c = curves[(curves["curve"] == name) & (curves["tokens_seen"] > 0)]
        if c.empty:  # said, not dropped: e.g. no head reached the events the relation index needs
            rows.append({"curve": name, "emergence": "no data", "midpoint_log10_tokens": np.nan, "ci_low": np.nan,
                         "ci_high": np.nan, "first": np.nan, "last": np.nan, "best_model": "", "n_checkpoints": 0,
                         "reason": _NO_DATA.get(name, "not measured")})
            continue
        x = np.log10(c["tokens_seen"].to_numpy(float))
        y = c["value"].to_numpy(float)
        f = fit_sigmoid(x, y, n_boot=n_boot, seed=seed)
        dated = math.isfinite(f.midpoint) and f.direction == "rises"
        rows.append({"curve": name, "emergence": "rises at" if dated else (
                         "falls at" if math.isfinite(f.midpoint) else (
                             "steady trend, no onset" if f.best_model == "line" else "not emerged")),
                     "midpoint_log10_tokens": f.midpoint, "ci_low": f.ci_low, "ci_high": f.ci_high,
                     "first": float(y[0]), "last": float(y[-1]), "best_model": f.best_model, "n_checkpoints": f.n,
                     "reason": f.reason})
        if dated:
            boots[name] = np.asarray(f.boot, float)
    return pd.DataFrame(rows), boots


def _rising_at_end(values: np.ndarray) -> bool:
    """Still climbing at the last checkpoint: the last value is the curve's maximum, stands clear of the
    median by more than five noise units (checkpoint-to-checkpoint noise, robustly: 1.4826 MAD of the
    differences / sqrt 2), and the last two intervals carry more than a quarter of the whole rise (a
    curve that has risen and is levelling off, e.g. .54 -> .70 -> .74 -> .76 -> .81, is not censored)."""
    v = values[np.isfinite(values)]
    if v.size < 4 or v[-1] < v.max():
        return False
    d = np.diff(v)
    noise = 1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2)
    rise = v[-1] - v.min()
    return bool(v[-1] - np.median(v) > 5 * max(noise, 1e-9) and v[-1] - v[-3] > 0.25 * rise)


def law_table(factors: pd.DataFrame, onsets: pd.DataFrame, law: dict,
              curves: pd.DataFrame | None = None) -> pd.DataFrame:
    """Predicted vs measured onset per variant (``factors``: one row per variant with B, C).

    A variant whose curve has not finished rising within the tokens it was trained on is **censored**:
    its onset lies after ``log10 tokens_trained`` (``onset_after_log10_tokens``, a lower bound), and it
    does not enter the fit. That is the case when the curve is still rising at its last checkpoint
    (:func:`_rising_at_end` on ``curves``, the variant's curve values) and either no rise is dated or
    the sigmoid's midpoint lies within 0.15 dex of the end (its top was never observed, so its midpoint
    is not identified); or when the midpoint is flagged at the right edge of the observed range.
    """
    curve = law.get("curve", "induction")
    c, e = float(law.get("log10_c", 5.7)), float(law.get("exponent", 0.5))
    rows = []
    for v in factors.itertuples():
        o = onsets[(onsets["variant"] == v.variant) & (onsets["curve"] == curve)]
        bc = float(v.batch_size * v.seq_len)
        pred = c + e * math.log10(bc)
        emergence = o["emergence"].iloc[0] if len(o) else "no curve"
        reason = str(o["reason"].iloc[0]) if len(o) and "reason" in o.columns else ""
        mid = float(o["midpoint_log10_tokens"].iloc[0]) if emergence == "rises at" else float("nan")
        lo = float(o["ci_low"].iloc[0]) if len(o) else float("nan")
        hi = float(o["ci_high"].iloc[0]) if len(o) else float("nan")
        trained = float(v.tokens_trained)
        end = math.log10(trained) if trained > 0 else float("nan")
        status = "dated" if math.isfinite(mid) else emergence
        after = float("nan")
        rising = False
        if curves is not None and not curves.empty and math.isfinite(end):
            cv = curves[(curves["variant"] == v.variant) & (curves["curve"] == curve) & (curves["tokens_seen"] > 0)]
            rising = _rising_at_end(cv.sort_values("tokens_seen")["value"].to_numpy(float))
        if math.isfinite(mid) and math.isfinite(end) and mid >= end - 0.15 and ("edge" in reason or rising):
            mid, after = float("nan"), end  # a sigmoid whose top was never observed: its midpoint is not identified
            status = f"midpoint at the end of the trained tokens: onset after 10^{end:.2f} tokens (censored)"
        elif not math.isfinite(mid) and rising:
            after = end
            status = f"still rising at the end: onset after 10^{end:.2f} tokens (censored)"
        rows.append({"variant": v.variant, "B": int(v.batch_size), "C": int(v.seq_len), "BxC": int(bc),
                     "n_layers": int(v.n_layers), "d_model": int(v.d_model), "few_shot_share": float(v.few_shot_share),
                     "predicted_log10_tokens": pred, "measured_log10_tokens": mid,
                     "ci_low": lo if math.isfinite(mid) else float("nan"),
                     "ci_high": hi if math.isfinite(mid) else float("nan"),
                     "measured_minus_predicted": mid - pred,
                     "tokens_trained": trained, "onset_after_log10_tokens": after, "status": status})
    return pd.DataFrame(rows)


def bxc_family(table: pd.DataFrame) -> np.ndarray:
    """Mask of the rows that share the base's other factors (the most common layers / width / few-shot
    share): the variants that differ only in B and C, from which the exponent of B*C is fitted."""
    other = ["n_layers", "d_model", "few_shot_share"]
    if table.empty or not all(k in table.columns for k in other):
        return np.ones(len(table), bool)
    base = table[other].apply(tuple, axis=1).mode().iloc[0]
    return np.array([tuple(r) == base for r in table[other].itertuples(index=False)], bool)


def law_fit(table: pd.DataFrame, boots: dict[str, np.ndarray], law: dict, *, n_boot: int = 2000,
            seed: int = 0) -> pd.DataFrame:
    """Fit ``midpoint = a + b log10(B*C)`` over the dated variants (module docstring); one row per quantity."""
    e = float(law.get("exponent", 0.5))
    c = float(law.get("log10_c", 5.7))
    d = table[np.isfinite(table["measured_log10_tokens"].to_numpy(float))]
    rows = []
    n, n_bc = len(d), d["BxC"].nunique() if len(d) else 0
    x = np.log10(d["BxC"].to_numpy(float))
    y = d["measured_log10_tokens"].to_numpy(float)
    rng = np.random.default_rng(seed)
    draws = [boots.get(v, np.empty(0)) for v in d["variant"]]
    have_boot = n > 0 and all(len(b) for b in draws)

    def boot_stat(fn):
        if not have_boot:
            return float("nan"), float("nan")
        vals = np.array([fn(np.array([b[rng.integers(len(b))] for b in draws])) for _ in range(n_boot)])
        vals = vals[np.isfinite(vals)]
        if vals.size < n_boot // 2:
            return float("nan"), float("nan")
        lo, hi = np.quantile(vals, [0.025, 0.975])
        return float(lo), float(hi)

    offset = (lambda yy: float(np.mean(yy - e * x))) if n else None
    if n >= 1:
        a_hat = offset(y)
        lo, hi = boot_stat(offset)
        rows.append({"quantity": "a_at_law_exponent", "law": c, "estimate": a_hat, "ci_dating_low": lo,
                     "ci_dating_high": hi, "ci_ols_low": float("nan"), "ci_ols_high": float("nan"), "n_variants": n,
                     "law_inside_ci": bool(lo <= c <= hi) if math.isfinite(lo) else None,
                     "note": f"log10 tokens at B*C = 1 with the exponent fixed at {e}; the law says {c}"})
    # the exponent of B*C from the variants that differ from the base only in B and C (the modal
    # layers / width / few-shot share): a variant that also changes another factor would confound it
    fam = bxc_family(table)[np.isfinite(table["measured_log10_tokens"].to_numpy(float))]
    n_left = int((~fam).sum())
    d, x, y, draws = d[fam], x[fam], y[fam], [b for b, f in zip(draws, fam) if f]
    n, n_bc = len(d), d["BxC"].nunique() if len(d) else 0
    have_boot = n > 0 and all(len(b) for b in draws)
    left_out = f"; {n_left} dated variant(s) changing another factor left out" if n_left else ""
    if n_bc >= 2:
        slope = lambda yy: float(np.polyfit(x, yy, 1)[0])  # noqa: E731
        b_hat = slope(y)
        lo, hi = boot_stat(slope)
        olo = ohi = float("nan")
        if n_bc >= 3 and n >= 3:
            import statsmodels.api as sm

            fit = sm.OLS(y, sm.add_constant(x)).fit()
            olo, ohi = (float(v) for v in fit.conf_int(0.05)[1])
        inside = [bool(l <= e <= h) for l, h in ((lo, hi), (olo, ohi)) if math.isfinite(l)]
        rows.append({"quantity": "exponent_of_BxC", "law": e, "estimate": b_hat, "ci_dating_low": lo,
                     "ci_dating_high": hi, "ci_ols_low": olo, "ci_ols_high": ohi, "n_variants": n,
                     "law_inside_ci": all(inside) if inside else None,
                     "note": f"least squares over {n} dated variants at {n_bc} distinct B*C{left_out}"})
    else:
        rows.append({"quantity": "exponent_of_BxC", "law": e, "estimate": float("nan"), "ci_dating_low": float("nan"),
                     "ci_dating_high": float("nan"), "ci_ols_low": float("nan"), "ci_ols_high": float("nan"),
                     "n_variants": n, "law_inside_ci": None,
                     "note": f"not fitted: the dated variants span {n_bc} distinct B*C (needs >= 2){left_out}"})
    return pd.DataFrame(rows)


def _variant_factors(manifest: dict, timings: dict) -> pd.DataFrame:
    """B, C, layers, width and few-shot share of every variant, from the study spec in the manifest."""
    from experiments.factors import factors_from_dict

    spec = factors_from_dict(_spec_as_toml(manifest["spec"]), source="manifest.json")
    rows = []
    for v in spec.variants:
        cfg = spec.train_config(v)
        fr = cfg.recipe.fractions()
        rows.append({"variant": v.name, "batch_size": cfg.batch_size, "seq_len": cfg.seq_len, "n_layers": cfg.n_layers,
                     "d_model": cfg.d_model, "few_shot_share": fr["single_labels"] + fr["pair_rules"],
                     "tokens_trained": cfg.steps * cfg.batch_size * cfg.seq_len,
                     "train_s": timings.get(v.name, {}).get("train_s", float("nan"))})
    return pd.DataFrame(rows)


def _spec_as_toml(d: dict) -> dict:
    """The manifest's :meth:`FactorsSpec.to_dict` back into the TOML shape :func:`factors_from_dict` reads."""
    train = {"preset": d["preset"], "threads": d["threads"], **d["base"]}
    if d.get("base_recipe"):
        train["recipe"] = d["base_recipe"]
    if d.get("tokens") is not None:
        train["tokens"] = d["tokens"]
    if d.get("steps") is not None:
        train["steps"] = d["steps"]
    variants = []
    for v in d["variants"]:
        t = {"name": v["name"], **v["overrides"]}
        if v.get("recipe"):
            t["recipe"] = v["recipe"]
        if v.get("tokens") is not None:
            t["tokens"] = v["tokens"]
        variants.append(t)
    return {"name": d["name"], "seed": d["seed"], "description": d["description"], "train": train,
            "variants": variants, "measure": d["measure"], "law": d["law"]}


def factors_tables(run: str | Path, *, n_boot: int = 200, seed: int = 0) -> dict[str, pd.DataFrame]:
    """All tables of a factors study folder: ``curves``, ``onsets``, ``law``, ``fit``, ``variants``."""
    from experiments.factors import read_factors_manifest

    run = Path(run)
    manifest = read_factors_manifest(run)
    try:
        timings = json.loads((run / "factors_timings.json").read_text())
    except (OSError, ValueError):
        timings = {}
    factors = _variant_factors(manifest, timings)
    curves, onsets, boots = [], [], {}
    for v in factors["variant"]:
        vdir = run / "variants" / v
        hs = pd.read_parquet(vdir / "head_scores.parquet") if (vdir / "head_scores.parquet").exists() else None
        icl = pd.read_parquet(vdir / "icl_summary.parquet") if (vdir / "icl_summary.parquet").exists() else None
        cv = variant_curves(hs, icl)
        curves.append(cv.assign(variant=v))
        on, b = date_curves(cv, n_boot=n_boot, seed=seed)
        onsets.append(on.assign(variant=v))
        if manifest["spec"]["law"].get("curve", "induction") in b:
            boots[v] = b[manifest["spec"]["law"].get("curve", "induction")]
    curves_df = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    onsets_df = pd.concat(onsets, ignore_index=True) if onsets else pd.DataFrame(columns=["variant", "curve"])
    if not onsets_df.empty:
        onsets_df = onsets_df[["variant"] + [c for c in onsets_df.columns if c != "variant"]]
    law = manifest["spec"]["law"]
    lt = law_table(factors, onsets_df, law, curves_df)
    return {"variants": factors, "curves": curves_df, "onsets": onsets_df, "law": lt,
            "fit": law_fit(lt, boots, law, seed=seed)}


def _fmt(df: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        if out[col].dtype.kind == "f" and col in ("tokens_trained", "tokens_seen"):  # counts, not measurements
            out[col] = out[col].map(lambda v: "" if not np.isfinite(v) else f"{v:,.0f}")
        elif out[col].dtype.kind == "f":
            out[col] = out[col].map(lambda v: "" if not np.isfinite(v) else f"{v:.{digits}f}")
        elif out[col].dtype.kind == "O":  # None (e.g. "law inside CI?" when no CI exists) prints as empty
            out[col] = out[col].map(lambda v: "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else str(v))
    return out


def write_factors_tables(run: str | Path, *, n_boot: int = 200, seed: int = 0) -> dict[str, Path]:
    """Write ``RUN/tables/factors_{onsets,law,fit,variants}.{csv,md,tex}`` and ``factors_curves.csv``."""
    from .tables import _write_three

    run = Path(run)
    t = factors_tables(run, n_boot=n_boot, seed=seed)
    out = run / "tables"
    out.mkdir(parents=True, exist_ok=True)
    t["curves"].to_csv(out / "factors_curves.csv", index=False)
    written = {"curves": out / "factors_curves.csv"}
    caps = {
        "variants": ("Factors study: the trained variants (B sequences x C tokens per batch, layers, width, "
                     "few-shot share of training tokens; train_s measured here)", []),
        "onsets": ("When each curve rises, per variant: sigmoid midpoint in log10 tokens with its bootstrap 95% CI "
                   "(dated only when a sigmoid beats a constant and a line)",
                   ["induction = best prefix-matching score; SIH = best RI above its fake-tail null (>= 10 events); "
                    "PD = mean (P(gold | label candidates) - chance) and FC = mean FC at the largest shot count, "
                    "clean prompts."]),
        "law": ("Induction-head formation: the Aoyama et al. (2025) law log10 N = c + e log10(B*C) vs the measured "
                "sigmoid midpoint", ["The toolkit dates the midpoint of the rise, not the paper's formation point; "
                                     "a midpoint lies later than the onset of the rise."]),
        "fit": ("The law's exponent and offset fitted to the measured midpoints", [
            "ci_dating: bootstrap over each variant's own midpoint bootstrap (dating uncertainty only); "
            "ci_ols: ordinary least-squares t interval (residual scatter; needs >= 3 distinct B*C)."]),
    }
    for name, (cap, notes) in caps.items():
        written[name] = _write_three(_fmt(t[name]), out / f"factors_{name}", cap, notes)[0]
        t[name].to_csv(written[name], index=False)  # the CSV keeps full precision (md / tex are rounded)
    return written
