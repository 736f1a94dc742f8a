"""Emergence timeline: each curve's fitted sigmoid midpoint (log10 tokens) with its 95% CI.

Input: the per-curve emergence table written by :func:`stats.tables.write_tables`:
``RUN/tables/emergence_tidy.csv`` (numeric: ``curve``, ``midpoint_log10_tokens``, ``ci_low``,
``ci_high``, ``change_point_log10_tokens``, ``note``, ...) or, when only the display table exists,
``RUN/tables/emergence.csv`` (APA strings such as ``"9.20 [9.10, 9.30]"``, parsed back by
:func:`emergence_from_display`).

One row per curve, sorted by midpoint (earliest on top); the change point of
:func:`stats.emergence.change_point` is a hollow diamond for cross-checking; curves without a dated
rise are listed at the bottom as "not dated". Colours group curves by their prefix (``ICL:``,
``heads:``, ...), as written by :func:`stats.api.run_stats`.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import seaborn as sns

from matplotlib.ticker import FuncFormatter

from .inputs import fmt_tokens
from .style import COLUMN_WIDTH, paper_style, palette

_NUM = r"(-?\d+(?:\.\d+)?)"
_CI = re.compile(rf"^\s*{_NUM}(?:\s*\[\s*{_NUM}\s*,\s*{_NUM}\s*\])?\s*$")


def _parse_ci(cell) -> tuple[float, float, float]:
    m = _CI.match(str(cell))
    if not m:
        return np.nan, np.nan, np.nan
    return tuple(float(v) if v is not None else np.nan for v in m.groups())


def emergence_from_display(display: pd.DataFrame) -> pd.DataFrame:
    """Numeric columns from the APA display table (``emergence.csv``)."""
    mid_col = next((c for c in display.columns if c.startswith("midpoint")), None)
    if "curve" not in display.columns or mid_col is None:
        raise ValueError(f"paper_figures.emergence: table lacks 'curve'/'midpoint...' columns ({list(display.columns)}).")
    vals = np.array([_parse_ci(v) for v in display[mid_col]], dtype=float).reshape(-1, 3)
    out = pd.DataFrame({"curve": display["curve"].astype(str), "midpoint_log10_tokens": vals[:, 0],
                        "ci_low": vals[:, 1], "ci_high": vals[:, 2]})
    cp = next((c for c in display.columns if c.startswith("change point")), None)
    out["change_point_log10_tokens"] = pd.to_numeric(display[cp], errors="coerce") if cp else np.nan
    out["note"] = display["note"].fillna("").astype(str) if "note" in display.columns else ""
    return out


def normalise_emergence(table: pd.DataFrame) -> pd.DataFrame:
    """Numeric per-curve frame from either the tidy or the display emergence table."""
    if "midpoint_log10_tokens" in table.columns:
        d = table.copy()
        for c in ("ci_low", "ci_high", "change_point_log10_tokens"):
            d[c] = pd.to_numeric(d[c], errors="coerce") if c in d.columns else np.nan
        d["midpoint_log10_tokens"] = pd.to_numeric(d["midpoint_log10_tokens"], errors="coerce")
        d["note"] = d["note"].fillna("").astype(str) if "note" in d.columns else ""
        d["curve"] = d["curve"].astype(str)
        return d
    return emergence_from_display(table)


def emergence_timeline(emergence: pd.DataFrame, *, curves: list[str] | None = None) -> plt.Figure:
    """Sigmoid midpoints with 95% CIs per curve, on a log10-tokens axis.

    Args:
        emergence: per-curve emergence table (tidy or display form, module docstring).
        curves: subset / order of curves (default all, sorted by midpoint).

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: empty table or unknown columns.
    """
    d = normalise_emergence(emergence)
    if curves is not None:
        d = d[d["curve"].isin(curves)]
    if d.empty:
        raise ValueError("paper_figures.emergence_timeline: no curves to draw.")
    dated = d[np.isfinite(d["midpoint_log10_tokens"])].sort_values("midpoint_log10_tokens")
    undated = d[~np.isfinite(d["midpoint_log10_tokens"])]
    order = list(dated["curve"]) + list(undated["curve"])
    groups = [c.split(":", 1)[0] if ":" in c else "curve" for c in order]
    gpal = dict(zip(dict.fromkeys(groups), palette(len(set(groups)))))
    n = len(order)
    with paper_style():
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 0.9 + 0.22 * n), layout="constrained")
        ys = {c: i for i, c in enumerate(order)}
        xs_all = np.concatenate([dated[c].to_numpy(float) for c in
                                 ("midpoint_log10_tokens", "ci_low", "ci_high", "change_point_log10_tokens")])
        xs_all = np.concatenate([xs_all, d["change_point_log10_tokens"].to_numpy(float)])
        xs_all = xs_all[np.isfinite(xs_all)]
        for r in dated.itertuples(index=False):
            y = ys[r.curve]
            col = gpal[r.curve.split(":", 1)[0] if ":" in r.curve else "curve"]
            lo, hi = r.ci_low, r.ci_high
            if np.isfinite(lo) and np.isfinite(hi):
                ax.plot([lo, hi], [y, y], color=col, lw=1.4, solid_capstyle="butt")
            ax.plot(r.midpoint_log10_tokens, y, "o", color=col, markersize=4.5, zorder=3)
        for r in d.itertuples(index=False):
            if np.isfinite(r.change_point_log10_tokens):
                ax.plot(r.change_point_log10_tokens, ys[r.curve], "D", mfc="none", mec="0.35", markersize=3.5,
                        mew=0.7, zorder=2)
        ax.set_yticks(range(n))
        ax.set_yticklabels([c + (" (not dated)" if c in set(undated["curve"]) else "") for c in order])
        if not xs_all.size:
            ax.text(0.5, 0.5, "no curve has a dated rise", transform=ax.transAxes, ha="center", va="center",
                    fontsize=7, color="0.4")
        ax.set_ylim(n - 0.5, -0.5)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_tokens(10 ** v)))
        ax.set_xlabel("Tokens seen (log scale): sigmoid midpoint, 95% CI")
        ax.grid(True, axis="x", alpha=0.5)
        h = [plt.Line2D([], [], color=c, marker="o", lw=1.4, markersize=4) for c in gpal.values()]
        lab = list(gpal)
        h.append(plt.Line2D([], [], marker="D", mfc="none", mec="0.35", ls="none", markersize=3.5))
        lab.append("change point")
        ax.legend(h, lab, loc="center left", bbox_to_anchor=(1.01, 0.5))
        sns.despine(ax=ax)
        ax.set_title("Emergence over training")
    return fig
