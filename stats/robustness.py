"""Robustness checks: Wilcoxon signed-rank IUT and a crossed random-effects mixed model.

* Wilcoxon: :func:`scipy.stats.wilcoxon` (one-sided, "greater") on the per-task PD - LR and
  PD - FC differences; IUT p = max of the two.
* Mixed model: :class:`statsmodels.regression.mixed_linear_model.MixedLM` on item-level drops::

      drop_{i,a} = beta_a + u_task + u_query + u_checkpoint + e

  with crossed random intercepts for task, query (within task: the item index, which names the
  same query at every shot count, so a query's prompts share one intercept) and checkpoint, written as variance
  components of a single all-encompassing group. The PD - LR and PD - FC contrasts are the fixed
  effects ``beta_PD - beta_LR`` and ``beta_PD - beta_FC``. Every warning raised while fitting
  (ConvergenceWarning, boundary / Hessian warnings) is captured and returned in ``warnings`` and
  ``converged`` is reported: nothing is hidden.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sst


@dataclass
class WilcoxonResult:
    """One-sided Wilcoxon signed-rank p-values and their IUT (max); NaN with reason if not computable."""

    p_lr: float
    p_fc: float
    pvalue: float
    reason: str = ""


def wilcoxon_iut(pd_drop, lr_drop, fc_drop) -> WilcoxonResult:
    """Wilcoxon signed-rank version of the IUT: ``p = max(p_W(PD - LR > 0), p_W(PD - FC > 0))``.

    Returns NaN with a reason for fewer than 2 units or all-zero differences (scipy's zero_method
    "wilcox" drops zero differences, leaving nothing to rank).
    """
    pdd, lrd, fcd = (np.asarray(x, float) for x in (pd_drop, lr_drop, fc_drop))
    ps, reasons = [], []
    for name, d in (("PD-LR", pdd - lrd), ("PD-FC", pdd - fcd)):
        d = d[np.isfinite(d)]
        if d.size < 2:
            ps.append(np.nan)
            reasons.append(f"Wilcoxon {name}: {d.size} unit(s), need >= 2")
            continue
        if np.all(d == 0):
            ps.append(np.nan)
            reasons.append(f"Wilcoxon {name}: all differences are 0")
            continue
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            r = sst.wilcoxon(d, alternative="greater")
        ps.append(float(r.pvalue))
        reasons.extend(f"Wilcoxon {name}: {x.message}" for x in w)
    p = max(ps) if all(np.isfinite(ps)) else float("nan")
    return WilcoxonResult(ps[0], ps[1], p, "; ".join(reasons))


@dataclass
class MixedModelResult:
    """Fixed-effect contrasts of the crossed random-effects model, with its fitting diagnostics."""

    pd_minus_lr: float = float("nan")
    se_pd_minus_lr: float = float("nan")
    p_pd_minus_lr: float = float("nan")
    pd_minus_fc: float = float("nan")
    se_pd_minus_fc: float = float("nan")
    p_pd_minus_fc: float = float("nan")
    variance_components: dict = field(default_factory=dict)
    n_obs: int = 0
    converged: bool = False
    warnings: list[str] = field(default_factory=list)
    reason: str = ""

    @property
    def p_iut(self) -> float:
        """One-sided IUT p of the two model contrasts (max of the one-sided z p-values); NaN when
        either half is NaN (Python's ``max`` would return the other half or NaN by argument order)."""
        a, b = float(self.p_pd_minus_lr), float(self.p_pd_minus_fc)
        return float("nan") if not (np.isfinite(a) and np.isfinite(b)) else max(a, b)


def mixed_model(items: pd.DataFrame, *, value: str = "drop", method: str = "lbfgs",
                maxiter: int = 200) -> MixedModelResult:
    """Fit ``value ~ C(ability)`` with crossed random intercepts (task, item, checkpoint).

    Args:
        items: long table with columns ``ability`` (lr/fc/pd), ``task``, ``item``, ``step`` and ``value``.
        value: the response column (e.g. item-level specific drop).
        method: optimiser passed to ``MixedLM.fit``.

    Returns:
        MixedModelResult; contrasts are beta_PD - beta_LR / beta_PD - beta_FC with one-sided
        ("greater") normal p-values; captured warnings in ``warnings``.
    """
    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import ConvergenceWarning  # noqa: F401  (documented category)

    d = items[["ability", "task", "item", "step", value]].rename(columns={value: "y"})
    d = d[np.isfinite(d["y"])].copy()
    res = MixedModelResult(n_obs=len(d))
    if d["ability"].nunique() < 3:
        res.reason = f"mixed model skipped: abilities present {sorted(d['ability'].unique())}, need lr, fc, pd"
        return res
    d["item_id"] = d["task"].astype(str) + ":" + d["item"].astype(str)
    d["ability"] = pd.Categorical(d["ability"], categories=["pd", "lr", "fc"])
    vc = {"task": "0 + C(task)", "item": "0 + C(item_id)"}
    if d["step"].nunique() > 1:
        vc["checkpoint"] = "0 + C(step)"
    d["one"] = 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = smf.mixedlm("y ~ C(ability)", d, groups="one", re_formula="0", vc_formula=vc)
            fit = model.fit(method=method, maxiter=maxiter)
        except Exception as exc:  # numerical failure is a reportable outcome, not a crash
            res.reason = f"mixed model failed: {type(exc).__name__}: {exc}"
            res.warnings = [f"{w.category.__name__}: {w.message}" for w in caught]
            return res
    res.warnings = [f"{w.category.__name__}: {w.message}" for w in caught]
    res.converged = bool(getattr(fit, "converged", False))
    names = list(fit.fe_params.index)
    lr_name = next(n for n in names if "lr" in n)
    fc_name = next(n for n in names if "fc" in n)
    cov = fit.cov_params()
    for tag, nm in (("lr", lr_name), ("fc", fc_name)):
        est = -float(fit.fe_params[nm])  # beta_PD - beta_a  (PD is the reference level)
        se = float(np.sqrt(cov.loc[nm, nm]))
        setattr(res, f"pd_minus_{tag}", est)
        setattr(res, f"se_pd_minus_{tag}", se)
        setattr(res, f"p_pd_minus_{tag}", float(sst.norm.sf(est / se)) if se > 0 else float("nan"))
    res.variance_components = {k: float(v) for k, v in zip(model.exog_vc.names, np.atleast_1d(fit.vcomp))}
    res.variance_components["residual"] = float(fit.scale)
    if not res.converged:
        res.reason = "mixed model did not converge (see warnings)"
    return res
