"""Contrasts between abilities: paired sign-flip tests, the intersection-union test, empirical p.

The primary hypothesis (docs/statistics.md) is "PD drops more than LR **and** more than FC". As an
intersection-union test (IUT; Berger 1982) it rejects H0 = H0_LR union H0_FC only when both

    H0_LR: E[d_PD - d_LR] <= 0      and      H0_FC: E[d_PD - d_FC] <= 0

are rejected, each by a one-sided paired sign-flip permutation test over tasks (items nested:
averaged within task first). Its p-value is ``p_IUT = max(p_LR, p_FC)``; it is a level-alpha test
without any multiplicity correction, and it is exact (size = alpha up to the discreteness of the
permutation distribution) at the least-favourable null (one difference zero, the other large).

The sign-flip tests are one matrix product per batch of datasets (sign vectors x units), equal to
:func:`scipy.stats.permutation_test` (``permutation_type="samples"``; the equality is tested) but
fast enough for calibration studies of thousands of datasets. With n units, all 2^n sign vectors
are enumerated when ``2^n <= max_exact`` (p = #{T* >= T} / 2^n, the identity included); otherwise
``n_resamples`` random sign vectors are drawn with a seed (p = (1 + #{T* >= T}) / (n_resamples + 1)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_EXACT = 2 ** 16
DEFAULT_RESAMPLES = 9999


def _mean_stat(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


@dataclass(frozen=True)
class SignFlipResult:
    """Result of :func:`sign_flip_test` (arrays when the input was batched)."""

    statistic: np.ndarray | float
    pvalue: np.ndarray | float
    exact: bool
    n: int
    n_resamples: int
    min_p: float


def _sign_matrix(n: int, exact: bool, n_resamples: int, seed: int | None) -> np.ndarray:
    """All 2^n sign vectors (exact) or ``n_resamples`` random ones, as a float (B, n) matrix."""
    if exact:
        codes = np.arange(2 ** n, dtype=np.int64)[:, None] >> np.arange(n, dtype=np.int64)[None, :]
        return 1.0 - 2.0 * (codes & 1)
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([-1.0, 1.0]), size=(int(n_resamples), n))


def sign_flip_test(diffs: np.ndarray, *, alternative: str = "greater", max_exact: int = DEFAULT_MAX_EXACT,
                   n_resamples: int = DEFAULT_RESAMPLES, seed: int | None = 0) -> SignFlipResult:
    """One-sided (or two-sided) paired sign-flip permutation test of mean(diffs) = 0.

    Statistic ``T = mean_t d_t``; null distribution ``T* = mean_t s_t d_t`` with independent signs
    ``s_t = +-1`` (valid when each d_t is symmetric about 0 under H0). All batches are tested at
    once as one matrix product ``signs (B, n) @ d (n, G)`` (the same sign vectors for every batch
    row, drawn once with the seed); the p-values equal
    :func:`scipy.stats.permutation_test` (``permutation_type="samples"``) -- tested.

    * exact (``2^n <= max_exact``): ``p = #{T* >= T} / 2^n`` over all sign vectors (identity included);
    * Monte Carlo: ``p = (1 + #{T* >= T}) / (n_resamples + 1)`` (never 0).

    Ties are counted with a relative tolerance of 1e-12 (as scipy does), so 0/1 data give exact
    p-values.

    Args:
        diffs: shape (..., n): paired differences per unit (the last axis are the units; leading
            axes are independent batches, e.g. simulated datasets). Must be finite.
        alternative: "greater" (H1: mean > 0), "less" or "two-sided".
        max_exact: enumerate all 2^n sign vectors when 2^n <= max_exact.
        n_resamples: Monte Carlo sign vectors otherwise.
        seed: seed of the Monte Carlo draw.

    Returns:
        SignFlipResult with ``pvalue`` of shape ``diffs.shape[:-1]`` (a float for 1-D input).

    Raises:
        ValueError: fewer than 2 units, non-finite differences, unknown alternative.
    """
    d = np.asarray(diffs, dtype=float)
    if d.ndim == 0 or d.shape[-1] < 2:
        n = 0 if d.ndim == 0 else d.shape[-1]
        raise ValueError(f"stats.contrasts.sign_flip_test: needs >= 2 units (tasks) on the last axis, got {n}. "
                         "A paired test over tasks cannot be run on a single task; add tasks or report the "
                         "contrast descriptively.")
    if not np.all(np.isfinite(d)):
        raise ValueError("stats.contrasts.sign_flip_test: differences contain NaN/inf; drop units with a "
                         "missing ability before testing (see stats.drops.unit_table 'valid').")
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(f"stats.contrasts.sign_flip_test: alternative must be 'greater', 'less' or "
                         f"'two-sided', got {alternative!r}.")
    n = d.shape[-1]
    exact = 2.0 ** n <= max_exact
    nres = int(2 ** n) if exact else int(n_resamples)
    flat = d.reshape(-1, n)
    obs = flat.mean(axis=1)
    signs = _sign_matrix(n, exact, nres, seed)
    counts = np.zeros(flat.shape[0])
    for start in range(0, signs.shape[0], 8192):  # bounded memory: (chunk, G) at a time
        null = signs[start:start + 8192] @ flat.T / n
        tol = 1e-12 * np.maximum(1.0, np.abs(obs))
        if alternative == "greater":
            counts += np.sum(null >= obs - tol, axis=0)
        elif alternative == "less":
            counts += np.sum(null <= obs + tol, axis=0)
        else:
            counts += np.sum(np.abs(null) >= np.abs(obs) - tol, axis=0)
    p = counts / nres if exact else (1.0 + counts) / (nres + 1.0)
    p = np.minimum(p, 1.0)
    min_p = 1.0 / nres if exact else 1.0 / (nres + 1)
    if d.ndim == 1:
        return SignFlipResult(float(obs[0]), float(p[0]), exact, n, nres, min_p)
    shape = d.shape[:-1]
    return SignFlipResult(obs.reshape(shape), p.reshape(shape), exact, n, nres, min_p)


@dataclass(frozen=True)
class IUTResult:
    """Intersection-union test result: ``pvalue = max(p_lr, p_fc)``."""

    p_lr: np.ndarray | float
    p_fc: np.ndarray | float
    pvalue: np.ndarray | float
    mean_pd_lr: np.ndarray | float
    mean_pd_fc: np.ndarray | float
    exact: bool
    n: int
    min_p: float


def iut_test(pd_drop: np.ndarray, lr_drop: np.ndarray, fc_drop: np.ndarray, *,
             max_exact: int = DEFAULT_MAX_EXACT, n_resamples: int = DEFAULT_RESAMPLES,
             seed: int | None = 0) -> IUTResult:
    """IUT of "PD drops more than LR and more than FC" over paired units.

    ``p_IUT = max(p(PD - LR > 0), p(PD - FC > 0))``, each a one-sided sign-flip test.

    Args:
        pd_drop, lr_drop, fc_drop: arrays of shape (..., n) of per-task drops (same shapes).

    Raises:
        ValueError: shape mismatch, < 2 units, non-finite values.
    """
    pdd, lrd, fcd = (np.asarray(x, dtype=float) for x in (pd_drop, lr_drop, fc_drop))
    if not (pdd.shape == lrd.shape == fcd.shape):
        raise ValueError(f"stats.contrasts.iut_test: PD/LR/FC drops must have equal shapes, got "
                         f"{pdd.shape}, {lrd.shape}, {fcd.shape}.")
    a = sign_flip_test(pdd - lrd, max_exact=max_exact, n_resamples=n_resamples, seed=seed)
    b = sign_flip_test(pdd - fcd, max_exact=max_exact, n_resamples=n_resamples,
                       seed=None if seed is None else seed + 1)
    p = np.maximum(a.pvalue, b.pvalue)
    if np.ndim(p) == 0:
        p = float(p)
    return IUTResult(a.pvalue, b.pvalue, p, a.statistic, b.statistic, a.exact, a.n, a.min_p)


def iut_statistic(pd_drop: np.ndarray, lr_drop: np.ndarray, fc_drop: np.ndarray, axis: int = -1) -> np.ndarray:
    """``T = min(mean(PD - LR), mean(PD - FC))``: the statistic compared with random head sets."""
    pdd = np.asarray(pd_drop, float)
    return np.minimum(np.nanmean(pdd - lr_drop, axis=axis), np.nanmean(pdd - fc_drop, axis=axis))


def empirical_p(observed: float, null: np.ndarray, *, min_resolution: float | None = None) -> float:
    """Empirical p against R null statistics (e.g. random head sets), one-sided "greater".

    ``p = (1 + #{null_r >= observed}) / (R + 1)`` (Phipson & Smyth 2010); never 0.

    Args:
        observed: the statistic of the tested head set.
        null: R statistics of the matched random head sets (NaN entries are dropped).
        min_resolution: if given, require that the smallest attainable p, 1/(R+1), is <= it.

    Raises:
        ValueError: no finite null values, or R too small for ``min_resolution``.
    """
    nul = np.asarray(null, dtype=float)
    nul = nul[np.isfinite(nul)]
    r = nul.size
    if r == 0:
        raise ValueError("stats.contrasts.empirical_p: no random head sets (R = 0); run matched random "
                         "controls (condition 'random') to get an empirical p.")
    if min_resolution is not None and 1.0 / (r + 1) > min_resolution:
        need = int(np.ceil(1.0 / min_resolution - 1))
        raise ValueError(f"stats.contrasts.empirical_p: R = {r} random head sets give p >= 1/(R+1) = "
                         f"{1 / (r + 1):.3f}, above the requested resolution {min_resolution:g}; "
                         f"run R >= {need} random sets.")
    if not np.isfinite(observed):
        return float("nan")
    return float((1 + np.sum(nul >= observed)) / (r + 1))
