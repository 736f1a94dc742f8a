"""Restoration by patching: how much of the clean label mapping each head set brings back.

Input: the tidy ``patching`` table of a run with ``operators.patch = true`` (producer
:func:`experiments.tidy.patching_table`). Restoration per (step, set, task) is computed by
:func:`stats.patching.restoration_units`, the same code the restoration tests use: 1 = patching the
set's clean outputs (at the query token) into the shuffled-label prompt restores the clean
behaviour, 0 = no effect. Tasks where shuffling did not hurt are excluded, as in the tests.

* one checkpoint: points per set with 95% bootstrap CIs over tasks, every task as a faint dot;
* several checkpoints: restoration over training (log tokens), one line per set, 95% CI bands
  over tasks; the R random sets are pooled into one grey line.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import seaborn as sns

from .inputs import step_label, training_axis
from .style import COLUMN_WIDTH, condition_palette, paper_style, tokens_axis


def patching_restoration(patching: pd.DataFrame, *, metric: str = "gold_logprob", n_boot: int = 1000) -> plt.Figure:
    """Restoration of the clean behaviour by patching each head set (module docstring).

    Raises:
        ValueError: no task has a clean - corrupted gap above the threshold (nothing to restore).
    """
    from stats.patching import restoration_units

    u = restoration_units(patching, metric=metric)
    u = u[np.isfinite(u["restoration"].astype(float))]
    if u.empty:
        raise ValueError("paper_figures.patching_restoration: every task was excluded (shuffling the labels "
                         "did not lower the clean score by the threshold), so there is nothing to restore.")
    pal = condition_palette(u["condition"].astype(str))
    order = list(pal)
    # random sets: one value per (step, task) = mean over the R sets, so every set has one value per task
    per_task = u.groupby(["step", "tokens_seen", "condition", "task"], dropna=False)["restoration"].mean().reset_index()
    nr = u.loc[u["condition"] == "random", "control_index"].nunique()
    labels = {c: (f"random (R = {nr})" if c == "random" else c) for c in order}
    with paper_style():
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.4), layout="constrained")
        if per_task["step"].nunique() == 1:
            sns.stripplot(data=per_task, x="condition", y="restoration", order=order, color="0.6", size=2.5,
                          jitter=0.12, ax=ax)
            sns.pointplot(data=per_task, x="condition", y="restoration", order=order, hue="condition",
                          hue_order=order, palette=pal, errorbar=("ci", 95), n_boot=n_boot, seed=0,
                          linestyle="none", markers="o", markersize=5, capsize=0.1, legend=False, ax=ax)
            ax.set_xticks(range(len(order)))
            ax.set_xticklabels([labels[c] for c in order])
            ax.set_xlabel(f"heads patched, {step_label(per_task, int(per_task['step'].iloc[0]))}")
        else:
            d, x, xlabel = training_axis(per_task)
            sns.lineplot(data=d, x=x, y="restoration", hue="condition", hue_order=order, palette=pal,
                         errorbar=("ci", 95), n_boot=n_boot, seed=0, marker="o", markersize=3.5, ax=ax)
            tokens_axis(ax, xlabel)
            h, l = ax.get_legend_handles_labels()
            ax.legend(h, [labels.get(s, s) for s in l], title="heads patched")
        for y in (0.0, 1.0):
            ax.axhline(y, color="0.5", lw=0.8, ls=":")
        ax.set_ylabel(f"Restoration ({metric})")
        ax.grid(True, axis="y", alpha=0.5)
        sns.despine(ax=ax)
        ax.set_title("Clean outputs patched into shuffled-label prompts\n(95% CI over tasks)", loc="left")
    return fig
