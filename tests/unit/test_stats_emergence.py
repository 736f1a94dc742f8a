import numpy as np
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
    rng = np.random.default_rng(2)
    x = np.linspace(8, 11, 30)
    f = fit_sigmoid(x, rng.normal(0, 0.05, 30), n_boot=20)
    assert np.isnan(f.midpoint) and "no clear rise" in f.reason
    f = fit_sigmoid(x[:3], sigmoid_curve(x[:3], 9), n_boot=0)
    assert np.isnan(f.midpoint) and "too few" in f.reason
    assert np.isnan(change_point(x[:3], x[:3])[0])
