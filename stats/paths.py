"""Statistics of path patching (docs/science.md §7): how much of a head set's effect each path carries.

Input: the tidy ``paths`` table the runner writes (one row per step, task, head set, item and path;
``effect`` = intervened - clean of the gold label's log-prob or logit at the query). The unit here
is the **drop**, ``-effect`` (positive: the path carries the label), aggregated as in the primary
analysis: the mean over a task's items, then the mean over tasks, so every task weighs the same.

Per (step, tested set, path group) -- groups ``direct``, ``mlp``, ``q``, ``k``, ``v``, ``nonlinear``
and ``total``:

* ``drop``: the tested set's mean drop; 95% CI by a two-stage bootstrap (tasks, then items within
  each drawn task);
* ``random_drop``: the mean over the R matched random sets of their own mean drop (a set without a
  receiver of some kind, e.g. a last-layer sender and later queries, has a zero path of that kind);
* ``specific``: ``drop - random_drop``;
* ``share``: ``drop / total drop`` of the set (only when the total drop is at least ``min_total``,
  else NaN: a share of almost nothing is noise);
* ``p_random``: the empirical p of the set's drop against the random sets' drops,
  ``(1 + #{random >= observed}) / (R + 1)`` (:func:`stats.contrasts.empirical_p`), NaN when R = 0;
  ``p_signflip``: a one-sided sign-flip test over tasks of the per-task specific drop (exact up to
  2^12 sign vectors), NaN with fewer than 2 tasks or no random sets.

These are descriptive decompositions with per-row tests; they are not corrected across paths
(exploratory, as the table says).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .contrasts import empirical_p, sign_flip_test

__all__ = ["GROUPS", "analyze_paths", "path_drops"]

GROUPS = ("direct", "mlp", "q", "k", "v", "nonlinear", "total")
TESTED = ("target", "induction")


def path_drops(paths: pd.DataFrame) -> pd.DataFrame:
    """Per (step, role, control_index, head_set, task, group): mean drop over items (paths of one
    group summed first, per item)."""
    need = {"step", "task", "role", "control_index", "head_set", "item", "group", "effect"}
    missing = need - set(paths.columns)
    if missing:
        raise ValueError(f"stats.paths: the paths table lacks columns {sorted(missing)}; it must come from "
                         "`ablate run` with a [paths] section")
    keys = ["step", "role", "control_index", "head_set", "task"]
    per_item = paths.groupby(keys + ["shots", "item", "group"], dropna=False)["effect"].sum().reset_index()
    per_item["drop"] = -per_item["effect"]
    out = per_item.groupby(keys + ["group"], dropna=False)["drop"].mean()
    # a set with no receiver of some kind (e.g. a last-layer sender has no later queries) has a zero
    # path of that kind: filled in, so random sets in any layer enter every group's null
    return out.unstack("group", fill_value=0.0).stack().rename("drop").reset_index()


def _boot_ci(items: dict[str, np.ndarray], n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    tasks = list(items)
    if len(tasks) < 2:
        return float("nan"), float("nan")
    stats = np.empty(n_boot)
    for b in range(n_boot):
        pick = rng.integers(len(tasks), size=len(tasks))
        stats[b] = np.mean([rng.choice(items[tasks[i]], size=len(items[tasks[i]])).mean() for i in pick])
    lo, hi = np.quantile(stats, [0.025, 0.975])
    return float(lo), float(hi)


def analyze_paths(paths: pd.DataFrame, *, n_boot: int = 2000, min_total: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """The paths table of the run (see the module docstring); one row per (step, tested set, group)."""
    if paths.empty:
        return pd.DataFrame()
    rng = np.random.default_rng(seed)
    per_task = path_drops(paths)
    items = paths.groupby(["step", "role", "control_index", "head_set", "task", "shots", "item", "group"],
                          dropna=False)["effect"].sum()
    items = items.unstack("group", fill_value=0.0).stack().rename("effect").reset_index()
    rows = []
    for step, g in per_task.groupby("step"):
        rand = g[g["role"] == "random"]
        for (role, hs), t in g[g["role"].isin(TESTED)].groupby(["role", "head_set"]):
            tot = t[t["group"] == "total"]["drop"].mean()
            for grp in [x for x in GROUPS if x in set(t["group"])]:
                tg = t[t["group"] == grp].set_index("task")["drop"]
                rg = rand[rand["group"] == grp]
                by_set = rg.groupby("control_index")["drop"].mean()
                it = items[(items["step"] == step) & (items["role"] == role) & (items["head_set"] == hs)
                           & (items["group"] == grp)]
                lo, hi = _boot_ci({k: -v["effect"].to_numpy() for k, v in it.groupby("task")}, n_boot, rng)
                drop = float(tg.mean())
                row = {"step": step, "condition": role, "head_set": hs, "group": grp, "drop": drop,
                       "ci_low": lo, "ci_high": hi, "random_drop": float(by_set.mean()) if len(by_set) else np.nan,
                       "R": int(len(by_set)), "n_tasks": int(len(tg))}
                row["specific"] = drop - row["random_drop"]
                row["share"] = drop / tot if np.isfinite(tot) and tot >= min_total else np.nan
                row["p_random"] = empirical_p(drop, by_set.to_numpy()) if len(by_set) else np.nan
                if len(by_set) and len(tg) >= 2:
                    rt = rg.groupby("task")["drop"].mean().reindex(tg.index)
                    d = (tg - rt).to_numpy(float)
                    row["p_signflip"] = float(sign_flip_test(d[np.isfinite(d)]).pvalue) if np.isfinite(d).sum() >= 2 else np.nan
                else:
                    row["p_signflip"] = np.nan
                rows.append(row)
    return pd.DataFrame(rows)
