"""Simulated results tables in the input contract of :mod:`stats.drops`, with planted effects.

Two simulators:

* :func:`simulate_results` -- a generic *results* table (continuous metrics by default), for unit
  tests of the statistics themselves;
* :func:`simulate_raw` -- raw **cell rows** in the runner's own format (``raw_icl`` /
  ``raw_lr``), which :func:`stats.calibration.run_study` passes through the runner's table
  builder :func:`experiments.tidy.results_table` before the statistics: the calibration path.

Generative model of :func:`simulate_results` per step c, task t, item i, ability a, condition k (target or random r)::

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
                     clean_sd: float = 0.02,
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
    blocks = [([f"task{j:02d}" for j in range(n_tasks)], abil, n_items)]
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


# --------------------------------------------------------------------------------------------------
# Raw cell rows in the runner's format (the calibration path: raw -> experiments.tidy -> stats)
# --------------------------------------------------------------------------------------------------

def simulate_raw(*, n_studies: int = 10, n_tasks: int = 12, n_queries: int = 12, shots: tuple[int, ...] = (0, 4, 8),
                 n_random: int = 0, drops: dict[str, float] | None = None, random_drop: float = 0.05,
                 task_sd: float = 0.05, lr_mean: float = 0.3, lr_noise: float = 0.1, query_sd: float = 0.1,
                 pd_gap: float = 0.7, fc_clean: float = 0.9, fc_floor: float = 0.3, n_docs: int = 6,
                 operator: str = "mean", k: int = 2, tokens_per_step: int = 1_000_000,
                 seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw ``icl`` and ``lr`` cell rows as the runner writes them (RUN/raw_icl, RUN/raw_lr).

    Each study is one checkpoint (``step`` = 1..n_studies), analysed independently. Per study,
    task t (``n_classes`` cycles 2, 3, 4; chance = 1/n_classes), query q and shot count s:

    * clean prompt (control ``clean``): ``pd ~ Bern(chance + pd_gap (1 - chance) + u_q)``,
      ``fc ~ Bern(fc_clean + u_q)``, ``lr_prompt = lr_mean + u_q + N(0, lr_noise^2)`` (NaN when
      s < 2: fewer than 2 demonstrations), with a query effect ``u_q ~ N(0, query_sd^2)`` shared by
      the query's prompts at every shot count (so shots of one query are not independent);
      the ``nolabel`` control has ``fc ~ Bern(fc_floor)``, the ``shuffled`` one ``pd ~ Bern(chance)``;
    * under an ablated set with true drop ``delta_{t,a} = drop_a + N(0, task_sd^2)`` per task and
      ability: with probability delta the prompt's FC / PD outcome is replaced by a draw from its
      floor (no-label FC rate, chance), else kept; ``lr = (1 - delta) lr_clean + N(0, (lr_noise/2)^2)``.
      So the expected normalised drop of ability a is exactly ``delta_{t,a}``.

    The target set has ``drops`` (default LR = FC = PD = .1); each of ``n_random`` random sets
    ``random_drop`` for every ability. Document LR rows (``n_docs`` per study) follow the same rule
    with the target's LR drop; they are the secondary measure and never enter the paired test.

    Returns:
        ``(raw_icl, raw_lr)`` with the columns :func:`experiments.tidy.results_table` reads.
    """
    rng = np.random.default_rng(seed)
    drops = {"lr": 0.1, "fc": 0.1, "pd": 0.1} if drops is None else dict(drops)
    S, T, Q = n_studies, n_tasks, n_queries
    shots = tuple(int(x) for x in shots)
    n_sh = len(shots)
    sh = np.array(shots)[None, None, None, :]
    ncls = (2 + np.arange(T) % 3)[None, :, None, None]
    chance = 1.0 / ncls
    u = rng.normal(0, query_sd, (S, T, Q, 1))
    p_pd = np.clip(chance + pd_gap * (1 - chance) + u, 0, 1)
    p_fc = np.clip(fc_clean + u, 0, 1)
    shp = (S, T, Q, n_sh)
    c_pd = (rng.random(shp) < p_pd).astype(float)
    c_fc = (rng.random(shp) < p_fc).astype(float)
    c_lr = lr_mean + u + rng.normal(0, lr_noise, shp)
    c_lr = np.where(sh >= 2, c_lr, np.nan)
    steps = np.arange(1, S + 1)
    key = {"step": np.broadcast_to(steps[:, None, None, None], shp).ravel(),
           "task": np.broadcast_to(np.array([f"task{j:02d}" for j in range(T)], dtype=object)[None, :, None, None],
                                   shp).ravel(),
           "item": np.broadcast_to(np.arange(Q)[None, None, :, None], shp).ravel(),
           "shots": np.broadcast_to(sh, shp).ravel()}
    key["tokens_seen"] = key["step"].astype("int64") * tokens_per_step
    chance_flat = np.broadcast_to(chance, shp).ravel()

    def frame(role, ci, hs, control, fc, pd_, lr, mask=None):
        d = {**key, "role": role, "operator": operator, "control_index": ci, "head_set": hs, "control": control,
             "fc": fc.ravel(), "pd": pd_.ravel(), "fc_cont": fc.ravel(), "pd_cont": pd_.ravel(),
             "gold_logprob": np.log(np.clip(pd_.ravel(), 0.05, 1)), "lr_prompt": lr.ravel(), "chance": chance_flat}
        f = pd.DataFrame(d)
        return f if mask is None else f[mask]

    nan = np.full(shp, np.nan)
    parts = [frame("clean", -1, "", "clean", c_fc, c_pd, c_lr),
             frame("clean", -1, "", "nolabel", (rng.random(shp) < fc_floor).astype(float), nan, nan),
             frame("clean", -1, "", "shuffled", nan, (rng.random(shp) < chance).astype(float), nan)]
    ablated_mask = key["shots"] >= 1  # zero-shot prompts are scored clean only (they are the FC floor)
    sets = [("target", -1, ",".join(f"L{h}H0" for h in range(k)), drops)]
    sets += [("random", r, ",".join(f"L{h}H{r + 1}" for h in range(k)), {a: random_drop for a in ("lr", "fc", "pd")})
             for r in range(n_random)]
    for role, ci, hs, dd in sets:
        delta = {a: np.clip(dd[a] + rng.normal(0, task_sd, (S, T, 1, 1)), 0, 1) for a in ("lr", "fc", "pd")}
        hit_pd = rng.random(shp) < delta["pd"]
        hit_fc = rng.random(shp) < delta["fc"]
        a_pd = np.where(hit_pd, (rng.random(shp) < chance).astype(float), c_pd)
        a_fc = np.where(hit_fc, (rng.random(shp) < fc_floor).astype(float), c_fc)
        a_lr = (1 - delta["lr"]) * c_lr + rng.normal(0, lr_noise / 2, shp)
        parts.append(frame(role, ci, hs, "clean", a_fc, a_pd, a_lr, ablated_mask))
    raw_icl = pd.concat(parts, ignore_index=True)

    dshp = (S, n_docs)
    dkey = {"step": np.repeat(steps, n_docs), "doc": np.tile(np.arange(n_docs), S)}
    dkey["tokens_seen"] = dkey["step"].astype("int64") * tokens_per_step
    early = rng.normal(4.0, 0.2, dshp)
    c_doc = lr_mean + rng.normal(0, lr_noise, dshp)
    lparts = []
    for role, ci, hs, dd in [("clean", -1, "", {"lr": 0.0})] + sets:
        lr_d = c_doc if role == "clean" else (1 - dd["lr"]) * c_doc + rng.normal(0, lr_noise / 2, dshp)
        lparts.append(pd.DataFrame({**dkey, "role": role, "operator": operator, "control_index": ci, "head_set": hs,
                                    "loss_early": early.ravel(), "loss_late": (early - lr_d).ravel(),
                                    "lr_late": lr_d.ravel(), "lr_mid": (lr_d / 2).ravel(), "olsson": lr_d.ravel()}))
    return raw_icl, pd.concat(lparts, ignore_index=True)
