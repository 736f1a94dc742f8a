"""Calibration of the primary IUT by simulation, through the whole pipeline (simulate -> analyze).

Each simulated dataset is one checkpoint (``step``) of one big table: steps are analysed
independently, so thousands of datasets cost one vectorised call.

Why the [.03, .07] target is met by construction, not by luck: with n = 12 tasks the exact
sign-flip test enumerates 2^12 = 4096 sign vectors; the simulated per-task differences are
continuous and symmetric about 0 under H0, so P(p <= .05) = floor(.05 * 4096) / 4096 = .0498
exactly. At the least-favourable null (PD = LR, PD >> FC) p_IUT = max(p_LR, p_FC) = p_LR in almost
every dataset, so the IUT's rejection rate is .0498 too. With 2000 datasets the Monte Carlo SE is
.0049, so [.03, .07] is +-4 SE around the true level.
"""

import numpy as np
import pytest

from stats.api import analyze
from stats.simulate import simulate_results

FAST = dict(n_boot=0, wilcoxon=False, mixed_model=False, breakdown=False)


def _rates(n_datasets, drops, n_tasks=12, seed=0, **kw):
    df = simulate_results(n_steps=n_datasets, steps=list(range(1, n_datasets + 1)), n_tasks=n_tasks, n_items=4,
                          drops=drops, n_random=0, task_sd=0.05, item_sd=0.1, seed=seed)
    res = analyze(df, **FAST, **kw)
    t = res.table
    assert len(t) == n_datasets and t["p_iut"].notna().all()
    return t


def test_least_favourable_null_exact():
    t = _rates(2000, {"lr": 0.2, "fc": 0.0, "pd": 0.2})
    rate = float(np.mean(t["p_iut"] <= 0.05))
    print(f"\nIUT rejection rate at the least-favourable null (exact, 12 tasks, 2000 datasets): {rate:.4f}"
          f" (exact level {204 / 4096:.4f})")
    assert (t["p_method"] == "exact").all()
    assert np.mean(t["p_pd_fc"] <= 0.05) > 0.99  # PD clearly exceeds FC
    assert 0.03 <= rate <= 0.07


def test_least_favourable_null_monte_carlo():
    # 20 tasks: 2^20 > max_exact, so Monte Carlo with 999 sign vectors; p = (1+#)/(B+1) is valid,
    # P(p <= .05) = .05 exactly under H0; 1000 datasets: SE .0069, [.03,.07] = +-2.9 SE.
    t = _rates(1000, {"lr": 0.2, "fc": 0.0, "pd": 0.2}, n_tasks=20, n_resamples=999, seed=1)
    rate = float(np.mean(t["p_iut"] <= 0.05))
    print(f"\nIUT rejection rate at the least-favourable null (Monte Carlo 999, 20 tasks): {rate:.4f}")
    assert t["p_method"].str.startswith("Monte Carlo").all()
    assert 0.03 <= rate <= 0.07


def test_global_null():
    t = _rates(1000, {"lr": 0.1, "fc": 0.1, "pd": 0.1}, seed=2)
    rate = float(np.mean(t["p_iut"] <= 0.05))
    print(f"\nIUT rejection rate under the global null: {rate:.4f}")
    assert rate <= 0.05


@pytest.mark.parametrize("pd_drop, min_power", [(0.14, 0.1), (0.18, 0.5), (0.25, 0.95)])
def test_power_planted_effect(pd_drop, min_power):
    t = _rates(400, {"lr": 0.1, "fc": 0.1, "pd": pd_drop}, seed=3)
    power = float(np.mean(t["p_iut"] <= 0.05))
    print(f"\npower, PD drop {pd_drop} vs LR = FC = 0.1, 12 tasks, task SD .05, 400 datasets: {power:.3f}")
    assert power >= min_power
