"""One consistent paper style for every figure: sizes, fonts, palettes, and saving.

Sizes follow the usual two-column paper (ACL / NeurIPS-like): a figure that spans one column is
``COLUMN_WIDTH`` = 3.4 in wide, one that spans the page ``TEXT_WIDTH`` = 7.0 in. Fonts are 8 pt
(7 pt ticks and legends), which stays readable when the PDF is placed at 100 % in the paper.

Colours come from seaborn's ``"colorblind"`` palette (Okabe-Ito-like, safe for the common forms
of colour blindness); ordered quantities (shots, checkpoints) use the perceptually uniform,
colour-blind-safe ``"viridis"`` map; heatmaps use ``"rocket_r"`` (light = low), with the
baseline marked in black. Everything is drawn with the non-interactive Agg backend.

Usage::

    from paper_figures.style import paper_style, save_figure
    with paper_style():
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.4))
        ...
    save_figure(fig, run / "figures" / "my_figure")      # my_figure.pdf + my_figure.png
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterable, Iterator

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display: figures are only ever written to files

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

#: width of one column of a two-column paper, inches
COLUMN_WIDTH: float = 3.4
#: width of the full text block (both columns), inches
TEXT_WIDTH: float = 7.0
#: qualitative palette (colour-blind safe)
PALETTE: str = "colorblind"
#: sequential colour map for ordered hues (shots, checkpoints)
SEQUENTIAL: str = "viridis"
#: colour map for heatmaps (light = low score)
HEATMAP_CMAP: str = "rocket_r"
#: default raster resolution of PNGs
DPI: int = 200
#: file formats written by :func:`save_figure`
FORMATS: tuple[str, ...] = ("pdf", "png")

ABILITY_LABELS: dict[str, str] = {"lr": "Loss reduction (LR)", "fc": "Format compliance (FC)",
                                  "pd": "Pattern discovery (PD)"}
SCORE_LABELS: dict[str, str] = {"relation_index": "Relation index", "baseline": "Fake-tail baseline",
                                "copying": "Copying score", "prefix_matching": "Prefix-matching score",
                                "shuffled": "Shuffled-tail RI"}
#: fixed order of ablation conditions, so a condition keeps its colour in every figure
CONDITION_ORDER: tuple[str, ...] = ("target", "induction", "random")

RC: dict[str, object] = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "figure.titlesize": 9,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "grid.linewidth": 0.4,
    "legend.frameon": False,
    "pdf.fonttype": 42,  # embed TrueType: editable text, accepted by conference checkers
    "ps.fonttype": 42,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "figure.dpi": 100,
}


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Context in which seaborn/matplotlib draw in the paper style (restored on exit)."""
    with sns.axes_style("ticks"), plt.rc_context(RC):
        yield


def palette(n: int) -> list:
    """``n`` colour-blind-safe qualitative colours."""
    return sns.color_palette(PALETTE, n_colors=max(n, 1))


def condition_palette(conditions: Iterable[str]) -> dict[str, tuple]:
    """Stable colour per ablation condition (target, induction, random first, then others)."""
    conds = list(dict.fromkeys(conditions))
    order = [c for c in CONDITION_ORDER if c in conds] + [c for c in conds if c not in CONDITION_ORDER]
    cols = sns.color_palette(PALETTE, n_colors=10)
    fixed = {"target": cols[3], "induction": cols[0], "random": cols[7]}
    free = [c for i, c in enumerate(cols) if i not in (0, 3, 7)]
    out, j = {}, 0
    for c in order:
        if c in fixed:
            out[c] = fixed[c]
        else:
            out[c] = free[j % len(free)]
            j += 1
    return out


def sequential_palette(values: Iterable) -> dict:
    """Ordered colours (viridis, colour-blind safe) for sorted distinct ``values``."""
    vals = sorted(dict.fromkeys(values))
    cols = sns.color_palette(SEQUENTIAL, n_colors=max(len(vals), 1))
    return dict(zip(vals, cols))


def save_figure(fig: plt.Figure, base: str | Path, formats: Iterable[str] = FORMATS, dpi: int = DPI) -> list[Path]:
    """Write ``fig`` to ``base.<fmt>`` for every format (folders created); returns the paths.

    The figure is left open (the caller owns it); :func:`paper_figures.render.render_run` closes it.
    """
    base = Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        p = base.with_suffix("." + fmt.lstrip("."))
        fig.savefig(p, dpi=dpi, format=fmt.lstrip("."))
        paths.append(p)
    return paths


def tokens_axis(ax: plt.Axes, label: str = "Tokens seen") -> None:
    """Log-scaled x axis of training tokens (or steps) with compact labels (``2B``, ``500M``)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from .inputs import fmt_tokens

    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    decades = np.log10(hi / lo) if lo > 0 and hi > lo else 3.0
    subs = (1.0,) if decades > 3 else (1.0, 3.0) if decades > 1.5 else (1.0, 2.0, 5.0)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_tokens(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(label)


def empty_panel(ax: plt.Axes, text: str) -> None:
    """A panel that says why it is empty instead of raising."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=7, color="0.4", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    sns.despine(ax=ax, left=True, bottom=True)


def legend_below(ax: plt.Axes, *, ncol: int = 1, points: float = 30.0, **kw) -> None:
    """Axes legend placed under the x-axis label (offset in points, so panel size does not matter)."""
    from matplotlib.transforms import ScaledTranslation

    tr = ax.transAxes + ScaledTranslation(0, -points / 72, ax.figure.dpi_scale_trans)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=tr, ncol=ncol, **kw)
