"""Render every table present in a run folder to PDF and PNG under ``RUN/figures/``.

=========================  ===============================================  =======================
figure (RUN/figures/...)   function                                         reads
=========================  ===============================================  =======================
``ri_heatmaps``            :func:`paper_figures.heatmaps.ri_heatmaps`       head_scores.parquet
``score_curves``           :func:`paper_figures.curves.score_curves`        head_scores.parquet
``icl_levels``             :func:`paper_figures.icl.icl_levels`             icl_summary.parquet (+
                                                                            results.parquet for LR)
``accuracy_vs_shots``      :func:`paper_figures.icl.accuracy_vs_shots`      icl_summary.parquet
``accuracy_vs_shots_by_task``  same, ``by_task=True``                       icl_summary.parquet
``ablation_drops``         :func:`paper_figures.ablation.ablation_drops`    results.parquet (+
                                                                            tables/significance_tidy.csv)
``emergence_timeline``     :func:`paper_figures.emergence.emergence_timeline`  tables/emergence_tidy.csv
                                                                            (or tables/emergence.csv)
``patching_restoration``   :func:`paper_figures.patching.patching_restoration`  patching.parquet
``paths_breakdown``        :func:`paper_figures.paths.paths_breakdown`      paths.parquet
``factors``                :func:`paper_figures.factors.factors_figure`     tables/factors_curves.csv +
                                                                            factors_law.csv
``relations``              :func:`paper_figures.relations.relations_figure` tables/relations_ri.csv (+
                                                                            _overlap, _cross)
=========================  ===============================================  =======================

Without ``icl_summary``, the ICL figures are drawn from the clean rows of ``results``. A figure whose
table is absent is skipped with a logged note; a figure that fails on a present table is logged
with the error and the others are still drawn (``strict=True`` re-raises instead).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import pandas as pd

from .ablation import ablation_drops
from .curves import score_curves
from .emergence import emergence_timeline
from .factors import factors_figure
from .heatmaps import ri_heatmaps
from .icl import accuracy_vs_shots, icl_levels
from .patching import patching_restoration
from .paths import paths_breakdown
from .relations import relations_figure
from .inputs import read_table
from .style import DPI, FORMATS, save_figure

log = logging.getLogger("paper_figures")

#: most tasks for which the per-task accuracy-vs-shots figure is drawn
MAX_TASK_PANELS = 12


def _has_steps(df: pd.DataFrame | None, col: str, value) -> bool:
    return df is not None and col in df.columns and (df[col].astype(str) == value).any()


def _law_params(run: Path) -> dict:
    """The law's constants of a factors study (its manifest), for the figure's reference line."""
    import json

    try:
        law = json.loads((run / "manifest.json").read_text())["spec"]["law"]
        return {"log10_c": float(law["log10_c"]), "exponent": float(law["exponent"]), "curve": law["curve"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def render_run(run_dir: str | Path, *, step: int | None = None, formats: tuple[str, ...] = FORMATS,
               dpi: int = DPI, strict: bool = False) -> list[Path]:
    """Render every figure whose input table exists in ``run_dir``; returns the written files.

    Args:
        run_dir: the run folder (RUN/results.parquet, RUN/head_scores.parquet, RUN/icl_summary.parquet,
            RUN/tables/...).
        step: checkpoint for the single-checkpoint figures (heatmaps, ablation drops); default final.
        formats: file formats (default PDF and PNG).
        dpi: PNG resolution.
        strict: re-raise a figure's error instead of logging it and going on.

    Raises:
        FileNotFoundError: ``run_dir`` is not a folder.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"paper_figures.render_run: {run} is not a folder; point at a run folder "
                                "(the --out of `ablate run` / `ablate demo`).")
    out = run / "figures"
    head_scores = read_table(run, "head_scores")
    icl = read_table(run, "icl_summary")
    results = read_table(run, "results")
    patching = read_table(run, "patching")
    paths = read_table(run, "paths")
    sig = read_table(run / "tables", "significance_tidy.csv")
    factors_curves = read_table(run / "tables", "factors_curves.csv")
    factors_law = read_table(run / "tables", "factors_law.csv")
    rel_ri = read_table(run / "tables", "relations_ri.csv")
    rel_ov = read_table(run / "tables", "relations_overlap.csv")
    rel_cross = read_table(run / "tables", "relations_cross.csv")
    emer = read_table(run / "tables", "emergence_tidy.csv")
    if emer is None:
        emer = read_table(run / "tables", "emergence.csv")

    # a single model (no series) is written with step = NA: treat it as one checkpoint, step 0
    for t in (head_scores, icl, results, patching):
        if t is not None and "step" in t.columns and t["step"].isna().any():
            t["step"] = t["step"].fillna(0).astype("int64")
    n_steps = max((t["step"].nunique() for t in (head_scores, icl, results)
                   if t is not None and "step" in t.columns), default=0)
    icl_source = icl if icl is not None else None
    has_icl = icl is not None or (results is not None and _has_steps(results, "condition", "clean"))
    n_tasks = 0
    if icl is not None and "task" in icl.columns:
        n_tasks = icl["task"].nunique()
    elif results is not None and "task" in results.columns:
        n_tasks = results.loc[results["task"].astype(str) != "lr_docs", "task"].nunique()
    has_ablation = results is not None and "condition" in results.columns and \
        (results["condition"].astype(str) != "clean").any()

    jobs: list[tuple[str, bool, str, Callable[[], plt.Figure]]] = [
        ("ri_heatmaps", _has_steps(head_scores, "score", "relation_index"),
         "head_scores.parquet with relation_index rows", lambda: ri_heatmaps(head_scores, step=step)),
        ("score_curves", head_scores is not None and n_steps > 1, "head_scores.parquet over >= 2 checkpoints",
         lambda: score_curves(head_scores)),
        ("icl_levels", has_icl and n_steps > 1, "icl_summary.parquet or clean rows in results.parquet, >= 2 checkpoints",
         lambda: icl_levels(icl_source, results=results)),
        ("accuracy_vs_shots", has_icl, "icl_summary.parquet or clean rows in results.parquet",
         lambda: accuracy_vs_shots(icl_source, results=results)),
        ("accuracy_vs_shots_by_task", has_icl and 1 < n_tasks <= MAX_TASK_PANELS,
         f"icl_summary.parquet with 2..{MAX_TASK_PANELS} tasks",
         lambda: accuracy_vs_shots(icl_source, results=results, by_task=True)),
        ("ablation_drops", has_ablation, "results.parquet with ablated rows",
         lambda: ablation_drops(results, step=step, significance=sig)),
        ("emergence_timeline", emer is not None and len(emer) > 0, "tables/emergence_tidy.csv or emergence.csv",
         lambda: emergence_timeline(emer)),
        ("patching_restoration", patching is not None and len(patching) > 0, "patching.parquet (operators.patch)",
         lambda: patching_restoration(patching)),
        ("paths_breakdown", paths is not None and len(paths) > 0, "paths.parquet (a [paths] section)",
         lambda: paths_breakdown(paths)),
        ("factors", factors_curves is not None and factors_law is not None,
         "tables/factors_curves.csv and factors_law.csv (a factors study after `ablate stats`)",
         lambda: factors_figure(factors_curves, factors_law, **_law_params(run))),
        ("relations", rel_ri is not None and len(rel_ri) > 0,
         "tables/relations_ri.csv (a run with [scores] kg or heads.by_relation, after `ablate stats`)",
         lambda: relations_figure(rel_ri, rel_ov, rel_cross)),
    ]
    written: list[Path] = []
    for name, present, needs, make in jobs:
        if not present:
            log.info("figures: skipped %s (needs %s in %s)", name, needs, run)
            continue
        try:
            fig = make()
        except Exception as exc:  # one bad table must not stop the other figures
            if strict:
                raise
            log.warning("figures: %s failed: %s: %s", name, type(exc).__name__, exc)
            continue
        try:
            written += save_figure(fig, out / name, formats=formats, dpi=dpi)
        finally:
            plt.close(fig)
        log.info("figures: wrote %s", out / name)
    return written
