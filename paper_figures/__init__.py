"""Paper-ready figures from a run folder's tidy tables (seaborn, Agg backend).

::

    from paper_figures import render_run
    render_run("RUN")          # RUN/figures/*.pdf and *.png for every table present

Figure functions (each returns a :class:`matplotlib.figure.Figure`):
:func:`ri_heatmaps`, :func:`score_curves`, :func:`icl_levels`, :func:`accuracy_vs_shots`,
:func:`ablation_drops`, :func:`emergence_timeline`; :func:`save_figure` writes PDF + PNG.
"""

from .ablation import ablation_drops
from .curves import score_curves
from .emergence import emergence_timeline
from .heatmaps import ri_heatmaps
from .icl import accuracy_vs_shots, icl_levels
from .render import render_run
from .style import COLUMN_WIDTH, TEXT_WIDTH, paper_style, save_figure

__all__ = ["ablation_drops", "accuracy_vs_shots", "emergence_timeline", "icl_levels", "render_run",
           "ri_heatmaps", "save_figure", "score_curves", "paper_style", "COLUMN_WIDTH", "TEXT_WIDTH"]
