"""Reading a run's tables for plotting, and the small shape fixes every figure needs.

Inputs are the tidy tables of a run folder (docs/architecture.md); optional columns may be
missing, and these helpers fill or skip them instead of failing:

* :func:`read_table` -- ``RUN/<name>.parquet`` (or ``.csv``), ``None`` when absent;
* :func:`pick_step` -- the checkpoint to show (the final one unless asked), with a clear error;
* :func:`training_axis` -- the x column for "over training" plots: ``tokens_seen`` (positive values
  only, for a log axis), else ``step``;
* :func:`head_label` -- ``"L3H5"`` strings like :class:`ablate.model.heads.HeadSet` writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def read_table(run_dir: str | Path, name: str) -> pd.DataFrame | None:
    """``RUN/name`` as a frame: tries ``name`` as given, then ``.parquet`` and ``.csv``; None if absent."""
    run = Path(run_dir)
    p = run / name
    cands = [p] if p.suffix in (".parquet", ".csv") else [p.with_suffix(".parquet"), p.with_suffix(".csv")]
    for c in cands:
        if c.exists():
            if c.suffix == ".parquet":
                return pd.read_parquet(c)
            try:
                return pd.read_csv(c)
            except pd.errors.EmptyDataError:  # a table with no rows and no header: nothing to draw
                return None
    return None


def pick_step(df: pd.DataFrame, step: int | None, what: str = "table") -> int:
    """``step`` if present in ``df["step"]``, the last checkpoint when ``step`` is None.

    Raises:
        ValueError: empty table, or ``step`` not among the table's checkpoints.
    """
    if df is None or df.empty or "step" not in df.columns:
        raise ValueError(f"paper_figures: the {what} has no rows with a 'step' column to pick a checkpoint from.")
    steps = sorted(pd.unique(df["step"].dropna()))
    if step is None:
        return int(steps[-1])
    if step not in steps:
        raise ValueError(f"paper_figures: step {step} is not in the {what}; available steps: "
                         f"{[int(s) for s in steps]}. Pass one of them (or omit it for the final checkpoint).")
    return int(step)


def training_axis(df: pd.DataFrame) -> tuple[pd.DataFrame, str, str]:
    """Rows and x column for a log-scaled "over training" axis.

    Uses ``tokens_seen`` when the column exists and has positive values (rows with tokens <= 0,
    e.g. step 0, cannot sit on a log axis and are dropped), else ``step`` (positive steps).

    Returns:
        (rows to plot, x column, axis label).
    """
    if "tokens_seen" in df.columns:
        t = pd.to_numeric(df["tokens_seen"], errors="coerce").astype(float)  # nullable Int64 -> NaN
        ok = (t > 0).to_numpy()
        if ok.any():
            return df[ok].assign(tokens_seen=t[ok]), "tokens_seen", "Tokens seen"
    s = pd.to_numeric(df["step"], errors="coerce").astype(float)
    ok = (s > 0).to_numpy()
    return df[ok].assign(step=s[ok]), "step", "Training step"


def head_label(layer, head) -> pd.Series | str:
    """``"L{layer}H{head}"`` for scalars or Series."""
    if isinstance(layer, pd.Series):
        return "L" + layer.astype(int).astype(str) + "H" + pd.Series(head, index=layer.index).astype(int).astype(str)
    return f"L{int(layer)}H{int(head)}"


def fmt_tokens(t: float) -> str:
    """Compact token count: ``2.0e9`` -> ``"2B"``, ``3.5e7`` -> ``"35M"``."""
    if t is None or not np.isfinite(t):
        return "?"
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(t) >= div:
            v = t / div
            return f"{v:.3g}{suf}"
    return f"{t:.0f}"


def step_label(df: pd.DataFrame, step: int) -> str:
    """``"step 3000 (6B tokens)"`` when ``tokens_seen`` is known, else ``"step 3000"``."""
    if "tokens_seen" in df.columns:
        t = pd.to_numeric(df.loc[df["step"] == step, "tokens_seen"], errors="coerce").dropna()
        if len(t) and t.iloc[0] > 0:
            return f"step {step} ({fmt_tokens(float(t.iloc[0]))} tokens)"
    return f"step {step}"
