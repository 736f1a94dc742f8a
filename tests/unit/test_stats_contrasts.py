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
    df = simulate_results(n_steps=1, n_tasks=12, n_items=10, shots=(2, 4), drops={"lr": .1, "fc": .1, "pd": .4},
                          n_random=0, seed=4)
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


@pytest.mark.parametrize("n, alternative", [(6, "greater"), (9, "less"), (7, "two-sided"), (20, "greater")])
def test_matrix_sign_flip_equals_scipy_permutation_test(n, alternative):
    """The fast matrix implementation against scipy.stats.permutation_test (exact and Monte Carlo),
    including the ties of 0/1-valued differences."""
    from scipy.stats import permutation_test
    rng = np.random.default_rng(n)
    for d in (rng.normal(0.3, 1, n), rng.integers(-1, 2, n).astype(float)):
        ours = contrasts.sign_flip_test(d, alternative=alternative, max_exact=2 ** 12, n_resamples=4999, seed=1)
        if ours.exact:
            ref = permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                   alternative=alternative).pvalue
            assert ours.pvalue == pytest.approx(ref, abs=1e-12)
        else:  # different random sign vectors: equal up to Monte Carlo error (SE <= .0071)
            ref = permutation_test((d,), np.mean, permutation_type="samples", n_resamples=4999,
                                   alternative=alternative, rng=np.random.default_rng(2)).pvalue
            assert abs(ours.pvalue - ref) < 0.03


def test_mixed_model_iut_nan_when_either_half_is_nan():
    nan = float("nan")
    assert np.isnan(robustness.MixedModelResult(p_pd_minus_lr=nan, p_pd_minus_fc=0.01).p_iut)
    assert np.isnan(robustness.MixedModelResult(p_pd_minus_lr=0.01, p_pd_minus_fc=nan).p_iut)
    assert robustness.MixedModelResult(p_pd_minus_lr=0.01, p_pd_minus_fc=0.2).p_iut == 0.2


def test_cluster_bootstrap_treats_a_query_across_shots_as_one_unit():
    """Duplicating every query's item at 3 shot counts adds no information: the query bootstrap
    gives the same distribution; an item-level bootstrap would shrink the CI by ~sqrt(3)."""
    rng = np.random.default_rng(3)
    tasks = [rng.normal(0.2, 0.5, (10, 3)) for _ in range(6)]
    tasks = [x - x.mean(axis=0) + 0.2 for x in tasks]  # no between-task spread: the within-task part decides
    one = [(x, np.ones(len(x))) for x in tasks]
    three = [(3 * x, np.full(len(x), 3.0)) for x in tasks]  # sums over 3 identical items
    a = effects.cluster_bootstrap(one, n_boot=500, seed=0)
    b = effects.cluster_bootstrap(three, n_boot=500, seed=0)
    np.testing.assert_allclose(a, b)
    items = [(np.repeat(x, 3, axis=0), np.ones(3 * len(x))) for x in tasks]  # wrongly: items as units
    c = effects.cluster_bootstrap(items, n_boot=500, seed=0)
    assert np.std(c) < 0.7 * np.std(a)  # ~ 1 / sqrt(3) = .58
