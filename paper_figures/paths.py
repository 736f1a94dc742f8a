"""Path patching: through which paths each head set's output reaches the label (docs/science.md §7).

Input: the tidy ``paths`` table of a run with a ``[paths]`` section (producer
:func:`experiments.cells.paths_cell`). The drop per (set, task, path group) is computed by
:func:`stats.paths.path_drops`, the code the paths table uses: ``-(intervened - clean)`` of the gold
label at the query, mean over a task's items. One panel per checkpoint shown (the last three):
a stacked bar per head set (target, induction, the mean of the R random sets), one segment per path
group (direct; later MLPs; later heads' queries, keys, values; the nonlinear remainder), averaged
over tasks, with the total drop as a black diamond. Segments below zero stack downwards.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import matplotlib.pyplot as plt

from .style import COLUMN_WIDTH, palette, paper_style

ORDER_GROUPS = ("direct", "mlp", "q", "k", "v", "nonlinear")
GROUP_LABELS = {"direct": "direct", "mlp": "via MLPs", "q": "via queries", "k": "via keys", "v": "via values",
                "nonlinear": "nonlinear"}


def paths_breakdown(paths: pd.DataFrame, *, max_panels: int = 3) -> plt.Figure:
    """Stacked path drops per head set and checkpoint (module docstring).

    Raises:
        ValueError: the table has no tested set (target / induction).
    """
    from stats.paths import path_drops

    d = path_drops(paths)
    d = d.groupby(["step", "role", "control_index", "group"], dropna=False)["drop"].mean().reset_index()
    d = d.groupby(["step", "role", "group"], dropna=False)["drop"].mean().reset_index()  # random: mean of R
    roles = [r for r in ("target", "induction", "random") if r in set(d["role"])]
    if not {"target", "induction"} & set(roles):
        raise ValueError("paper_figures.paths_breakdown: the paths table has no target or induction set")
    steps = sorted(d["step"].unique())[-max_panels:]
    rnd = paths[paths["role"] == "random"]
    nr = rnd.groupby("step")["head_set"].nunique()  # distinct random sets of each checkpoint
    colors = dict(zip(ORDER_GROUPS, palette(len(ORDER_GROUPS))))
    with paper_style():
        fig, axes = plt.subplots(1, len(steps), figsize=(COLUMN_WIDTH * max(1, len(steps)) / 1.6, 2.6),
                                 sharey=True, layout="constrained", squeeze=False)
        for ax, st in zip(axes[0], steps):
            g = d[d["step"] == st]
            x = np.arange(len(roles))
            pos, neg = np.zeros(len(roles)), np.zeros(len(roles))
            for grp in ORDER_GROUPS:
                v = np.array([g[(g["role"] == r) & (g["group"] == grp)]["drop"].sum() for r in roles])
                base = np.where(v >= 0, pos, neg)
                ax.bar(x, v, bottom=base, color=colors[grp], width=0.6,
                       label=GROUP_LABELS[grp] if st == steps[0] else None)
                pos, neg = pos + np.clip(v, 0, None), neg + np.clip(v, None, 0)
            tot = [g[(g["role"] == r) & (g["group"] == "total")]["drop"].sum() for r in roles]
            ax.scatter(x, tot, marker="D", color="black", s=14, zorder=3, label="total" if st == steps[0] else None)
            ax.axhline(0, color="0.5", lw=0.6)
            ax.set_xticks(x)
            ax.set_xticklabels([f"random\n(R = {int(nr.get(st, 0))})" if r == "random" else r for r in roles])
            ax.set_title(f"step {st}")
        axes[0][0].set_ylabel("drop of the gold label\n(clean - path-patched)")
        fig.legend(loc="outside right upper", frameon=False)
    return fig
