import numpy as np
from statsmodels.stats.multitest import multipletests

from stats import corrections
from stats.api import analyze
from stats.simulate import simulate_results


def test_holm_bh_match_multipletests_and_keep_nan():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.2, 0.001])
    ok = ~np.isnan(p)
    np.testing.assert_allclose(corrections.holm(p)[ok], multipletests(p[ok], method="holm")[1])
    np.testing.assert_allclose(corrections.bh(p)[ok], multipletests(p[ok], method="fdr_bh")[1])
    assert np.isnan(corrections.holm(p)[2])


def test_analyze_holm_over_preregistered_bh_over_rest():
    df = simulate_results(n_steps=5, n_tasks=6, n_items=5, drops={"lr": .1, "fc": .1, "pd": .2}, task_sd=.1, seed=5)
    steps = sorted(df["step"].unique())
    t = analyze(df, preregistered_steps=steps[:3], n_boot=0, mixed_model=False, breakdown=False).table
    pre, ex = t[t["preregistered"]], t[~t["preregistered"]]
    np.testing.assert_allclose(pre["p_holm"], multipletests(pre["p_iut"], method="holm")[1])
    np.testing.assert_allclose(ex["p_bh"], multipletests(ex["p_iut"], method="fdr_bh")[1])
    assert ex["p_holm"].isna().all()
