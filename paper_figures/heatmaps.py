"""Relation-index heatmaps (layer x head) per relation and direction, beside the fake-tail baseline.

Input: the tidy ``head_scores`` table (producer :mod:`ablate.scores.scan`), one row per
(step, score, relation, direction, layer, head) with ``value`` and ``n_events``:

* ``score == "relation_index"`` rows give RI_h(r) (docs/science.md §2);
* ``score == "baseline"`` rows give the same computation with every tail replaced by a fake tail.
  They are matched to the RI panel by relation and direction when those columns are filled, else
  one pooled baseline is used for every panel;
* a cell whose ``n_events`` is 0 (no qualifying position passed the QK gate) has no RI; it is drawn
  grey, not as 0.

Layout: one row per relation; per direction two panels, RI and its baseline, all on one colour scale
so they can be compared by eye. The colour bar carries the baseline's maximum (solid line) and mean
(dashed line) over heads; a dot marks heads whose RI exceeds the largest baseline value of that
relation and direction (a descriptive marker, not a test: selection rules live in ``ablate``).
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import seaborn as sns

from .inputs import pick_step, step_label
from .style import HEATMAP_CMAP, TEXT_WIDTH, paper_style

_DIR_ORDER = ("forward", "fwd", "reverse", "rev", "backward")


def _order(values, preferred=()) -> list:
    vals = [v for v in dict.fromkeys(values)]
    return [v for v in preferred if v in vals] + sorted((v for v in vals if v not in preferred), key=str)


def _grid(df: pd.DataFrame, layers: list[int], heads: list[int]) -> pd.DataFrame:
    """layer x head matrix of mean ``value``; cells with no events are NaN."""
    d = df
    if "n_events" in d.columns:
        d = d.assign(value=d["value"].where(pd.to_numeric(d["n_events"], errors="coerce").fillna(1) > 0))
    g = d.groupby(["layer", "head"])["value"].mean().unstack("head")
    return g.reindex(index=layers, columns=heads)


def _heat(ax: plt.Axes, g: pd.DataFrame, cmap, vmin: float, vmax: float) -> None:
    """What :func:`seaborn.heatmap` draws (cells, matrix orientation, centred tick labels), without its
    full-figure draw per call (it checks label overlap), which is quadratic in the number of panels."""
    v = np.ma.masked_invalid(g.to_numpy(float))
    ax.pcolormesh(v, cmap=cmap, vmin=vmin, vmax=vmax, linewidth=0, rasterized=True)
    ax.set(xlim=(0, v.shape[1]), ylim=(v.shape[0], 0))
    xs, ys = -(-v.shape[1] // 10), -(-v.shape[0] // 12)  # label every head up to 10, every layer up to 12
    ax.set_xticks(np.arange(0, v.shape[1], xs) + 0.5, [str(c) for c in g.columns[::xs]])
    ax.set_yticks(np.arange(0, v.shape[0], ys) + 0.5, [str(i) for i in g.index[::ys]])
    sns.despine(ax=ax, left=True, bottom=True)


def _prepare(head_scores: pd.DataFrame) -> pd.DataFrame:
    need = {"step", "score", "layer", "head", "value"}
    missing = need - set(head_scores.columns)
    if missing:
        raise ValueError(f"paper_figures.heatmaps: head_scores lacks column(s) {sorted(missing)} "
                         f"(has {list(head_scores.columns)}); expected the ablate.scores.scan contract.")
    d = head_scores.copy()
    for c, fill in (("relation", "all"), ("direction", "forward")):
        if c not in d.columns:
            d[c] = fill
    d["layer"] = d["layer"].astype(int)
    d["head"] = d["head"].astype(int)
    return d


def ri_heatmaps(head_scores: pd.DataFrame, *, step: int | None = None, relations: list[str] | None = None,
                directions: list[str] | None = None, score: str = "relation_index",
                baseline_score: str = "baseline", show_baseline_panels: bool = True) -> plt.Figure:
    """Heatmaps of the relation index (layer x head) per relation and direction, with the baseline.

    Args:
        head_scores: tidy head-score table (module docstring).
        step: checkpoint to show; default the final one that has ``score`` rows.
        relations, directions: subsets / orders to show (default all, forward first).
        score: the score drawn in the main panels (``"relation_index"``; ``"shuffled"`` also works).
        baseline_score: the null drawn beside it (rows with that ``score``), if present.
        show_baseline_panels: draw the baseline as its own panel (else only on the colour bar).

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: no ``score`` rows, unknown step, or a requested relation that is absent.
    """
    d = _prepare(head_scores)
    ri_all = d[d["score"] == score]
    if ri_all.empty:
        raise ValueError(f"paper_figures.ri_heatmaps: no rows with score == {score!r} "
                         f"(scores present: {sorted(d['score'].astype(str).unique())}).")
    s = pick_step(ri_all, step, f"head_scores ({score} rows)")
    ri = ri_all[ri_all["step"] == s]
    bl = d[(d["score"] == baseline_score) & (d["step"] == s)]
    rels = _order(ri["relation"].astype(str))
    if relations is not None:
        bad = [r for r in relations if r not in rels]
        if bad:
            raise ValueError(f"paper_figures.ri_heatmaps: relation(s) {bad} not in head_scores at step {s}; have {rels}.")
        rels = list(relations)
    dirs = _order(ri["direction"].astype(str), _DIR_ORDER) if directions is None else list(directions)
    layers = list(range(int(d["layer"].min()), int(d["layer"].max()) + 1))
    heads = list(range(int(d["head"].min()), int(d["head"].max()) + 1))

    def baseline_rows(rel: str, dr: str) -> pd.DataFrame:
        if bl.empty:
            return bl
        m = bl
        if m["relation"].astype(str).eq(rel).any():
            m = m[m["relation"].astype(str) == rel]
        if m["direction"].astype(str).eq(dr).any():
            m = m[m["direction"].astype(str) == dr]
        return m

    panels = []
    for rel in rels:
        for dr in dirs:
            r = ri[(ri["relation"].astype(str) == rel) & (ri["direction"].astype(str) == dr)]
            b = baseline_rows(rel, dr)
            panels.append((rel, dr, _grid(r, layers, heads) if len(r) else None,
                           _grid(b, layers, heads) if len(b) else None))
    has_bl = not bl.empty
    per_dir = 2 if (has_bl and show_baseline_panels) else 1
    ncols, nrows = len(dirs) * per_dir, len(rels)
    vals = [g.to_numpy() for p in panels for g in p[2:] if g is not None]
    finite = np.concatenate([v[np.isfinite(v)] for v in vals]) if vals else np.empty(0)
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    vmin = min(0.0, float(finite.min())) if finite.size else 0.0
    blv = bl["value"].to_numpy(float) if has_bl else np.empty(0)
    blv = blv[np.isfinite(blv)]

    aspect = len(layers) / max(len(heads), 1)
    pw = min(1.7, (TEXT_WIDTH - 0.9) / ncols)
    ph = float(np.clip(pw * aspect, 0.8, 2.4))
    with paper_style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(min(TEXT_WIDTH, pw * ncols + 0.9), (ph + 0.3) * nrows + 0.7),
                                 squeeze=False, sharex=True, sharey=True, layout="constrained")
        cmap = plt.get_cmap(HEATMAP_CMAP).with_extremes(bad="0.85")
        for i, (rel, dr, g_ri, g_bl) in enumerate(panels):
            row, c0 = divmod(i, len(dirs))
            c0 *= per_dir
            targets = [(axes[row, c0], g_ri, f"{rel}, {dr}: RI")]
            if per_dir == 2:
                targets.append((axes[row, c0 + 1], g_bl, f"{rel}, {dr}: baseline"))
            for ax, g, title in targets:
                if g is None:
                    ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes, color="0.4")
                    ax.set_title(title)
                    continue
                _heat(ax, g, cmap, vmin, vmax)
                ax.set_title(title)
                ax.set_xlabel("")
                ax.set_ylabel("")
            if g_ri is not None and g_bl is not None:
                thr = np.nanmax(g_bl.to_numpy()) if np.isfinite(g_bl.to_numpy()).any() else np.nan
                if np.isfinite(thr):
                    yy, xx = np.nonzero(g_ri.to_numpy() > thr)
                    axes[row, c0].scatter(xx + 0.5, yy + 0.5, s=6, c="white", edgecolors="black",
                                          linewidths=0.4, zorder=3)
        for ax in axes[-1, :]:
            ax.set_xlabel("Head")
        for ax in axes[:, 0]:
            ax.set_ylabel("Layer")
        for ax in axes.ravel():
            ax.tick_params(axis="both", length=0, labelsize=6)
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(vmin, vmax))
        cb = fig.colorbar(sm, ax=axes, fraction=0.04, pad=0.01, aspect=30)
        cb.set_label({"relation_index": "Relation index"}.get(score, score))
        cb.ax.tick_params(labelsize=6)
        note = f"{step_label(d, s)}."
        if blv.size:
            cb.ax.axhline(float(blv.max()), color="black", lw=1.0)
            cb.ax.axhline(float(blv.mean()), color="black", lw=1.0, ls="--")
            note += (f" Colour bar: fake-tail baseline max {blv.max():.2f} (solid), mean {blv.mean():.2f} "
                     "(dashed). Dots: RI above the panel's max baseline. Grey: no qualifying positions.")
        else:
            note += " No baseline rows in head_scores. Grey: no qualifying positions."
        fig.suptitle("Relation index per head", x=0.02, ha="left")
        fig.supxlabel(textwrap.fill(note, 150 if ncols > 2 else 80), fontsize=6, x=0.02, ha="left")
    return fig
