"""Emergence over checkpoints: when does each curve rise, which rises first, do they co-vary?

docs/science.md §6: never correlate raw levels (both trend with training). This module

* dates emergence by a fitted sigmoid in x = log10(tokens seen)::

      y(x) = lo + A / (1 + exp(-(x - x0) / w)),   w > 0,   x0 = midpoint (log10 tokens)

  fitted with :func:`scipy.optimize.curve_fit`, **only when the sigmoid beats both a constant and a
  straight line in x**: the smallest small-sample Akaike criterion (AICc, Gaussian errors; reported
  as ``aicc_constant``, ``aicc_line``, ``aicc_sigmoid``, ``best_model``) *and* F tests of the
  sigmoid against each simpler model at p < .05 (pure noise is dated in < 10% of curves, tested). Otherwise the curve has "no
  dated rise": ``constant`` (nothing emerged) or ``line`` (a steady trend, no onset). A residual
  bootstrap (refit on fitted + resampled residuals) gives the 95% percentile CI of x0. A sigmoid
  with A < 0 is a **fall** (``direction = "falls"``): its midpoint is reported as the fall's, never
  as an onset, and it takes no place in the order of emergence;
* cross-checks it with a single mean-shift change point (least squares, one break; the same split
  as :mod:`ruptures` ``Dynp`` with the "l2" cost -- tested), reported in log10 tokens (midway
  between the two checkpoints around it) **only when a permutation test says a break exists**:
  the statistic is the fraction of the variance the best split explains, its null the same
  statistic over random orderings of the values (exchangeable when the curve is pure noise), p =
  (1 + #{null >= observed}) / (B + 1); pure noise gives no change point in ~95% of curves (tested);
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
    direction: str = ""
    best_model: str = ""
    aicc_constant: float = float("nan")
    aicc_line: float = float("nan")
    aicc_sigmoid: float = float("nan")


def _fit_once(x, y, p0, bounds):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        popt, _ = curve_fit(sigmoid, x, y, p0=p0, bounds=bounds, maxfev=5000)
    return popt


def _aicc(rss: float, n: int, k: int) -> float:
    """Small-sample AIC of a least-squares fit with k parameters (+1 for the error variance)."""
    p = k + 1
    if n - p - 1 <= 0:
        return float("inf")
    return float(n * np.log(max(rss, 1e-300) / n) + 2 * p + 2 * p * (p + 1) / (n - p - 1))


def fit_sigmoid(x: np.ndarray, y: np.ndarray, *, n_boot: int = 200, seed: int = 0,
                min_points: int = 5) -> SigmoidFit:
    """Fit ``y = lo + A / (1 + exp(-(x - x0)/w))``, compare it with a constant and a line, bootstrap x0.

    Args:
        x: log10 tokens seen per checkpoint. y: curve values. n_boot: residual-bootstrap refits.

    Returns:
        SigmoidFit. ``midpoint`` is NaN with a reason when there are too few checkpoints, the fit
        fails, or the sigmoid does not beat both a constant and a straight line by AICc
        (``best_model`` says which won). ``direction`` is "rises" or "falls" (A < 0). A midpoint
        on the edge of the observed range is kept but flagged in ``reason``.
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
    n = x.size
    rss_c = float(np.sum((y - y.mean()) ** 2))
    beta = np.polyfit(x, y, 1)
    rss_l = float(np.sum((y - np.polyval(beta, x)) ** 2))
    res.aicc_constant, res.aicc_line = _aicc(rss_c, n, 1), _aicc(rss_l, n, 2)
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
        res.best_model = "constant" if res.aicc_constant <= res.aicc_line else "line"
        return res
    fitted = sigmoid(x, *popt)
    resid = y - fitted
    rss_s = float(np.sum(resid ** 2))
    res.aicc_sigmoid = _aicc(rss_s, n, 4)
    aics = {"constant": res.aicc_constant, "line": res.aicc_line, "sigmoid": res.aicc_sigmoid}
    res.best_model = min(aics, key=aics.get)
    # and the sigmoid's extra parameters must pay off in an F test against each simpler model
    from scipy.stats import f as f_dist
    den = max(rss_s / (n - 4), 1e-300) if n > 4 else float("inf")
    p_c = float(f_dist.sf(((rss_c - rss_s) / 3) / den, 3, n - 4)) if n > 4 else 1.0
    p_l = float(f_dist.sf(((rss_l - rss_s) / 2) / den, 2, n - 4)) if n > 4 else 1.0
    if res.best_model == "sigmoid" and max(p_c, p_l) >= 0.05:
        res.best_model = "constant" if res.aicc_constant <= res.aicc_line or p_c >= 0.05 else "line"
    res.lo, res.amplitude, res.midpoint, res.width = (float(v) for v in popt)
    res.direction = "falls" if res.amplitude < 0 else "rises"
    if res.best_model != "sigmoid":
        res.reason = (f"no dated rise or fall: a {res.best_model} explains the curve as well (AICc constant "
                      f"{res.aicc_constant:.1f}, line {res.aicc_line:.1f}, sigmoid {res.aicc_sigmoid:.1f}; sigmoid "
                      f"vs constant F-test p = {p_c:.3g}, vs line p = {p_l:.3g})")
        res.midpoint = float("nan")
        res.direction = "flat" if res.best_model == "constant" else ("trend up" if beta[0] > 0 else "trend down")
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


def _best_split(Y: np.ndarray, min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Best single mean-shift split of each row of Y (B, n): (explained fraction R^2, split index)."""
    n = Y.shape[1]
    cs = np.cumsum(Y, axis=1)
    tot = cs[:, -1:]
    idx = np.arange(min_size, n - min_size + 1)
    left = cs[:, idx - 1]
    # between-segment sum of squares of a split at t: n1 n2 / n (mean1 - mean2)^2
    n1 = idx.astype(float)
    n2 = n - n1
    between = (left / n1 - (tot - left) / n2) ** 2 * n1 * n2 / n
    sst_ = np.sum((Y - Y.mean(axis=1, keepdims=True)) ** 2, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = between / sst_
    j = np.nanargmax(np.where(np.isfinite(r2), r2, -1), axis=1)
    return r2[np.arange(Y.shape[0]), j], idx[j]


def change_point(x: np.ndarray, y: np.ndarray, *, min_size: int = 2, n_perm: int = 999, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, int, str, float]:
    """Single mean-shift change point with a permutation test that a break exists.

    Returns:
        (x_cp, index, reason, p): x_cp = midway between x[index - 1] and x[index] (log10 tokens),
        index = first checkpoint after the shift, p the permutation p-value; x_cp NaN / index -1
        with a reason when the curve is too short or p > alpha ("no break").
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 * min_size + 1:
        return float("nan"), -1, f"too few checkpoints ({x.size}) for a change point", float("nan")
    order = np.argsort(x)
    x, y = x[order], y[order]
    if np.ptp(y) == 0:
        return float("nan"), -1, "constant curve: no change point", 1.0
    r2, bkp = _best_split(y[None, :], min_size)
    rng = np.random.default_rng(seed)
    perm = np.argsort(rng.random((n_perm, y.size)), axis=1)
    null, _ = _best_split(y[perm], min_size)
    p = float((1 + np.sum(null >= r2[0] - 1e-12)) / (n_perm + 1))
    if p > alpha:
        return float("nan"), -1, f"no change point (permutation p = {p:.3f})", p
    b = int(bkp[0])
    return float((x[b - 1] + x[b]) / 2), b, "", p


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
    """Date every ability / score curve, keep nulls as bands, and compare pairs.

    Args:
        curves: long table with ``step``, ``tokens_seen``, ``curve``, ``value`` (one value per step);
            optional ``null`` (bool: the curve is a null, e.g. the fake-tail baseline or the
            shuffled-label PD) and ``null_of`` (the curve it bounds). Nulls are never dated: their
            range is reported beside the curve they bound (``null_low`` / ``null_high``).
        pairs: (A, B) curve pairs to compare; default all pairs of non-null curves.

    Returns:
        EmergenceResult with ``curves`` columns: curve, n, direction, best_model, aicc_constant,
        aicc_line, aicc_sigmoid, midpoint_log10_tokens, ci_low, ci_high, amplitude,
        change_point_log10_tokens, change_point_p, onset_rank (rises only), null_low, null_high,
        note; and ``pairs`` columns: curve_a, curve_b, lead (x0_B - x0_A), lead_ci_low,
        lead_ci_high, rises_first, r_diff (+CI), r_detrended (+CI), granger_p_a_to_b,
        granger_p_b_to_a (exploratory), note.
    """
    need = {"step", "tokens_seen", "curve", "value"}
    if not need <= set(curves.columns):
        raise ValueError(f"stats.emergence: curves table needs columns {sorted(need)}, has {list(curves.columns)}.")
    cv = curves.copy()
    if "null" not in cv.columns:
        cv["null"] = False
    if "null_of" not in cv.columns:
        cv["null_of"] = ""
    cv["null"] = cv["null"].fillna(False).astype(bool)
    meta = cv.groupby("curve").agg(null=("null", "first"), null_of=("null_of", "first"))
    c = cv.groupby(["curve", "step"], as_index=False).agg(tokens_seen=("tokens_seen", "first"), value=("value", "mean"))
    if c["tokens_seen"].isna().any():
        raise ValueError("stats.emergence: tokens_seen is missing for some checkpoints; fill it in the results.")
    # the initial checkpoint (0 tokens) has no place on a log-token axis: dated curves start after it
    c = c[c["tokens_seen"] > 0]
    names = sorted(n for n in c["curve"].unique() if not meta.loc[n, "null"])
    nulls = {n: c[c["curve"] == n]["value"] for n in c["curve"].unique() if meta.loc[n, "null"]}
    fits, rows = {}, []
    series = {}
    for i, name in enumerate(names):
        d = c[c["curve"] == name].sort_values("step")
        x = np.log10(d["tokens_seen"].to_numpy(float))
        y = d["value"].to_numpy(float)
        series[name] = d.set_index("step")["value"]
        f = fit_sigmoid(x, y, n_boot=n_boot, seed=seed + i)
        cp, _, cp_reason, cp_p = change_point(x, y, seed=seed + i)
        fits[name] = f
        bound = [v for n, v in nulls.items() if meta.loc[n, "null_of"] == name]
        nv = pd.concat(bound) if bound else pd.Series(dtype=float)
        rows.append({"curve": name, "n": f.n, "direction": f.direction, "best_model": f.best_model,
                     "aicc_constant": f.aicc_constant, "aicc_line": f.aicc_line, "aicc_sigmoid": f.aicc_sigmoid,
                     "midpoint_log10_tokens": f.midpoint, "ci_low": f.ci_low,
                     "ci_high": f.ci_high, "amplitude": f.amplitude, "change_point_log10_tokens": cp,
                     "change_point_p": cp_p, "null_low": float(nv.min()) if len(nv) else np.nan,
                     "null_high": float(nv.max()) if len(nv) else np.nan,
                     "note": "; ".join(r for r in (f.reason, cp_reason) if r)})
    ct = pd.DataFrame(rows, columns=["curve", "n", "direction", "best_model", "aicc_constant", "aicc_line",
                                     "aicc_sigmoid", "midpoint_log10_tokens", "ci_low", "ci_high", "amplitude",
                                     "change_point_log10_tokens", "change_point_p", "null_low", "null_high", "note"])
    rising = ct["midpoint_log10_tokens"].where(ct["direction"] == "rises")
    ct["onset_rank"] = rising.rank(method="min")
    prs = pairs if pairs is not None else [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    prow = []
    for a, b in prs:
        if a not in series or b not in series:
            raise ValueError(f"stats.emergence: pair ({a!r}, {b!r}) names an unknown or null curve; have {names}.")
        j = pd.concat([series[a].rename("a"), series[b].rename("b")], axis=1, join="inner").sort_index()
        ls = np.log(j.index.to_numpy(float))
        fa, fb = fits[a], fits[b]
        notes = []
        both_rise = fa.direction == "rises" and fb.direction == "rises"
        lead = fb.midpoint - fa.midpoint if both_rise else float("nan")
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


def emergence_order(curves: pd.DataFrame) -> pd.DataFrame:
    """The order of emergence as a small table: one row per dated curve (rises first, by midpoint),
    then falls and curves that did not emerge.

    Columns: ``order`` (1, 2, ... for rises; "" otherwise), ``curve``, ``emergence`` (``"rises at"`` /
    ``"falls at"`` / ``"not emerged"`` / ``"steady trend, no onset"``), ``midpoint_log10_tokens``,
    ``ci_low``, ``ci_high``, ``best_model``, ``null_low``, ``null_high``.
    """
    d = curves.copy()
    if d.empty:
        return pd.DataFrame(columns=["order", "curve", "emergence", "midpoint_log10_tokens", "ci_low", "ci_high",
                                     "best_model", "null_low", "null_high"])
    dated = np.isfinite(d["midpoint_log10_tokens"].to_numpy(float))
    what = np.where(dated & (d["direction"] == "rises"), "rises at",
                    np.where(dated & (d["direction"] == "falls"), "falls at",
                             np.where(d["best_model"] == "line", "steady trend, no onset", "not emerged")))
    d["emergence"] = what
    d["_k"] = np.select([what == "rises at", what == "falls at"], [0, 1], 2)
    d = d.sort_values(["_k", "midpoint_log10_tokens", "curve"], kind="stable")
    d["order"] = ""
    r = d["_k"] == 0
    d.loc[r, "order"] = [str(i + 1) for i in range(int(r.sum()))]
    return d[["order", "curve", "emergence", "midpoint_log10_tokens", "ci_low", "ci_high", "best_model",
              "null_low", "null_high"]].reset_index(drop=True)


def ability_curves(drops) -> pd.DataFrame:
    """Clean-model ability curves per task family from :class:`stats.drops.DropTables`.

    ``LR:<family>``, ``FC:<family>``, ``PD:<family>`` = mean over the analysed clean items of the
    family of (clean - floor) per checkpoint (the same items the drops use). The shuffled-label PD
    minus chance is the null band ``PD:<family> (shuffled labels)`` of the PD curve (when present).
    Bookkeeping columns (chance, counts, SEMs, ranks) are never curves.
    """
    from .drops import ABILITIES, _floor

    cl = drops.clean
    cols = ["step", "tokens_seen", "curve", "value", "null", "null_of"]
    if cl is None or cl.empty:
        return pd.DataFrame(columns=cols)
    cl = cl[cl["analysed"]]
    parts = []
    fam = cl["family"].astype(str)
    for a in ABILITIES:
        v = cl[a] - _floor(cl, a)
        g = pd.DataFrame({"step": cl["step"], "tokens_seen": cl["tokens_seen"], "fam": fam, "v": v}).groupby(
            ["step", "fam"], as_index=False).agg(tokens_seen=("tokens_seen", "first"), value=("v", "mean"))
        g["curve"] = a.upper() + ":" + g["fam"]
        parts.append(g.assign(null=False, null_of=""))
    if "pd_shuffled" in cl.columns and np.isfinite(cl["pd_shuffled"].to_numpy(float)).any():
        g = pd.DataFrame({"step": cl["step"], "tokens_seen": cl["tokens_seen"], "fam": fam,
                          "v": cl["pd_shuffled"] - cl["pd_floor"]}).groupby(["step", "fam"], as_index=False).agg(
            tokens_seen=("tokens_seen", "first"), value=("v", "mean"))
        g["null_of"] = "PD:" + g["fam"]
        g["curve"] = g["null_of"] + " (shuffled labels)"
        parts.append(g.assign(null=True))
    return pd.concat(parts, ignore_index=True)[cols]


def head_score_curves(head_scores: pd.DataFrame, *, heads: set[str] | None = None) -> pd.DataFrame:
    """The selected heads' score curves from ``head_scores.parquet`` (mean over the selected heads).

    One curve per score (and relation, forward direction where a direction exists): ``heads:<score>``
    or ``heads:relation_index:<relation>``. The fake-tail ``baseline`` score is the *null* of the
    relation-index curve of the same relation (a band, never dated).
    """
    cols = ["step", "tokens_seen", "curve", "value", "null", "null_of"]
    d = head_scores.copy()
    if d.empty or not {"step", "score", "value"} <= set(d.columns):
        return pd.DataFrame(columns=cols)
    d = d[~d["score"].astype(str).isin(["sih_test_p", "sih_test_effect"])]  # selection tests, not scores
    if "direction" in d.columns:
        d = d[d["direction"].isna() | (d["direction"].astype(str).isin(["forward", "", "None", "nan"]))]
    if heads and {"layer", "head"} <= set(d.columns):
        hid = "L" + d["layer"].astype(str) + "H" + d["head"].astype(str)
        if hid.isin(heads).any():
            d = d[hid.isin(heads)]
    if "tokens_seen" not in d.columns:
        d["tokens_seen"] = np.nan
    rel = d["relation"].astype(str) if "relation" in d.columns else pd.Series("", index=d.index)
    rel = rel.where(~rel.isin(["", "None", "nan"]), "")
    score = d["score"].astype(str)
    base = np.where(score == "baseline", "relation_index", score)
    d["curve"] = "heads:" + pd.Series(base, index=d.index) + np.where(rel != "", ":" + rel, "")
    d["null"] = (score == "baseline").to_numpy()
    d["null_of"] = np.where(d["null"], d["curve"], "")
    d.loc[d["null"], "curve"] = d.loc[d["null"], "curve"] + " (fake-tail null)"
    g = d.groupby(["curve", "step"], as_index=False).agg(tokens_seen=("tokens_seen", "first"), value=("value", "mean"),
                                                         null=("null", "first"), null_of=("null_of", "first"))
    return g[cols]
