"""Ablation drops per ability with 95% CIs: target vs induction vs matched random heads.

Input: the tidy ``results`` table (producer :mod:`experiments.tidy`, contract in :mod:`stats.drops`).
Drops are computed by :func:`stats.drops.normalised_drops`, the same code the significance tests use:

* ``normalised=True`` (default): ``(clean - ablated) / G`` with the task x checkpoint normaliser
  ``G = mean(clean - floor)``; abilities absent at a checkpoint (G below the pre-registered
  threshold) are excluded, as in the tests. 1 = the ability is gone, 0 = untouched.
* ``normalised=False``: raw ``clean - ablated`` (LR in nats, FC/PD in accuracy points).

Points are means over ablated items (random: pooled over the R matched random sets); error bars are
95% bootstrap CIs over those rows (seaborn ``errorbar=("ci", 95)``). They describe the spread of
drops; the inferential test (sign-flip over tasks, RUN/tables/significance_tidy.csv) is annotated
in the panel title when that table is given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import seaborn as sns

from .inputs import pick_step, step_label
from .style import CONDITION_ORDER, COLUMN_WIDTH, TEXT_WIDTH, condition_palette, empty_panel, paper_style

ABILITY_ORDER = ("lr", "fc", "pd")


def drop_table(results: pd.DataFrame, *, normalised: bool = True) -> pd.DataFrame:
    """Long per-item drops: step, tokens_seen, operator, condition, control_index, task, item, ability, drop."""
    from stats.drops import normalised_drops

    from stats.drops import ABILITIES

    wide = normalised_drops(results).items  # one row per ablated item, columns per ability
    keys = [c for c in ("step", "tokens_seen", "operator", "condition", "control_index", "head_set", "task",
                        "shots", "item") if c in wide.columns]
    parts = []
    for a in ABILITIES:
        if f"drop_{a}" not in wide.columns:
            continue
        d = wide[f"drop_{a}"] if normalised else wide[f"clean_{a}"] - wide[f"ablated_{a}"]
        parts.append(wide[keys].assign(ability=a, clean=wide[f"clean_{a}"], ablated=wide[f"ablated_{a}"], drop=d))
    items = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=keys + ["ability", "drop"])
    return items[np.isfinite(items["drop"].astype(float))]


def _p_note(sig: pd.DataFrame | None, step: int, op: str) -> str:
    if sig is None or sig.empty or not {"step", "operator", "condition", "p_iut"} <= set(sig.columns):
        return ""
    from stats.tables import p_phrase

    s = sig[(sig["step"] == step) & (sig["operator"].astype(str) == op)]
    s = s.assign(_o=s["condition"].map({c: i for i, c in enumerate(CONDITION_ORDER)}).fillna(9)).sort_values("_o")
    parts = []
    for r in s.itertuples(index=False):
        # the corrected p the significance table reports: Holm (pre-registered) or BH (exploratory)
        for col, tag in (("p_holm", " (Holm)"), ("p_bh", " (BH)"), ("p_iut", " (uncorrected)")):
            p = float(getattr(r, col, np.nan))
            if np.isfinite(p):
                break
        else:
            tag = ""
        parts.append(f"{r.condition}: {p_phrase(p)}{tag}")
    return ("PD > LR & FC?\n" + "\n".join(parts)) if parts else ""


def ablation_drops(results: pd.DataFrame, *, step: int | None = None, operators: list[str] | None = None,
                   normalised: bool = True, significance: pd.DataFrame | None = None,
                   n_boot: int = 1000) -> plt.Figure:
    """Drop of each ability (LR, FC, PD) when ablating target / induction / random heads, with 95% CIs.

    Args:
        results: tidy results table.
        step: checkpoint (default: the final one with ablated rows).
        operators: operators to show, one panel each (default all, e.g. mean, resample, zero).
        normalised: normalised drops (default) or raw clean - ablated.
        significance: RUN/tables/significance_tidy.csv, to note the IUT p per condition under each
            panel (Holm for pre-registered steps, BH for exploratory ones, as in the table).
        n_boot: bootstrap replicates of the CIs.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: no ablated rows with a defined drop (e.g. every ability absent).
    """
    dt = drop_table(results, normalised=normalised)
    if dt.empty:
        raise ValueError("paper_figures.ablation_drops: no ablated item has a defined drop (no ablated rows, "
                         "or every ability is absent by the pre-registered rule).")
    s = pick_step(dt, step, "ablation drops")
    d = dt[dt["step"] == s]
    ops = list(dict.fromkeys(d["operator"].astype(str))) if operators is None else list(operators)
    pal = condition_palette(d["condition"].astype(str))
    hue_order = list(pal)
    abil = [a for a in ABILITY_ORDER if a in set(d["ability"])]
    labels = {"lr": "LR", "fc": "FC", "pd": "PD"}
    n = len(ops)
    with paper_style():
        fig, axes = plt.subplots(1, n, figsize=(COLUMN_WIDTH if n == 1 else min(TEXT_WIDTH, 2.4 * n + 0.8), 2.5),
                                 squeeze=False, sharey=True, layout="constrained")
        for ax, op in zip(axes[0], ops):
            g = d[d["operator"].astype(str) == op]
            if g.empty:
                empty_panel(ax, f"no {op} rows")
                continue
            sns.pointplot(data=g, x="ability", y="drop", hue="condition", order=abil, hue_order=hue_order,
                          palette=pal, dodge=0.45, linestyle="none", markers="o", markersize=4,
                          errorbar=("ci", 95), n_boot=n_boot, seed=0, capsize=0.08, err_kws={"linewidth": 1.0},
                          ax=ax)
            ax.axhline(0, color="0.5", lw=0.8, ls=":")
            ax.set_xticks(range(len(abil)))
            ax.set_xticklabels([labels[a] for a in abil])
            ax.set_title(f"{op} ablation")
            note = _p_note(significance, s, op)
            ax.set_xlabel(note, fontsize=6, color="0.25")
            ax.grid(True, axis="y", alpha=0.5)
            sns.despine(ax=ax)
            if ax.get_legend() is not None:
                ax.get_legend().remove()
        axes[0, 0].set_ylabel("Normalised drop" if normalised else "Drop (clean - ablated)")
        h = [plt.Line2D([], [], color=pal[c], marker="o", ls="none", markersize=4) for c in hue_order]
        nr = d.loc[d["condition"] == "random", "control_index"].nunique()
        lab = [f"{c} (R = {nr})" if c == "random" else c for c in hue_order]
        fig.legend(h, lab, title="heads ablated", loc="outside right center")
        fig.suptitle(f"Ablation drops, {step_label(dt, s)} (95% CI)", x=0.02, ha="left")
    return fig
