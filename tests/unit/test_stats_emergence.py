import numpy as np
import pandas as pd
import pytest

from stats.emergence import change_point, curve_correlation, emergence_analysis, fit_sigmoid
from stats.simulate import sigmoid_curve, simulate_curves


def test_independent_trending_curves_not_correlated_after_detrending():
    rng = np.random.default_rng(0)
    n, sims = 40, 100
    ls = np.log(np.linspace(1, 40, n) * 1000)
    raw = flagged = 0
    for s in range(sims):
        a = 0.3 * ls + rng.normal(0, 0.1, n)
        b = 0.2 * ls + rng.normal(0, 0.1, n)
        raw += curve_correlation(a, b, ls, method="raw", n_boot=300, seed=s).correlated
        d = curve_correlation(a, b, ls, method="diff", n_boot=300, seed=s)
        t = curve_correlation(a, b, ls, method="detrend", n_boot=300, seed=s)
        flagged += d.correlated and t.correlated and np.sign(d.r) == np.sign(t.r)
    print(f"\nindependent rising curves flagged correlated: raw levels {raw / sims:.2f}, detrended {flagged / sims:.2f}")
    assert raw / sims > 0.9
    assert flagged / sims <= 0.10


def test_shared_shocks_are_detected():
    rng = np.random.default_rng(1)
    ls = np.log(np.linspace(1, 40, 40) * 1000)
    shock = rng.normal(0, 0.1, 40)
    a = 0.3 * ls + shock + rng.normal(0, 0.03, 40)
    b = 0.2 * ls + shock + rng.normal(0, 0.03, 40)
    assert curve_correlation(a, b, ls, method="diff").correlated
    assert curve_correlation(a, b, ls, method="detrend").correlated


def test_planted_lead_recovered():
    c = simulate_curves(midpoints={"ri": 9.2, "pd": 9.6}, seed=3)
    res = emergence_analysis(c, n_boot=200)
    cur = res.curves.set_index("curve")
    assert abs(cur.loc["ri", "midpoint_log10_tokens"] - 9.2) < 0.05
    assert abs(cur.loc["pd", "midpoint_log10_tokens"] - 9.6) < 0.05
    assert abs(cur.loc["pd", "change_point_log10_tokens"] - 9.6) < 0.15
    pair = res.pairs.iloc[0]  # curve_a = "pd", curve_b = "ri": lead = x0(ri) - x0(pd) = -0.4
    assert (pair["curve_a"], pair["curve_b"]) == ("pd", "ri")
    assert pair["rises_first"] == "ri"
    assert pair["lead"] == pytest.approx(-0.4, abs=0.07)
    assert pair["lead_ci_high"] < -0.2 and pair["note"].endswith("Granger tests exploratory")


def test_flat_curve_and_too_few_points_have_reasons():
    # (how often noise is dated at all is test_pure_noise_is_neither_dated_nor_given_a_change_point)
    rng = np.random.default_rng(3)
    x = np.linspace(8, 11, 30)
    f = fit_sigmoid(x, rng.normal(0, 0.05, 30), n_boot=20)
    assert np.isnan(f.midpoint) and "no dated rise or fall" in f.reason and f.best_model == "constant"
    f = fit_sigmoid(x[:3], sigmoid_curve(x[:3], 9), n_boot=0)
    assert np.isnan(f.midpoint) and "too few" in f.reason
    assert np.isnan(change_point(x[:3], x[:3])[0])


def test_pure_noise_is_neither_dated_nor_given_a_change_point():
    """Issue 12: emergence that can say 'none'. Pure noise: no change point in >= 95% of curves
    (permutation test at .05), and no dated sigmoid in >= 90%."""
    rng = np.random.default_rng(5)
    x = np.linspace(8, 11, 15)
    n = 300
    dated = cps = 0
    for i in range(n):
        y = rng.normal(0.3, 0.05, 15)
        dated += np.isfinite(fit_sigmoid(x, y, n_boot=0).midpoint)
        cps += np.isfinite(change_point(x, y, seed=i, n_perm=199)[0])
    assert cps / n <= 0.05 + 2.5 * np.sqrt(0.05 * 0.95 / n), cps / n
    assert dated / n <= 0.10, dated / n


def test_straight_line_and_fall_are_not_onsets():
    rng = np.random.default_rng(6)
    x = np.linspace(8, 11, 20)
    line = fit_sigmoid(x, 0.2 * x + rng.normal(0, 0.02, 20), n_boot=0)
    assert np.isnan(line.midpoint) and line.best_model == "line" and line.direction == "trend up"
    fall = fit_sigmoid(x, sigmoid_curve(x, 9.5, lo=1.0, hi=0.0) + rng.normal(0, 0.02, 20), n_boot=20)
    assert fall.direction == "falls" and abs(fall.midpoint - 9.5) < 0.1
    c = simulate_curves(midpoints={"up": 9.2}, seed=1)
    down = c.assign(curve="down", value=1 - c["value"])
    res = emergence_analysis(pd.concat([c, down]), n_boot=20, n_boot_corr=10)
    from stats.emergence import emergence_order
    o = emergence_order(res.curves).set_index("curve")
    assert o.loc["up", "emergence"] == "rises at" and o.loc["up", "order"] == "1"
    assert o.loc["down", "emergence"] == "falls at" and o.loc["down", "order"] == ""
    assert np.isnan(res.curves.set_index("curve").loc["down", "onset_rank"])
    assert res.pairs.iloc[0]["rises_first"] == "unclear"  # a fall has no onset to compare


def test_change_point_location_equals_ruptures_dynp():
    import ruptures as rpt
    rng = np.random.default_rng(7)
    x = np.linspace(8, 11, 25)
    y = np.where(np.arange(25) >= 14, 1.0, 0.0) + rng.normal(0, 0.1, 25)
    cp, idx, reason, p = change_point(x, y)
    ref = rpt.Dynp(model="l2", min_size=2, jump=1).fit(y.reshape(-1, 1)).predict(n_bkps=1)[0]
    assert idx == ref == 14 and p < 0.01 and reason == ""


def test_nulls_are_bands_never_dated():
    c = simulate_curves(midpoints={"heads:relation_index:subj": 9.2}, seed=2)
    null = c.assign(curve="heads:relation_index:subj (fake-tail null)", value=0.1 + 0 * c["value"], null=True,
                    null_of="heads:relation_index:subj")
    res = emergence_analysis(pd.concat([c.assign(null=False, null_of=""), null]), n_boot=20, n_boot_corr=10)
    assert list(res.curves["curve"]) == ["heads:relation_index:subj"]
    assert res.curves["null_low"].iloc[0] == pytest.approx(0.1)
