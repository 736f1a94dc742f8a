"""Multiplicity corrections: thin, NaN-aware wrappers over statsmodels' ``multipletests``.

* Holm (family-wise error) across the pre-registered checkpoints of one (operator, head set).
* Benjamini-Hochberg (false discovery rate) for exploratory breakdowns (per task / relation,
  checkpoints that were not pre-registered).

NaN p-values (tests that could not be run) are left out of the family and stay NaN.
"""

from __future__ import annotations

import numpy as np
from statsmodels.stats.multitest import multipletests


def adjust(pvalues, method: str, alpha: float = 0.05) -> np.ndarray:
    """Adjusted p-values by ``statsmodels.stats.multitest.multipletests(p, alpha, method)``.

    Args:
        pvalues: 1-D p-values; NaN entries are excluded from the family and returned as NaN.
        method: any multipletests method ("holm", "fdr_bh", ...).

    Raises:
        ValueError: p-values outside [0, 1].
    """
    p = np.asarray(pvalues, dtype=float).ravel()
    ok = np.isfinite(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError(f"stats.corrections.adjust: p-values must lie in [0, 1], got {p[ok].min()}..{p[ok].max()}.")
    out = np.full(p.shape, np.nan)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=alpha, method=method)[1]
    return out


def holm(pvalues, alpha: float = 0.05) -> np.ndarray:
    """Holm step-down adjusted p-values (FWER), via multipletests(method="holm")."""
    return adjust(pvalues, "holm", alpha)


def bh(pvalues, alpha: float = 0.05) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (FDR), via multipletests(method="fdr_bh")."""
    return adjust(pvalues, "fdr_bh", alpha)
