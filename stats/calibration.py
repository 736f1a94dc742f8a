"""Calibration of the primary test through the runner's own table builder.

A *study* is one simulated checkpoint of raw cell rows (:func:`stats.simulate.simulate_raw`,
in the format of RUN/raw_icl.parquet and RUN/raw_lr.parquet). :func:`run_study` passes many
studies at once through :func:`experiments.tidy.results_table` -- the function the runner uses to
write RUN/results.parquet -- and then through :func:`stats.api.analyze`, so the level and power
measured here are those of the tables a user gets.

The least-favourable null of the intersection-union test is "PD drops exactly as much as LR and
FC is untouched" (PD - LR = 0, PD - FC large): there p_IUT = max(p_LR, p_FC) ~ p_LR, and the
rejection rate is the test's size. :func:`level_and_power` reports it with an exact
(Clopper-Pearson) binomial CI, and the power at PD drop - max(LR, FC) drop = .1 / .2 / .3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from .simulate import simulate_raw

FAST = dict(n_boot=0, wilcoxon=False, mixed_model=False, breakdown=False)


@dataclass(frozen=True)
class Config:
    """One calibration configuration (see :func:`stats.simulate.simulate_raw` for the parameters)."""

    name: str
    n_tasks: int
    n_random: int
    lr_noise: float
    n_queries: int = 24
    shots: tuple[int, ...] = (0, 4, 8)
    extra: dict = field(default_factory=dict)


CONFIGS: tuple[Config, ...] = (
    Config("5 tasks, R = 0, LR noise low", 5, 0, 0.1),
    Config("7 tasks, R = 19, LR noise high", 7, 19, 0.5),
    Config("12 tasks, R = 0, LR noise high", 12, 0, 0.5),
    Config("12 tasks, R = 19, LR noise low", 12, 19, 0.1),
)


#: Studies simulated and analysed at once: bounds memory (12 tasks x 20 head sets x 500 studies is
#: about 9M raw rows); chunks use consecutive seeds, so results do not depend on the chunking.
CHUNK = 250


def run_study(cfg: Config, drops: dict[str, float], n_studies: int, *, seed: int = 0,
              alpha: float = 0.05) -> pd.DataFrame:
    """Simulate ``n_studies`` studies, build the runner's results table, analyse; the significance table.

    Studies are drawn in chunks of :data:`CHUNK` (chunk c with seed ``seed * 1000 + c``)."""
    from experiments.tidy import results_table
    from .api import analyze

    tables = []
    for c, start in enumerate(range(0, n_studies, CHUNK)):
        n = min(CHUNK, n_studies - start)
        raw_icl, raw_lr = simulate_raw(n_studies=n, n_tasks=cfg.n_tasks, n_queries=cfg.n_queries,
                                       shots=cfg.shots, n_random=cfg.n_random, drops=drops, lr_noise=cfg.lr_noise,
                                       seed=seed * 1000 + c, **cfg.extra)
        results = results_table(raw_icl, raw_lr, "mean")
        t = analyze(results, alpha=alpha, **FAST).table
        t["step"] = t["step"] + start  # study ids stay unique across chunks
        tables.append(t)
    return pd.concat(tables, ignore_index=True)


def rate(table: pd.DataFrame, alpha: float = 0.05) -> tuple[float, float, float, int]:
    """Rejection rate of ``p_iut <= alpha`` over the studies, with its 95% Clopper-Pearson CI."""
    p = table["p_iut"].to_numpy(float)
    n = int(p.size)
    k = int(np.sum(p <= alpha))  # an untestable study (NaN) counts as not rejected
    ci = binomtest(k, n).proportion_ci(0.95, method="exact") if n else None
    return (k / n if n else np.nan), (ci.low if ci else np.nan), (ci.high if ci else np.nan), n


LEAST_FAVOURABLE = {"lr": 0.6, "fc": 0.0, "pd": 0.6}


def level_and_power(configs=CONFIGS, *, n_level: int = 1000, n_power: int = 200, effects=(0.1, 0.2, 0.3),
                    alpha: float = 0.05, seed: int = 0, print_fn=print) -> pd.DataFrame:
    """Level at the least-favourable null and power per configuration; prints a Markdown table."""
    rows = []
    for i, cfg in enumerate(configs):
        t = run_study(cfg, LEAST_FAVOURABLE, n_level, seed=seed + 100 * i, alpha=alpha)
        lv, lo, hi, n = rate(t, alpha)
        row = {"configuration": cfg.name, "studies": n, "level": lv, "level_ci_low": lo, "level_ci_high": hi,
               "untestable": int(t["p_iut"].isna().sum())}
        for j, e in enumerate(effects):
            tp = run_study(cfg, {"lr": 0.1, "fc": 0.1, "pd": 0.1 + e}, n_power, seed=seed + 100 * i + j + 1,
                           alpha=alpha)
            row[f"power_{e:g}"] = rate(tp, alpha)[0]
        rows.append(row)
        print_fn(_line(row, effects))
    return pd.DataFrame(rows)


def _line(r: dict, effects) -> str:
    return (f"| {r['configuration']} | {r['studies']} | {r['level']:.3f} [{r['level_ci_low']:.3f}, "
            f"{r['level_ci_high']:.3f}] | " + " | ".join(f"{r[f'power_{e:g}']:.2f}" for e in effects) + " |")


def header(effects=(0.1, 0.2, 0.3), n_power: int = 200) -> str:
    cols = " | ".join(f"power, PD - max(LR, FC) = {e:g} ({n_power} studies)" for e in effects)
    return ("| configuration (0/1 FC and PD, 24 queries x shots 4, 8; 0-shot left out) | studies | rejection rate at the least-"
            f"favourable null, alpha .05 [95% CI] | {cols} |\n|---|---|---|" + "---|" * len(effects))
