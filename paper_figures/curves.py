"""Head-score curves over training: the top heads of each score, on a log axis of tokens seen.

Input: the tidy ``head_scores`` table (see :mod:`paper_figures.heatmaps`). One panel per score
(``relation_index``, ``copying``, ``prefix_matching``; ``baseline`` and ``shuffled`` are nulls, not
panels). In each panel the ``top_k`` curves with the largest value at the final checkpoint are drawn;
a relation-index curve is one (head, relation, direction), labelled ``"L3H5 subj/forward"``. The RI
panel also shows the fake-tail baseline (mean over heads and relations, grey dashed) for scale.
Curves of other heads are not drawn; pass ``heads`` to pick them yourself.
"""

from __future__ import annotations

import pandas as pd
import matplotlib.pyplot as plt
import seaborn as sns

from .inputs import head_label, training_axis
from .style import COLUMN_WIDTH, SCORE_LABELS, TEXT_WIDTH, empty_panel, legend_below, paper_style, palette, tokens_axis

NULL_SCORES = ("baseline", "shuffled")
#: Selection-test rows of a scan (ablate.scores.selection.SELECTION_SCORES): statistics, not curves.
NOT_DRAWN = NULL_SCORES + ("sih_test_p", "sih_test_effect")
SCORE_ORDER = ("relation_index", "prefix_matching", "copying")


def _curve_ids(d: pd.DataFrame) -> pd.Series:
    lab = head_label(d["layer"], d["head"])
    extra = [c for c in ("relation", "direction") if c in d.columns and d[c].notna().any()]
    if extra:
        parts = [d[c].astype("string").fillna("").replace({"nan": "", "None": ""}) for c in extra]
        ext = parts[0]
        for p in parts[1:]:
            ext = ext.str.cat(p, sep="/")
        ext = ext.str.strip("/")
        lab = lab.where(ext == "", lab + " " + ext)
    return lab.astype(str)


def top_curves(head_scores: pd.DataFrame, score: str, top_k: int = 4,
               heads: list[str] | None = None) -> pd.DataFrame:
    """Rows of ``score`` for its ``top_k`` curves by value at the last checkpoint (or the given heads).

    A curve is a head (plus relation/direction when those columns exist); ``curve`` column added.
    """
    d = head_scores[head_scores["score"] == score].copy()
    if d.empty:
        return d.assign(curve=pd.Series(dtype=str))
    d["curve"] = _curve_ids(d)
    if heads is not None:
        hl = head_label(d["layer"], d["head"])
        return d[hl.isin(heads)]
    last = d[d["step"] == d["step"].max()]
    best = last.groupby("curve")["value"].mean().sort_values(ascending=False)
    return d[d["curve"].isin(best.index[:top_k])].assign(
        _rank=lambda x: x["curve"].map({c: i for i, c in enumerate(best.index)})).sort_values(
        ["_rank", "step"]).drop(columns="_rank")


def score_curves(head_scores: pd.DataFrame, *, scores: list[str] | None = None, top_k: int = 4,
                 heads: list[str] | None = None) -> plt.Figure:
    """Score of selected heads over training (x = tokens seen, log scale), one panel per score.

    Args:
        head_scores: tidy head-score table.
        scores: scores to draw (default: every non-null score present, RI first).
        top_k: curves per panel, ranked by the final-checkpoint value.
        heads: draw these heads (``"L3H5"`` strings) instead of the top ones.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: the table lacks the contract columns or has no score to draw.
    """
    need = {"step", "score", "layer", "head", "value"}
    if not need <= set(head_scores.columns):
        raise ValueError(f"paper_figures.score_curves: head_scores lacks {sorted(need - set(head_scores.columns))}.")
    present = [s for s in pd.unique(head_scores["score"].astype(str)) if s not in NOT_DRAWN]
    if scores is None:
        scores = [s for s in SCORE_ORDER if s in present] + sorted(s for s in present if s not in SCORE_ORDER)
    if not scores:
        raise ValueError("paper_figures.score_curves: head_scores has no score other than the null baselines.")
    d, x, xlabel = training_axis(head_scores)
    n = len(scores)
    width = COLUMN_WIDTH if n == 1 else TEXT_WIDTH
    with paper_style():
        fig, axes = plt.subplots(1, n, figsize=(width, 2.6), squeeze=False, layout="constrained")
        for ax, sc in zip(axes[0], scores):
            t = top_curves(d, sc, top_k, heads)
            if t.empty or t[x].nunique() < 1:
                empty_panel(ax, f"no {sc} rows")
                continue
            t = t.groupby(["curve", x], as_index=False, sort=False)["value"].mean()
            order = list(dict.fromkeys(t["curve"]))
            sns.lineplot(data=t, x=x, y="value", hue="curve", hue_order=order, palette=palette(len(order)),
                         marker="o", markersize=3, ax=ax, errorbar=None)
            if sc == "relation_index":
                b = d[d["score"] == "baseline"]
                if len(b):
                    bm = b.groupby(x, as_index=False)["value"].mean()
                    ax.plot(bm[x], bm["value"], color="0.5", ls="--", lw=1.0, label="baseline (mean)")
            tokens_axis(ax, xlabel)
            ax.set_ylabel(SCORE_LABELS.get(sc, sc))
            ax.set_title(SCORE_LABELS.get(sc, sc) + (f": top {len(order)}" if heads is None else ""))
            legend_below(ax, fontsize=6, handlelength=1.5)
            ax.grid(True, which="major", axis="y", alpha=0.5)
            sns.despine(ax=ax)
    return fig
