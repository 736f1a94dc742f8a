"""Relations beyond the paper's (Q1, docs/science.md §9): which heads serve which relation.

Input: the relation tables ``ablate stats`` writes for a run that scores KG relations or selects
SIHs per relation (:func:`stats.relations.write_relations_tables`): ``relations_ri.csv``,
``relations_overlap.csv`` and, with ablations, ``relations_cross.csv``. Panels:

* the best head's RI excess over its fake-tail baseline per relation, by checkpoint (a line per
  relation; one checkpoint: bars);
* at the last checkpoint, the Spearman correlation of two relations' per-head excess over all heads
  (colour), annotated with the overlap of their top-k SIH sets;
* with ablations, at the last checkpoint: the specific drop of the gold label's log-prob (tested set
  minus its matched random sets) of each relation's SIH set on each task, starred where the
  empirical p against the random sets is < .05; boxed cells are tasks built from a relation the set
  was selected for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import seaborn as sns

from .style import COLUMN_WIDTH, palette, paper_style


def relations_figure(ri: pd.DataFrame, overlap: pd.DataFrame | None = None,
                     cross: pd.DataFrame | None = None) -> plt.Figure:
    """The relations figure (module docstring).

    Raises:
        ValueError: ``ri`` has no rows.
    """
    if ri is None or ri.empty:
        raise ValueError("paper_figures.relations_figure: relations_ri has no rows (run `ablate stats RUN` first)")
    rels = list(dict.fromkeys(ri["relation"]))
    colors = dict(zip(rels, palette(len(rels))))
    has_cross = cross is not None and len(cross) > 0
    n = 2 + int(has_cross)
    last = int(ri["step"].max())
    with paper_style():
        fig, axes = plt.subplots(1, n, figsize=(COLUMN_WIDTH * n * 0.9, 2.8), layout="constrained", squeeze=False)
        ax = axes[0][0]
        if ri["step"].nunique() > 1:
            for r in rels:
                g = ri[ri["relation"] == r].sort_values("step")
                ax.plot(g["step"], g["excess"], marker="o", ms=3, color=colors[r], label=r)
            ax.set_xlabel("checkpoint (step)")
            if ri["step"].max() > 100:  # checkpoints are usually log-spaced; symlog keeps step 0
                ax.set_xscale("symlog", linthresh=10)
        else:
            ax.bar(range(len(rels)), [ri.loc[ri["relation"] == r, "excess"].iloc[0] for r in rels],
                   color=[colors[r] for r in rels])
            ax.set_xticks(range(len(rels)))
            ax.set_xticklabels(rels, rotation=40, ha="right")
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_ylabel("best head: RI - fake-tail RI")
        ax.set_title("relation index per relation")
        if ri["step"].nunique() > 1:
            ax.legend(fontsize=6, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))

        ax = axes[0][1]
        ov = overlap[overlap["step"] == last] if overlap is not None and len(overlap) else pd.DataFrame()
        mat = pd.DataFrame(np.eye(len(rels)), index=rels, columns=rels)
        ann = pd.DataFrame("", index=rels, columns=rels)
        for r in ov.itertuples():
            mat.loc[r.relation_a, r.relation_b] = mat.loc[r.relation_b, r.relation_a] = r.spearman
            ann.loc[r.relation_a, r.relation_b] = ann.loc[r.relation_b, r.relation_a] = f"{r.overlap}"
        sns.heatmap(mat.astype(float), ax=ax, vmin=-1, vmax=1, cmap="vlag", annot=ann, fmt="", square=True,
                    cbar_kws={"label": "Spearman of per-head excess", "shrink": 0.8}, annot_kws={"fontsize": 6})
        ax.set_title(f"shared heads at step {last}\n(numbers: top-k overlap)")
        ax.tick_params(axis="x", rotation=40)

        if has_cross:
            ax = axes[0][2]
            c = cross[cross["step"] == cross["step"].max()]
            c = c[c["operator"] == c["operator"].iloc[0]]
            c = c.assign(set=c["head_set"] + "\n(" + c["relations"].str.replace(",", ", ") + ")")
            piv = c.pivot_table(index="set", columns="task", values="specific", aggfunc="first")
            pv = c.pivot_table(index="set", columns="task", values="p_random", aggfunc="first")
            same = c.pivot_table(index="set", columns="task", values="same_relation", aggfunc="first")
            star = pv.map(lambda p: "*" if p < 0.05 else "") if len(pv) else pv
            lab = piv.map(lambda v: f"{v:.2f}") + star.reindex_like(piv).fillna("")
            lim = float(np.nanmax(np.abs(piv.to_numpy()))) if np.isfinite(piv.to_numpy()).any() else 1.0
            sns.heatmap(piv, ax=ax, cmap="vlag", center=0, vmin=-lim, vmax=lim, annot=lab, fmt="",
                        cbar_kws={"label": "specific log-prob drop", "shrink": 0.8}, annot_kws={"fontsize": 6})
            same = same.reindex(index=piv.index, columns=piv.columns)
            for i in range(len(piv.index)):
                for j in range(len(piv.columns)):
                    v = same.iloc[i, j]
                    if not pd.isna(v) and bool(v):
                        ax.add_patch(plt.Rectangle((j, i), 1, 1, fill=False, lw=1.2, ec="black"))
            ax.set_title(f"ablating one relation's SIHs, step {int(c['step'].iloc[0])}\n(* p < .05 vs random; box: same relation)")
            ax.set_ylabel("")
            ax.tick_params(axis="x", rotation=40)
            ax.tick_params(axis="y", labelsize=6)
    return fig
