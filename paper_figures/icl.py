"""The three ICL levels over training, and accuracy-vs-shots panels per checkpoint.

Inputs
------
``icl_summary`` (producer :mod:`ablate.icl.series`): one row per (step, task, shots[, control]) with mean
metrics. Used columns (others ignored, optional ones may be missing):

=====================  ====================================================================
``step``               required
``tokens_seen``        x axis when present (log scale), else ``step``
``task``, ``shots``    optional (one pooled task / 0 shots when missing)
``control``            optional; only ``"clean"`` (real-label) prompts are plotted
``condition``          optional; only ``"clean"`` (unablated) rows are plotted
``fc``, ``pd``         format compliance / pattern discovery (``fc_cont`` / ``pd_cont`` with
                       ``metric="cont"``); a long table (``metric``/``value``) is pivoted
``chance``             chance level of PD (or ``pd_floor`` / ``pd_chance``); drawn as a line
``lr``                 loss reduction, e.g. on ``task == "lr_docs"`` rows
``lr_prompt``          in-prompt loss reduction: the LR panel's fallback when no ``lr`` exists
=====================  ====================================================================

``results`` (producer :mod:`experiments.tidy`): its **clean** rows give the same summary when there
is no ``icl_summary`` (:func:`icl_from_results`), and its ``lr_docs`` rows give LR per document.

Curves are means over tasks; bands are 95% bootstrap CIs over tasks (LR: over documents when
per-document rows are available).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.ticker import FixedLocator, NullLocator

from .inputs import fmt_tokens, training_axis
from .style import ABILITY_LABELS, COLUMN_WIDTH, TEXT_WIDTH, empty_panel, paper_style, sequential_palette, tokens_axis

LR_TASK = "lr_docs"
_CHANCE = ("chance", "pd_floor", "pd_chance")
_METRICS = ("lr", "fc", "pd", "fc_cont", "pd_cont")


def normalise_icl(icl_summary: pd.DataFrame) -> pd.DataFrame:
    """Canonical wide ICL frame: clean rows only, ``task``/``shots``/``chance`` filled, metrics numeric.

    Raises:
        ValueError: no ``step`` column or none of the metric columns.
    """
    d = icl_summary.copy()
    if "step" not in d.columns:
        raise ValueError(f"paper_figures.icl: icl_summary has no 'step' column (has {list(d.columns)}).")
    if "metric" in d.columns and "value" in d.columns and not any(m in d.columns for m in _METRICS):
        idx = [c for c in d.columns if c not in ("metric", "value")]
        d = d.pivot_table(index=idx, columns="metric", values="value", aggfunc="mean").reset_index()
        d.columns.name = None
    for col in ("control", "condition"):
        if col in d.columns:
            v = d[col].astype(str)
            keep = v.isin(["clean", "real", "none"])
            if keep.any():
                d = d[keep]
    if not any(m in d.columns for m in _METRICS):
        raise ValueError(f"paper_figures.icl: icl_summary has none of the metric columns {_METRICS} "
                         f"(has {list(d.columns)}).")
    if "task" not in d.columns:
        d["task"] = "all"
    if "shots" not in d.columns:
        d["shots"] = 0
    d["task"] = d["task"].astype(str)
    d["shots"] = pd.to_numeric(d["shots"], errors="coerce").fillna(0).astype(int)
    chance = next((c for c in _CHANCE if c in d.columns), None)
    d["chance"] = pd.to_numeric(d[chance], errors="coerce") if chance else np.nan
    for m in _METRICS:
        d[m] = pd.to_numeric(d[m], errors="coerce") if m in d.columns else np.nan
    return d.reset_index(drop=True)


def icl_from_results(results: pd.DataFrame) -> pd.DataFrame:
    """ICL summary from the clean rows of a results table: means per (step, tokens_seen, task, shots).

    LR of the prompt tasks is the in-prompt LR per item (the primary measure, docs/statistics.md);
    document LR keeps one row per document (``task == "lr_docs"``) so CIs over documents can be drawn.
    """
    d = results[results["condition"].astype(str) == "clean"] if "condition" in results.columns else results
    keys = [c for c in ("step", "tokens_seen", "task", "shots") if c in d.columns]
    is_lr = d["task"].astype(str) == LR_TASK if "task" in d.columns else pd.Series(False, index=d.index)
    prompts = d[~is_lr]
    cols = [c for c in ("lr", "fc", "pd", "fc_cont", "pd_cont", "pd_floor") if c in prompts.columns]
    parts = []
    if len(prompts) and cols:
        parts.append(prompts.groupby(keys, as_index=False)[cols].mean())
    if is_lr.any() and "lr" in d.columns:
        parts.append(d.loc[is_lr, keys + ["lr"] + (["item"] if "item" in d.columns else [])])
    if not parts:
        return pd.DataFrame(columns=keys + ["fc", "pd", "lr"])
    return normalise_icl(pd.concat(parts, ignore_index=True))


def lr_rows(icl: pd.DataFrame, results: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows with a finite ``lr``: from the ICL frame, else from the results' clean ``lr_docs`` rows."""
    r = icl[np.isfinite(icl["lr"])] if "lr" in icl.columns else icl.iloc[:0]
    if r.empty and results is not None and "lr" in results.columns:
        r = icl_from_results(results)
        r = r[np.isfinite(r["lr"])]
    return r


def prompt_lr_rows(icl: pd.DataFrame) -> pd.DataFrame:
    """Fallback LR: in-prompt loss reduction ``lr_prompt`` (first - last demonstrations' answer loss)."""
    if "lr_prompt" not in icl.columns:
        return icl.iloc[:0]
    r = icl[(icl["task"] != LR_TASK) & np.isfinite(pd.to_numeric(icl["lr_prompt"], errors="coerce"))]
    return r.assign(lr=pd.to_numeric(r["lr_prompt"], errors="coerce"))


def _metric_cols(metric: str) -> tuple[str, str]:
    if metric not in ("binary", "cont"):
        raise ValueError(f"paper_figures.icl: metric must be 'binary' (fc/pd) or 'cont' (fc_cont/pd_cont), got {metric!r}.")
    return ("fc", "pd") if metric == "binary" else ("fc_cont", "pd_cont")


def icl_levels(icl_summary: pd.DataFrame | None, *, results: pd.DataFrame | None = None,
               metric: str = "binary", shots: list[int] | None = None,
               errorbar: tuple | str | None = None) -> plt.Figure:
    """Loss reduction, format compliance and pattern discovery over training (shots as hue).

    Args:
        icl_summary: ICL summary table (module docstring), or None to derive it from ``results``.
        results: tidy results table: its clean ``lr_docs`` rows supply LR when the summary has none.
        metric: ``"binary"`` (greedy 0/1 accuracies ``fc``/``pd``) or ``"cont"`` (``fc_cont``/``pd_cont``).
        shots: shot counts to draw (default all).
        errorbar: seaborn ``errorbar`` of the FC/PD curves across tasks (default none: tasks differ
            in difficulty and chance, so their spread is not a sampling error); e.g. ``("ci", 95)``.

    Returns:
        The matplotlib Figure (three panels; a panel without data says so).

    Raises:
        ValueError: neither table given, or no usable columns.
    """
    if icl_summary is None and results is None:
        raise ValueError("paper_figures.icl_levels: give icl_summary or results.")
    icl = normalise_icl(icl_summary) if icl_summary is not None else icl_from_results(results)
    fc, pdm = _metric_cols(metric)
    lr = lr_rows(icl, results)
    lr_label = "Loss early - loss late (nats)"
    if lr.empty:
        lr = prompt_lr_rows(icl)
        lr_label = "In-prompt LR: demo loss first - last"
    prompts = icl[icl["task"] != LR_TASK]
    if shots is not None:
        prompts = prompts[prompts["shots"].isin(shots)]
    pal = sequential_palette(prompts["shots"].unique())
    with paper_style():
        fig, axes = plt.subplots(1, 3, figsize=(TEXT_WIDTH, 2.3), layout="constrained")
        ax = axes[0]
        if len(lr):
            d, x, xl = training_axis(lr)
            sns.lineplot(data=d, x=x, y="lr", ax=ax, color="black", marker="o", markersize=3,
                         errorbar=("ci", 95), n_boot=500, seed=0)
            ax.axhline(0, color="0.5", lw=0.8, ls=":")
            tokens_axis(ax, xl)
        else:
            empty_panel(ax, "no LR rows\n(icl_summary 'lr' or results lr_docs)")
        ax.set_title(ABILITY_LABELS["lr"])
        ax.set_ylabel(lr_label)
        handles = None
        for ax, col, key in ((axes[1], fc, "fc"), (axes[2], pdm, "pd")):
            p = prompts[np.isfinite(prompts[col])]
            ax.set_title(ABILITY_LABELS[key])
            if p.empty:
                empty_panel(ax, f"no {col} rows")
                continue
            d, x, xl = training_axis(p)
            sns.lineplot(data=d, x=x, y=col, hue="shots", palette=pal, ax=ax, marker="o", markersize=3,
                         errorbar=errorbar if d["task"].nunique() > 1 else None, n_boot=500, seed=0,
                         err_kws={"alpha": 0.12})
            if key == "pd" and np.isfinite(d["chance"]).any():
                ch = d.groupby(x, as_index=False)["chance"].mean()
                ax.plot(ch[x], ch["chance"], color="black", ls=":", lw=1.0, label="chance (mean)")
            tokens_axis(ax, xl)
            ax.set_ylim(-0.03, 1.03)
            ax.set_ylabel("Accuracy (mean over tasks)")
            h, lab = ax.get_legend_handles_labels()
            handles = (h, lab) if key == "pd" or handles is None else handles
            ax.get_legend().remove()
        for ax in axes:
            ax.grid(True, axis="y", alpha=0.5)
            sns.despine(ax=ax)
        if handles:
            fig.legend(handles[0], handles[1], title="shots", loc="outside right center")
    return fig


def _pick_steps(steps: list[int], n: int) -> list[int]:
    steps = sorted(steps)
    if len(steps) <= n:
        return steps
    idx = np.unique(np.round(np.geomspace(1, len(steps), n)).astype(int) - 1)
    return [steps[i] for i in idx]


def accuracy_vs_shots(icl_summary: pd.DataFrame | None, *, results: pd.DataFrame | None = None,
                      steps: list[int] | None = None, max_checkpoints: int = 6, by_task: bool = False,
                      metric: str = "binary") -> plt.Figure:
    """FC and PD accuracy against the number of shots, one line per checkpoint, with PD's chance line.

    Args:
        icl_summary: ICL summary table, or None to derive it from ``results``.
        results: tidy results table (used only when ``icl_summary`` is None).
        steps: checkpoints to draw (default up to ``max_checkpoints``, spread on a log scale, last included).
        by_task: one row of panels per task (chance line per task) instead of the mean over tasks.
        metric: ``"binary"`` or ``"cont"``.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: no prompt rows, or requested steps that are absent.
    """
    if icl_summary is None and results is None:
        raise ValueError("paper_figures.accuracy_vs_shots: give icl_summary or results.")
    icl = normalise_icl(icl_summary) if icl_summary is not None else icl_from_results(results)
    fc, pdm = _metric_cols(metric)
    p = icl[(icl["task"] != LR_TASK) & (np.isfinite(icl[fc]) | np.isfinite(icl[pdm]))]
    if p.empty:
        raise ValueError("paper_figures.accuracy_vs_shots: no FC/PD rows in the ICL table.")
    have = sorted(int(s) for s in p["step"].unique())
    if steps is None:
        steps = _pick_steps(have, max_checkpoints)
    else:
        bad = [s for s in steps if s not in have]
        if bad:
            raise ValueError(f"paper_figures.accuracy_vs_shots: step(s) {bad} absent; available {have}.")
    p = p[p["step"].isin(steps)].copy()
    tok = p.groupby("step")["tokens_seen"].first() if "tokens_seen" in p.columns else pd.Series(dtype=float)
    p["checkpoint"] = p["step"].map(lambda s: f"{s} ({fmt_tokens(float(tok[s]))})" if s in tok.index
                                    and pd.notna(tok[s]) and tok[s] > 0 else str(s))
    labels = [p.loc[p["step"] == s, "checkpoint"].iloc[0] for s in sorted(steps)]
    pal = dict(zip(labels, sequential_palette(range(len(labels))).values()))
    tasks = sorted(p["task"].unique()) if by_task else ["all tasks"]
    xs = sorted(p["shots"].unique())
    with paper_style():
        fig, axes = plt.subplots(len(tasks), 2, figsize=(TEXT_WIDTH if by_task else COLUMN_WIDTH * 2, 1.8 * len(tasks) + 0.5),
                                 squeeze=False, sharex=True, sharey=True, layout="constrained")
        for r, task in enumerate(tasks):
            d = p if not by_task else p[p["task"] == task]
            for c, (col, key) in enumerate(((fc, "fc"), (pdm, "pd"))):
                ax = axes[r, c]
                dd = d[np.isfinite(d[col])]
                if dd.empty:
                    empty_panel(ax, f"no {col} rows")
                    continue
                sns.lineplot(data=dd, x="shots", y=col, hue="checkpoint", hue_order=labels, palette=pal, ax=ax,
                             marker="o", markersize=3, errorbar=None, legend=(r == 0 and c == 1))
                if key == "pd" and np.isfinite(dd["chance"]).any():
                    ax.axhline(float(dd["chance"].mean()), color="black", ls=":", lw=1.0,
                               label="chance" + ("" if by_task else " (mean)"))
                ax.set_xscale("symlog", linthresh=1)
                ax.xaxis.set_major_locator(FixedLocator(xs))
                ax.xaxis.set_minor_locator(NullLocator())
                ax.set_xticklabels([str(v) for v in xs])
                ax.set_ylim(-0.03, 1.03)
                ax.set_title(ABILITY_LABELS[key] + (f": {task}" if by_task else ""))
                ax.set_xlabel("Shots")
                ax.set_ylabel("Accuracy" if by_task else "Accuracy (mean over tasks)")
                ax.grid(True, axis="y", alpha=0.5)
                sns.despine(ax=ax)
        leg = axes[0, 1].get_legend()
        if leg is not None:
            h, lab = axes[0, 1].get_legend_handles_labels()
            leg.remove()
            fig.legend(h, lab, title="step (tokens)", loc="outside right center")
    return fig
