"""Simulated results tables in the input contract of :mod:`stats.drops`, with planted effects.

Generative model per step c, task t, item i, ability a, condition k (target or random r)::

    clean_{i,a}   = floor_{i,a} + gap_a + N(0, clean_sd^2)
    true drop     = delta_{k,a} + u_{t,a} (+ v_{t,k}: shared by all abilities of a task/condition)
    ablated_{i,a} = clean_{i,a} - gap_a * true drop + N(0, (gap_a * item_sd)^2)

with ``u_{t,a} ~ N(0, task_sd^2)`` independent across abilities, so the per-task PD - LR difference
is symmetric about ``delta_PD - delta_LR``: the sign-flip test's null holds exactly when they are
equal. All metrics are continuous (``binary=True`` draws 0/1 FC/PD from the same means instead).
Many independent datasets can be drawn in one table by using many steps (steps are analysed
independently), which keeps calibration studies vectorised.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def simulate_results(*, n_steps: int = 4, n_tasks: int = 12, n_items: int = 10, shots: tuple[int, ...] = (4,),
                     drops: dict[str, float] | None = None, random_drops: dict[str, float] | None = None,
                     n_random: int = 0, k: int = 4, operators: tuple[str, ...] = ("mean",),
                     gaps: dict[str, float] | None = None, task_sd: float = 0.05, item_sd: float = 0.10,
                     clean_sd: float = 0.02, lr_docs: bool = False, n_docs: int = 20,
                     absent: dict[int, tuple[str, ...]] | None = None, tokens_per_step: int = 2_000_000,
                     steps: list[int] | None = None, binary: bool = False, seed: int = 0) -> pd.DataFrame:
    """Draw a tidy results table.

    Args:
        n_steps: number of checkpoints (or pass ``steps``).
        n_tasks, n_items, shots: design (tasks named ``task00``...).
        drops: planted mean normalised drop of the target set per ability, e.g.
            ``{"lr": .1, "fc": .1, "pd": .4}``; a value may be a sequence (one per step).
        random_drops: mean drop of each random set per ability (default 0.05 each).
        n_random: R matched random sets. k: heads per set. operators: operator names.
        gaps: clean - floor per ability (ability present when > threshold).
        task_sd: SD of the task random effect of the drop (independent per ability).
        item_sd: SD of item noise on the drop scale.
        lr_docs: put LR on a separate pseudo-task ``lr_docs`` with ``n_docs`` documents.
        absent: {step_index: abilities} whose gap is set to 0 at that step (ability absent).
        binary: FC/PD as 0/1 outcomes (Bernoulli of the continuous means, clipped to [0, 1]).
        seed: RNG seed.
    """
    rng = np.random.default_rng(seed)
    drops = {"lr": 0.1, "fc": 0.1, "pd": 0.1} if drops is None else drops
    random_drops = {"lr": 0.05, "fc": 0.05, "pd": 0.05} if random_drops is None else random_drops
    gaps = {"lr": 1.0, "fc": 0.6, "pd": 0.5} if gaps is None else gaps
    floors = {"lr": 0.0, "fc": 0.2, "pd": 0.25}
    steps = np.asarray(list(steps) if steps is not None else [1000 * (2 ** i) for i in range(n_steps)], dtype=int)
    n_s = steps.size
    absent = absent or {}
    abil = ("lr", "fc", "pd")
    conds = [("target", -1, ",".join(f"L{h}H0" for h in range(k)))]
    conds += [("random", r, ",".join(f"L{h}H{r + 1}" for h in range(k))) for r in range(n_random)]

    def per_step(v) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, float), (n_s,)).copy()

    gap_s = {a: per_step(gaps[a]) for a in abil}
    for si, abs_ in absent.items():
        for a in abs_:
            gap_s[a][si] = 0.0
    blocks = [([f"task{j:02d}" for j in range(n_tasks)], ("fc", "pd") if lr_docs else abil, n_items)]
    if lr_docs:
        blocks.append((["lr_docs"], ("lr",), n_docs))
    frames = []
    for names, here, m in blocks:
        shp = (n_s, len(names), len(shots), m)
        n = int(np.prod(shp))
        key = {"step": np.broadcast_to(steps[:, None, None, None], shp).ravel(),
               "task": np.broadcast_to(np.array(names, dtype=object)[None, :, None, None], shp).ravel(),
               "shots": np.broadcast_to(np.array(shots)[None, None, :, None], shp).ravel(),
               "item": np.broadcast_to(np.arange(m)[None, None, None, :], shp).ravel()}
        key["tokens_seen"] = key["step"].astype("int64") * tokens_per_step
        clean, g4 = {}, {}
        for a in abil:
            g4[a] = gap_s[a][:, None, None, None]
            clean[a] = (floors[a] + g4[a] + rng.normal(0, clean_sd, shp)) if a in here else np.full(shp, np.nan)
        cdf = pd.DataFrame(key)
        cdf = cdf.assign(condition="clean", head_set="", operator="none", control_index=-1)
        for a in abil:
            v = clean[a]
            if binary and a != "lr" and a in here:
                v = (rng.random(shp) < np.clip(v, 0, 1)).astype(float)
            cdf[a] = v.ravel()
        cdf["fc_floor"] = floors["fc"] if "fc" in here else np.nan
        cdf["pd_floor"] = floors["pd"] if "pd" in here else np.nan
        frames.append(cdf)
        for op in operators:
            for cond, ci, hs in conds:
                adf = pd.DataFrame(key).assign(condition=cond, head_set=hs, operator=op, control_index=ci)
                for a in abil:
                    if a not in here:
                        adf[a] = np.nan
                        continue
                    mu = per_step((drops if cond == "target" else random_drops)[a])[:, None, None, None]
                    true = mu + rng.normal(0, task_sd, (n_s, len(names), 1, 1))
                    scale = np.where(g4[a] > 0, g4[a], per_step(gaps[a])[:, None, None, None])
                    v = clean[a] - g4[a] * true + rng.normal(0, 1, shp) * scale * item_sd
                    if binary and a != "lr":
                        v = (rng.random(shp) < np.clip(v, 0, 1)).astype(float)
                    adf[a] = v.ravel()
                adf["fc_floor"] = np.nan
                adf["pd_floor"] = np.nan
                frames.append(adf)
    out = pd.concat(frames, ignore_index=True)
    out["step"] = out["step"].astype(int)
    out["task"] = out["task"].astype(str)
    return out


def sigmoid_curve(x: np.ndarray, midpoint: float, width: float = 0.15, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """``lo + (hi - lo) / (1 + exp(-(x - midpoint) / width))``."""
    return lo + (hi - lo) / (1.0 + np.exp(-(np.asarray(x, float) - midpoint) / width))


def simulate_curves(*, n_checkpoints: int = 40, log10_tokens: tuple[float, float] = (8.0, 11.0),
                    midpoints: dict[str, float] | None = None, noise: float = 0.03, width: float = 0.15,
                    tokens_per_step: int = 2_000_000, seed: int = 0) -> pd.DataFrame:
    """Long table (step, tokens_seen, curve, value) of noisy sigmoid curves with planted midpoints.

    Args:
        midpoints: curve name -> midpoint in log10 tokens, e.g. ``{"ri": 9.0, "pd": 9.5}``.
    """
    rng = np.random.default_rng(seed)
    midpoints = {"ri": 9.2, "pd": 9.6} if midpoints is None else midpoints
    x = np.linspace(*log10_tokens, n_checkpoints)
    tokens = np.round(10 ** x).astype("int64")
    steps = np.maximum(1, tokens // tokens_per_step).astype(int)
    frames = [pd.DataFrame({"step": steps, "tokens_seen": tokens, "curve": name,
                            "value": sigmoid_curve(x, m, width) + rng.normal(0, noise, x.size)})
              for name, m in midpoints.items()]
    return pd.concat(frames, ignore_index=True)
