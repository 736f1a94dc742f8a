"""Calibration of the primary IUT through the runner's own table builder.

Simulated raw cell rows (RUN/raw_icl, RUN/raw_lr format; :func:`stats.simulate.simulate_raw`) go
through :func:`experiments.tidy.results_table` -- the function the runner writes results.parquet
with -- and then through :func:`stats.api.analyze`. Each simulated study is one checkpoint.

The full level/power table (>= 1000 studies per configuration) is ``ablate bench calibration``;
these are cheaper versions that still fail on a miscalibrated test: the design this replaced
(one checkpoint-level document LR broadcast to every task) was rejected 14% of the time at the
least-favourable null, far outside the bands below.
"""

import inspect

import numpy as np
import pandas as pd

from stats.calibration import LEAST_FAVOURABLE, Config, rate, run_study
from stats.simulate import simulate_raw

CFG12 = Config("12 tasks, R = 0, LR noise high", 12, 0, 0.5)


def test_level_at_least_favourable_null_through_runner_tables():
    t = run_study(CFG12, LEAST_FAVOURABLE, 400, seed=11)
    lv, lo, hi, n = rate(t)
    print(f"\nlevel at the least-favourable null (12 tasks, 400 studies): {lv:.3f} [{lo:.3f}, {hi:.3f}]")
    assert n == 400 and t["p_iut"].notna().mean() > 0.95
    assert (t["basis"] == "target").all() and (t["p_method"] == "exact").all()
    assert np.mean(t["p_pd_fc"] <= 0.05) > 0.95   # the FC half is far from its null: LR decides
    assert 0.02 <= lv <= 0.085                    # exact level .0498; 400 studies: SE .011


def test_power_through_runner_tables():
    t = run_study(CFG12, {"lr": 0.1, "fc": 0.1, "pd": 0.4}, 100, seed=12)
    power = rate(t)[0]
    print(f"\npower at PD - max(LR, FC) = .3 (12 tasks): {power:.2f}")
    assert power >= 0.8


def test_specific_basis_with_random_sets_through_runner_tables():
    cfg = Config("7 tasks, R = 19", 7, 19, 0.5, n_queries=12)
    t = run_study(cfg, LEAST_FAVOURABLE, 60, seed=13)
    assert (t["basis"] == "specific").all() and (t["R"] == 19).all() and (t["R_null"] == 19).all()
    assert t["p_random"].notna().all()


def test_simulated_studies_pass_through_the_runners_table_builder(monkeypatch):
    """run_study builds its table with the very function the runner calls, and analyze receives
    exactly that function's output."""
    import experiments.runner as runner
    import experiments.tidy as tidy
    from stats import api

    assert "from experiments.tidy import" in inspect.getsource(runner) and "results_table(" in inspect.getsource(runner)
    built, seen = [], []
    real_build, real_analyze = tidy.results_table, api.analyze

    def spy_build(raw_icl, raw_lr, primary):
        out = real_build(raw_icl, raw_lr, primary)
        built.append(out)
        return out

    def spy_analyze(results, **kw):
        seen.append(results)
        return real_analyze(results, **kw)

    monkeypatch.setattr(tidy, "results_table", spy_build)
    monkeypatch.setattr(api, "analyze", spy_analyze)
    run_study(Config("t", 5, 0, 0.1, n_queries=8), LEAST_FAVOURABLE, 3, seed=0)
    assert len(built) == 1 and len(seen) == 1 and seen[0] is built[0]
    # per-item LR of the tidy table is the raw in-prompt lr_prompt, same sign
    raw_icl, _ = simulate_raw(n_studies=1, n_tasks=2, n_queries=4, seed=0)
    res = real_build(raw_icl, pd.DataFrame(), "mean")
    key = ["task", "shots", "item"]
    clean = raw_icl[(raw_icl["role"] == "clean") & (raw_icl["control"] == "clean")].sort_values(key)
    got = res[res["condition"] == "clean"].sort_values(key)
    np.testing.assert_allclose(got["lr"].to_numpy(), clean["lr_prompt"].to_numpy())
    assert np.isnan(got.loc[got["shots"] < 2, "lr"]).all() and (got.loc[got["shots"] >= 2, "lr"] > -5).all()


def test_calibration_runs_without_torch():
    import subprocess
    import sys
    code = ("import sys; from stats.calibration import run_study, Config, LEAST_FAVOURABLE; "
            "run_study(Config('t', 3, 0, .1, n_queries=4), LEAST_FAVOURABLE, 2); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
