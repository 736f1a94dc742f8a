import itertools

import numpy as np
import pytest

from stats import contrasts, effects, robustness
from stats.api import analyze
from stats.simulate import simulate_results


def _literal_sign_flip(d):
    obs = np.mean(d)
    null = [np.mean(np.array(s) * d) for s in itertools.product([1, -1], repeat=len(d))]
    return np.mean(np.array(null) >= obs - 1e-12)


def test_exact_sign_flip_matches_literal_enumeration():
    rng = np.random.default_rng(0)
    for n in (3, 5, 8):
        d = rng.normal(0.2, 1, n)
        r = contrasts.sign_flip_test(d)
        assert r.exact and r.n_resamples == 2 ** n
        assert r.pvalue == pytest.approx(_literal_sign_flip(d))


def test_batched_equals_single():
    rng = np.random.default_rng(1)
    d = rng.normal(0.1, 1, (5, 7))
    batch = contrasts.sign_flip_test(d).pvalue
    single = [contrasts.sign_flip_test(row).pvalue for row in d]
    np.testing.assert_allclose(batch, single)


def test_iut_p_is_max_of_parts():
    rng = np.random.default_rng(2)
    pdd, lr, fc = rng.normal(0.3, 0.1, 10), rng.normal(0.25, 0.1, 10), rng.normal(0.1, 0.1, 10)
    r = contrasts.iut_test(pdd, lr, fc)
    assert r.pvalue == max(r.p_lr, r.p_fc)
    assert r.p_lr == contrasts.sign_flip_test(pdd - lr).pvalue
    assert r.p_fc == contrasts.sign_flip_test(pdd - fc).pvalue


def test_empirical_p_formula_and_resolution():
    assert contrasts.empirical_p(1.0, np.array([0.5, 1.0, 2.0, 0.1])) == pytest.approx((1 + 2) / 5)
    assert contrasts.empirical_p(9.0, np.zeros(19)) == pytest.approx(1 / 20)
    with pytest.raises(ValueError, match="R >= 19"):
        contrasts.empirical_p(9.0, np.zeros(5), min_resolution=0.05)
    with pytest.raises(ValueError, match="R = 0"):
        contrasts.empirical_p(1.0, np.array([]))


def test_single_task_error_and_nan_row():
    with pytest.raises(ValueError, match=">= 2 units"):
        contrasts.sign_flip_test(np.array([0.3]))
    df = simulate_results(n_steps=1, n_tasks=1, n_items=6, n_random=3, seed=0)
    t = analyze(df, n_boot=50, mixed_model=False).table
    assert t["p_iut"].isna().all()
    assert "needs >= 2" in t["note"].iloc[0]
    assert "R >= 19" in t["note"].iloc[0]  # R = 3 too small for p resolution .05


def test_all_equal_drops():
    d = np.zeros(8)
    assert contrasts.sign_flip_test(d).pvalue == 1.0
    val, why = effects.d_z(d)
    assert np.isnan(val) and "sd = 0" in why
    w = robustness.wilcoxon_iut(d, d, d)
    assert np.isnan(w.pvalue) and "all differences are 0" in w.reason
    const = np.full(8, 0.2)
    assert contrasts.sign_flip_test(const).pvalue == pytest.approx(1 / 256)
    assert np.isnan(effects.d_z(const)[0])


def test_cliffs_delta_oracle():
    x, y = np.array([3.0, 4, 5]), np.array([1.0, 2, 4])
    literal = np.mean(np.sign(x[:, None] - y[None, :]))
    assert effects.cliffs_delta(x, y)[0] == pytest.approx(literal)


def test_bootstrap_ci_covers_planted_contrast():
    df = simulate_results(n_steps=1, n_tasks=12, n_items=10, drops={"lr": .1, "fc": .1, "pd": .4}, n_random=0, seed=4)
    t = analyze(df, n_boot=1000, mixed_model=False).table.iloc[0]
    assert t["basis"] == "target"
    assert t["contrast_ci_low"] < 0.3 < t["contrast_ci_high"]
    assert t["contrast_ci_low"] < t["contrast"] < t["contrast_ci_high"]


def test_cliffs_delta_equals_mann_whitney_identity():
    from scipy.stats import mannwhitneyu
    rng = np.random.default_rng(7)
    x, y = rng.normal(0.3, 1, 9), rng.normal(0, 1, 11)
    u = mannwhitneyu(x, y).statistic
    assert effects.cliffs_delta(x, y)[0] == pytest.approx(2 * u / (9 * 11) - 1)
