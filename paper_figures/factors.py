"""The factors study's figure (:mod:`stats.factors`): induction curves per variant, and the measured
induction midpoints against the Aoyama et al. (2025) law.

Left panel: the best prefix-matching score against log10 tokens seen, one line per variant (seaborn
``lineplot``), each dated midpoint marked with its bootstrap CI as a horizontal bar. Right panel: the
measured midpoint (log10 tokens, CI as error bars) against log10(B * C), the law's line ``c + e
log10(B * C)`` dashed, and the least-squares fit through the dated variants that change only B and C
solid (when >= 2 distinct B * C are dated; :func:`stats.factors.bxc_family`; variants that change
another factor are squares); a censored variant (still rising at its last checkpoint) is a triangle at
its lower bound, the tokens it was trained on. Reads ``RUN/tables/factors_curves.csv`` and ``factors_law.csv`` (``ablate stats``).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from stats.factors import bxc_family

from .style import TEXT_WIDTH, palette, paper_style

__all__ = ["factors_figure"]


def factors_figure(curves: pd.DataFrame, law: pd.DataFrame, *, log10_c: float = 5.7, exponent: float = 0.5,
                   curve: str = "induction") -> plt.Figure:
    """The two-panel figure of the module docstring.

    Raises:
        ValueError: ``curves`` has no row of ``curve``.
    """
    c = curves[(curves["curve"] == curve) & (curves["tokens_seen"] > 0)].copy()
    if c.empty:
        raise ValueError(f"paper_figures.factors_figure: no {curve!r} curve in the factors table")
    c["log10 tokens seen"] = np.log10(c["tokens_seen"].astype(float))
    variants = list(dict.fromkeys(law["variant"])) if len(law) else sorted(c["variant"].unique())
    colors = dict(zip(variants, palette(len(variants))))
    lw = law.copy()
    for col in ("measured_log10_tokens", "ci_low", "ci_high", "predicted_log10_tokens"):
        lw[col] = pd.to_numeric(lw[col], errors="coerce")
    with paper_style():
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(TEXT_WIDTH, 2.7), layout="constrained")
        sns.lineplot(data=c, x="log10 tokens seen", y="value", hue="variant", hue_order=variants, palette=colors,
                     marker="o", markersize=3, ax=ax)
        ax.set_ylabel("best prefix-matching score" if curve == "induction" else curve)
        ytop = ax.get_ylim()[1]
        for r in lw.itertuples():
            if np.isfinite(r.measured_log10_tokens):
                ax.plot([r.ci_low, r.ci_high], [ytop * 0.97] * 2, color=colors[r.variant], lw=2, alpha=0.7)
                ax.plot([r.measured_log10_tokens], [ytop * 0.97], "|", color=colors[r.variant], ms=8)
        ax.set_title("induction forms (bars: dated midpoint, 95% CI)")
        ax.legend(fontsize=6, frameon=False)
        x = np.log10(lw["BxC"].astype(float).to_numpy())
        xs = np.linspace(x.min() - 0.2, x.max() + 0.2, 20) if len(x) else np.linspace(2, 4, 20)
        bx.plot(xs, log10_c + exponent * xs, "--", color="0.4", lw=1,
                label=f"law: {log10_c} + {exponent} log10(B*C)")
        after = pd.to_numeric(lw.get("onset_after_log10_tokens", pd.Series(np.nan, index=lw.index)), errors="coerce")
        fam = bxc_family(lw)
        for r, xi, lb, in_fam in zip(lw.itertuples(), x, after, fam):
            tag = "" if in_fam else " (other factor)"
            if np.isfinite(r.measured_log10_tokens):
                bx.errorbar([xi], [r.measured_log10_tokens],
                            yerr=[[r.measured_log10_tokens - r.ci_low], [r.ci_high - r.measured_log10_tokens]],
                            fmt="o" if in_fam else "s", color=colors[r.variant], ms=4, capsize=2, label=r.variant + tag)
            elif np.isfinite(lb):  # censored: the onset lies after the trained tokens (a lower bound)
                bx.plot([xi], [lb], "^", color=colors[r.variant], ms=6, label=f"{r.variant}{tag}: after 10^{lb:.2f}")
        dated = np.isfinite(lw["measured_log10_tokens"].to_numpy(float)) & fam
        if dated.sum() >= 2 and len(set(x[dated])) >= 2:
            b, a = np.polyfit(x[dated], lw["measured_log10_tokens"].to_numpy(float)[dated], 1)
            bx.plot(xs, a + b * xs, "-", color="black", lw=1, label=f"fit (B, C only): exponent {b:.2f}")
        bx.set_xlabel("log10(B x C)  (sequences x tokens per batch)")
        bx.set_ylabel("induction midpoint, log10 tokens")
        bx.set_title("measured vs the Aoyama et al. (2025) law")
        bx.legend(fontsize=6, frameon=False)
    return fig
