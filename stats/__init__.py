"""stats: normalised drops, IUT sign-flip tests, effect sizes, corrections, emergence, APA tables.

Entry points: :func:`stats.api.analyze`, :func:`stats.api.run_stats`.
"""

from .api import SignificanceResult, analyze, run_stats
from .drops import Columns
from .simulate import simulate_curves, simulate_results

__all__ = ["SignificanceResult", "analyze", "run_stats", "Columns", "simulate_results", "simulate_curves"]
