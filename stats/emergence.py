"""Emergence over checkpoints: when does each curve rise, which rises first, do they co-vary?

docs/science.md §6: never correlate raw levels (both trend with training). This module

* dates emergence by a fitted sigmoid in x = log10(tokens seen)::

      y(x) = lo + A / (1 + exp(-(x - x0) / w)),   w > 0,   x0 = midpoint (log10 tokens)

  fitted with :func:`scipy.optimize.curve_fit`; a residual bootstrap (refit on fitted + resampled
  residuals) gives the 95% percentile CI of x0. A falling curve has A < 0.
* cross-checks it with a single mean-shift change point (:mod:`ruptures`, ``Dynp`` with the "l2"
  cost, one breakpoint), reported in log10 tokens (midway between the two checkpoints around it);
* says which curve rises first: delta = x0_B - x0_A with a CI from the two independent bootstrap
  distributions (A first when the CI lies above 0);
* correlates curves only after removing the trend: on first differences (Delta y_t) or on residuals
  of an OLS fit of y on log(step); CIs by a moving-block bootstrap of the paired series (block length
  ceil(n^(1/3)), same blocks for both curves, so serial and cross dependence are kept);
* calls a pair ``correlated`` only when both the first-difference and the detrended CIs exclude 0
  with the same sign (moving-block percentile CIs undercover at ~40 checkpoints: each alone
  excludes 0 for ~10-18% of independent curve pairs in our simulations, both together far less);
* runs Granger tests (:func:`statsmodels.tsa.stattools.grangercausalitytests`, SSR F test on first
  differences) in both directions, **flagged exploratory**.

Curves come from a long table with columns ``step``, ``tokens_seen``, ``curve``, ``value``.
"""

from __future__ import annotations

import io
import contextlib
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import curve_fit


def sigmoid(x, lo, amp, x0, w):
    """``lo + amp / (1 + exp(-(x - x0) / w))``."""
    return lo + amp / (1.0 + np.exp(-(np.asarray(x, float) - x0) / w))


@dataclass
class SigmoidFit:
    """Sigmoid fit of one curve; ``midpoint`` in log10 tokens (NaN with ``reason`` when undated)."""

    midpoint: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    amplitude: float = float("nan")
    width: float = float("nan")
    lo: float = float("nan")
    n: int = 0
    boot: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    reason: str = ""


def _fit_once(x, y, p0, bounds):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        popt, _ = curve_fit(sigmoid, x, y, p0=p0, bounds=bounds, maxfev=5000)
    return popt


def fit_sigmoid(x: np.ndarray, y: np.ndarray, *, n_boot: int = 200, seed: int = 0,
                min_points: int = 5) -> SigmoidFit:
    """Fit ``y = lo + A / (1 + exp(-(x - x0)/w))`` and bootstrap the midpoint x0.

    Args:
        x: log10 tokens seen per checkpoint. y: curve values. n_boot: residual-bootstrap refits.

    Returns:
        SigmoidFit. ``midpoint`` is NaN with a reason when there are too few checkpoints, the fit
        fails, or no rise is detectable (|A| < 2 residual SDs). A midpoint on the edge of the
        observed range is kept but flagged in ``reason``.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    order = np.argsort(x)
    x, y = x[order], y[order]
    res = SigmoidFit(n=x.size)
    if x.size < min_points:
        res.reason = f"too few checkpoints ({x.size} < {min_points}) to fit a sigmoid"
        return res
    span = x[-1] - x[0]
    if span <= 0:
        res.reason = "all checkpoints have the same tokens_seen"
        return res
    k = max(1, x.size // 5)
    y0, y1 = y[:k].mean(), y[-k:].mean()
    half = (y0 + y1) / 2
    cross = np.nonzero((y - half) * np.sign(y1 - y0 or 1.0) >= 0)[0]
    x0 = x[cross[0]] if cross.size else x[x.size // 2]
    yr = float(np.ptp(y)) or 1.0
    p0 = [y0, y1 - y0, x0, span / 10]
    bounds = ([y.min() - yr, -4 * yr, x[0], span / (20 * x.size)], [y.max() + yr, 4 * yr, x[-1], span])
    p0 = list(np.clip(p0, np.array(bounds[0]) + 1e-9, np.array(bounds[1]) - 1e-9))
    try:
        popt = _fit_once(x, y, p0, bounds)
    except (RuntimeError, ValueError) as exc:
        res.reason = f"sigmoid fit failed: {exc}"
        return res
    fitted = sigmoid(x, *popt)
    resid = y - fitted
    res.lo, res.amplitude, res.midpoint, res.width = (float(v) for v in popt)
    sd = float(np.std(resid, ddof=min(4, x.size - 1)))
    rss1, rss0 = float(np.sum(resid ** 2)), float(np.sum((y - y.mean()) ** 2))
    from scipy.stats import f as f_dist
    p_rise = float(f_dist.sf(((rss0 - rss1) / 3) / max(rss1 / (x.size - 4), 1e-300), 3, x.size - 4)) \
        if x.size > 4 else 1.0
    if abs(res.amplitude) < 2 * sd or p_rise > 0.05:
        res.reason = (f"no clear rise: sigmoid vs constant F-test p = {p_rise:.3g}, |amplitude| = "
                      f"{abs(res.amplitude):.3g}, residual SD = {sd:.3g}")
        res.midpoint = float("nan")
        return res
    rng = np.random.default_rng(seed)
    boot = np.full(n_boot, np.nan)
    for b in range(n_boot):
        yb = fitted + rng.choice(resid, size=resid.size, replace=True)
        try:
            boot[b] = _fit_once(x, yb, popt, bounds)[2]
        except (RuntimeError, ValueError):
            pass
    res.boot = boot
    if n_boot:
        fails = np.mean(~np.isfinite(boot))
        if fails > 0.5:
            res.reason = f"bootstrap refits failed in {fails:.0%} of replicates; CI not reported"
        else:
            res.ci_low, res.ci_high = (float(v) for v in np.nanquantile(boot, [0.025, 0.975]))
    edge = 0.02 * span
    if res.midpoint <= x[0] + edge or res.midpoint >= x[-1] - edge:
        res.reason = (res.reason + "; " if res.reason else "") + "midpoint at the edge of the observed range"
    return res


def change_point(x: np.ndarray, y: np.ndarray, *, min_size: int = 2) -> tuple[float, int, str]:
    """Single mean-shift change point by :class:`ruptures.Dynp` (cost "l2", one breakpoint).

    Returns:
        (x_cp, index, reason): x_cp = midway between x[index - 1] and x[index] (log10 tokens),
        index = first checkpoint after the shift; NaN / -1 with a reason when too short.
    """
    import ruptures as rpt

    x = np.asarray(x, float)
    y = np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 * min_size + 1:
        return float("nan"), -1, f"too few checkpoints ({x.size}) for a change point"
    order = np.argsort(x)
    x, y = x[order], y[order]
    bkp = rpt.Dynp(model="l2", min_size=min_size, jump=1).fit(y.reshape(-1, 1)).predict(n_bkps=1)[0]
    return float((x[bkp - 1] + x[bkp]) / 2), int(bkp), ""


def _detrend(y: np.ndarray, log_step: np.ndarray, method: str) -> np.ndarray:
    if method == "diff":
        return np.diff(y)
    if method == "detrend":
        design = np.column_stack([np.ones_like(log_step), log_step])
        beta, *_ = np.linalg.lstsq(design, y, rcond=None)
        return y - design @ beta
    if method == "raw":
        return y
    raise ValueError(f"stats.emergence: unknown detrending method {method!r}; use 'diff', 'detrend' or 'raw'.")


@dataclass
class Correlation:
    """Correlation of two detrended curves with a moving-block-bootstrap percentile CI."""

    method: str
    r: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    n: int = 0
    block: int = 0
    reason: str = ""

    @property
    def correlated(self) -> bool:
        """True when the 95% CI excludes 0."""
        return bool(np.isfinite(self.ci_low) and (self.ci_low > 0 or self.ci_high < 0))


def _rows_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(-1) / den


def curve_correlation(a: np.ndarray, b: np.ndarray, log_step: np.ndarray, *, method: str = "diff",
                      n_boot: int = 1000, block: int | None = None, seed: int = 0,
                      min_points: int = 6) -> Correlation:
    """Pearson r of two curves after detrending, with a moving-block bootstrap CI.

    ``method="diff"``: r(Delta a, Delta b); ``"detrend"``: r of OLS residuals on [1, log(step)];
    ``"raw"``: levels (only to demonstrate the spurious correlation; never report it).
    """
    a, b, ls = (np.asarray(v, float) for v in (a, b, log_step))
    ok = np.isfinite(a) & np.isfinite(b) & np.isfinite(ls)
    a, b, ls = a[ok], b[ok], ls[ok]
    ra, rb = _detrend(a, ls, method), _detrend(b, ls, method)
    out = Correlation(method=method, n=ra.size)
    if ra.size < min_points:
        out.reason = f"too few checkpoints ({ra.size} after {method}) for a correlation"
        return out
    if np.std(ra) == 0 or np.std(rb) == 0:
        out.reason = "a curve is constant after detrending; correlation undefined"
        return out
    out.r = float(_rows_corr(ra, rb))
    n = ra.size
    blk = block or max(2, int(np.ceil(n ** (1 / 3))))
    out.block = blk
    rng = np.random.default_rng(seed)
    nb = int(np.ceil(n / blk))
    starts = rng.integers(0, n - blk + 1, size=(n_boot, nb))
    idx = (starts[..., None] + np.arange(blk)).reshape(n_boot, -1)[:, :n]
    boot = _rows_corr(ra[idx], rb[idx])
    boot = boot[np.isfinite(boot)]
    if boot.size:
        out.ci_low, out.ci_high = (float(v) for v in np.quantile(boot, [0.025, 0.975]))
    return out


def granger_p(cause: np.ndarray, effect: np.ndarray, *, lag: int = 1) -> tuple[float, str]:
    """EXPLORATORY. p of "cause Granger-causes effect" (SSR F test, first differences, given lag)."""
    from statsmodels.tsa.stattools import grangercausalitytests

    c, e = np.diff(np.asarray(cause, float)), np.diff(np.asarray(effect, float))
    if c.size < 3 * lag + 4:
        return float("nan"), f"too few checkpoints for a Granger test at lag {lag}"
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            res = grangercausalitytests(np.column_stack([e, c]), maxlag=[lag])
        return float(res[lag][0]["ssr_ftest"][1]), ""
    except Exception as exc:  # degenerate series
        return float("nan"), f"Granger test failed: {type(exc).__name__}: {exc}"


@dataclass
class EmergenceResult:
    """Per-curve dating (``curves``) and per-pair comparison (``pairs``) tables."""

    curves: pd.DataFrame
    pairs: pd.DataFrame


def emergence_analysis(curves: pd.DataFrame, *, pairs: list[tuple[str, str]] | None = None,
                       n_boot: int = 200, n_boot_corr: int = 1000, granger_lag: int = 1,
                       seed: int = 0) -> EmergenceResult:
    """Date every curve and compare pairs.

    Args:
        curves: long table with ``step``, ``tokens_seen``, ``curve``, ``value`` (one value per step).
        pairs: (A, B) curve pairs to compare; default all pairs.

    Returns:
        EmergenceResult with ``curves`` columns: curve, n, midpoint_log10_tokens, ci_low, ci_high,
        amplitude, change_point_log10_tokens, onset_rank, note; and ``pairs`` columns: curve_a,
        curve_b, lead (x0_B - x0_A), lead_ci_low, lead_ci_high, rises_first, r_diff (+CI), r_detrended
        (+CI), granger_p_a_to_b, granger_p_b_to_a (exploratory), note.
    """
    need = {"step", "tokens_seen", "curve", "value"}
    if not need <= set(curves.columns):
        raise ValueError(f"stats.emergence: curves table needs columns {sorted(need)}, has {list(curves.columns)}.")
    c = curves.groupby(["curve", "step"], as_index=False).agg(tokens_seen=("tokens_seen", "first"),
                                                              value=("value", "mean"))
    if c["tokens_seen"].isna().any():
        raise ValueError("stats.emergence: tokens_seen is missing for some checkpoints; fill it in the results.")
    # the initial checkpoint (0 tokens) has no place on a log-token axis: dated curves start after it
    c = c[c["tokens_seen"] > 0]
    names = sorted(c["curve"].unique())
    fits, rows = {}, []
    series = {}
    for i, name in enumerate(names):
        d = c[c["curve"] == name].sort_values("step")
        x = np.log10(d["tokens_seen"].to_numpy(float))
        y = d["value"].to_numpy(float)
        series[name] = d.set_index("step")["value"]
        f = fit_sigmoid(x, y, n_boot=n_boot, seed=seed + i)
        cp, _, cp_reason = change_point(x, y)
        fits[name] = f
        rows.append({"curve": name, "n": f.n, "midpoint_log10_tokens": f.midpoint, "ci_low": f.ci_low,
                     "ci_high": f.ci_high, "amplitude": f.amplitude, "change_point_log10_tokens": cp,
                     "note": "; ".join(r for r in (f.reason, cp_reason) if r)})
    ct = pd.DataFrame(rows)
    ct["onset_rank"] = ct["midpoint_log10_tokens"].rank(method="min")
    prs = pairs if pairs is not None else [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    prow = []
    for a, b in prs:
        if a not in series or b not in series:
            raise ValueError(f"stats.emergence: pair ({a!r}, {b!r}) names an unknown curve; have {names}.")
        j = pd.concat([series[a].rename("a"), series[b].rename("b")], axis=1, join="inner").sort_index()
        ls = np.log(j.index.to_numpy(float))
        fa, fb = fits[a], fits[b]
        notes = []
        lead = fb.midpoint - fa.midpoint
        lo = hi = float("nan")
        if np.isfinite(lead) and fa.boot.size and fb.boot.size:
            dd = fb.boot - fa.boot
            dd = dd[np.isfinite(dd)]
            if dd.size:
                lo, hi = (float(v) for v in np.quantile(dd, [0.025, 0.975]))
        elif not np.isfinite(lead):
            notes.append("lead undefined: a curve has no dated rise")
        first = a if lo > 0 else b if hi < 0 else "unclear"
        rd = curve_correlation(j["a"], j["b"], ls, method="diff", n_boot=n_boot_corr, seed=seed)
        rt = curve_correlation(j["a"], j["b"], ls, method="detrend", n_boot=n_boot_corr, seed=seed)
        g_ab, ra = granger_p(j["a"], j["b"], lag=granger_lag)
        g_ba, rb = granger_p(j["b"], j["a"], lag=granger_lag)
        notes += [r for r in (rd.reason, rt.reason, ra, rb) if r]
        notes.append("Granger tests exploratory")
        prow.append({"curve_a": a, "curve_b": b, "n": len(j), "lead": lead, "lead_ci_low": lo, "lead_ci_high": hi,
                     "rises_first": first, "r_diff": rd.r, "r_diff_ci_low": rd.ci_low, "r_diff_ci_high": rd.ci_high,
                     "r_detrended": rt.r, "r_detrended_ci_low": rt.ci_low, "r_detrended_ci_high": rt.ci_high,
                     "correlated": bool(rd.correlated and rt.correlated and np.sign(rd.r) == np.sign(rt.r)),
                     "granger_p_a_to_b": g_ab, "granger_p_b_to_a": g_ba, "note": "; ".join(notes)})
    return EmergenceResult(curves=ct, pairs=pd.DataFrame(prow))


def curves_from_normalisers(normalisers: pd.DataFrame, tokens: pd.Series | None = None) -> pd.DataFrame:
    """Ability curves from the clean model: mean over tasks of (clean - floor) per step and ability."""
    g = normalisers.groupby(["step", "ability"], as_index=False)["gap"].mean()
    g["curve"] = g["ability"].str.upper()
    g = g.rename(columns={"gap": "value"})
    if tokens is not None:
        g["tokens_seen"] = g["step"].map(tokens)
    return g[["step", "tokens_seen", "curve", "value"]] if "tokens_seen" in g else g


_LABELS = ("curve", "score", "metric", "ability", "relation", "name", "kind")
_NON_CURVE = {"step", "tokens_seen", "layer", "head", "shots", "item", "task", "seed", "control_index"}


def curves_from_table(df: pd.DataFrame, *, prefix: str = "", heads: set[str] | None = None,
                      tokens: pd.Series | None = None) -> pd.DataFrame:
    """Best-effort long curves from a per-step table (``icl_summary`` or ``head_scores``).

    Accepted shapes: long (a ``value`` column plus label columns among curve/score/metric/ability/
    relation/name/kind; other columns such as heads/tasks are averaged) or wide (every other numeric
    column is a curve). ``heads`` (strings like ``"L3H5"``) restricts head-score rows to the selected
    heads when a ``head`` (and optionally ``layer``) column exists.

    Raises:
        ValueError: no ``step`` column, or nothing numeric to use.
    """
    if "step" not in df.columns:
        raise ValueError(f"stats.emergence: table has no 'step' column (columns {list(df.columns)}).")
    d = df.copy()
    if heads and "head" in d.columns:
        if "layer" in d.columns and pd.api.types.is_integer_dtype(d["head"]):
            hid = "L" + d["layer"].astype(str) + "H" + d["head"].astype(str)
        else:
            hid = d["head"].astype(str)
        if hid.isin(heads).any():
            d = d[hid.isin(heads)]
    if "tokens_seen" not in d.columns:
        if tokens is None:
            raise ValueError("stats.emergence: table has no tokens_seen and none could be taken from results.")
        d["tokens_seen"] = d["step"].map(tokens)
    if "value" in d.columns:
        labels = [c for c in _LABELS if c in d.columns]
        if labels:
            d["curve"] = d[labels].astype(str).agg(":".join, axis=1)
        else:
            d["curve"] = "value"
        out = d.groupby(["curve", "step"], as_index=False).agg(tokens_seen=("tokens_seen", "first"),
                                                               value=("value", "mean"))
    else:
        num = [c for c in d.columns if c not in _NON_CURVE and pd.api.types.is_numeric_dtype(d[c])]
        if not num:
            raise ValueError(f"stats.emergence: no numeric curve columns in table (columns {list(d.columns)}).")
        out = d.groupby("step", as_index=False).agg(tokens_seen=("tokens_seen", "first"),
                                                    **{c: (c, "mean") for c in num})
        out = out.melt(id_vars=["step", "tokens_seen"], var_name="curve", value_name="value")
    out["curve"] = prefix + out["curve"].astype(str)
    return out[["step", "tokens_seen", "curve", "value"]]
