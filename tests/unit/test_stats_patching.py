"""Restoration statistics against hand computation and simulated data with known restoration."""

import numpy as np
import pandas as pd
import pytest

from stats.patching import analyze_patching, restoration_units


def _table(rho_target, rho_random, *, n_tasks=5, n_items=4, R=4, gaps=None, noise=0.0, seed=0, steps=(10,)):
    """clean = c, corrupted = c - gap_t, patched = corrupted + rho * gap_t (+ noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for step in steps:
        for t in range(n_tasks):
            gap = 1.0 + t if gaps is None else gaps[t]
            for i in range(n_items):
                c = -1.0 - rng.random()
                for cond, ci, rho in [("target", -1, rho_target), *[("random", r, rho_random) for r in range(R)]]:
                    rr = rho[t] if np.ndim(rho) else rho
                    pat = c - gap + rr * gap + noise * rng.standard_normal()
                    rows.append({"step": step, "tokens_seen": step * 100, "condition": cond, "control_index": ci,
                                 "head_set": "L1H0" if cond == "target" else f"L1H{ci + 1}", "task": f"t{t}",
                                 "shots": 3, "item": i, "clean_gold_logprob": c,
                                 "corrupted_gold_logprob": c - gap, "patched_gold_logprob": pat})
    return pd.DataFrame(rows)


def test_known_restoration_and_exact_p():
    res = analyze_patching(_table(0.8, 0.1), n_boot=200)
    r = res.table.iloc[0]
    assert r["condition"] == "target" and r["n_tasks"] == 5 and r["R"] == 4
    assert r["restoration"] == pytest.approx(0.8) and r["random_restoration"] == pytest.approx(0.1)
    assert r["specific"] == pytest.approx(0.7)
    # all 5 specific restorations positive: only the identity sign vector reaches T -> p = 1/2^5
    assert r["p_signflip"] == pytest.approx(1 / 32)
    # the target beats every random set: p = 1/(R+1)
    assert r["p_random"] == pytest.approx(1 / 5)
    assert r["ci_low"] == pytest.approx(0.7) and r["ci_high"] == pytest.approx(0.7)
    assert "restored 0.80" in res.summary() and "p = .031" in res.summary()


def test_hand_computed_units_and_exclusion():
    df = pd.DataFrame({
        "step": 0, "condition": ["target"] * 4, "control_index": -1, "head_set": "L0H0",
        "task": ["a", "a", "b", "b"], "shots": 2, "item": [0, 1, 0, 1],
        "clean_gold_logprob": [-1.0, -2.0, -1.0, -1.0],
        "corrupted_gold_logprob": [-3.0, -2.0, -1.02, -1.0],
        "patched_gold_logprob": [-2.0, -2.5, -1.0, -1.0],
    })
    u = restoration_units(df).set_index("task")
    # task a: gap = mean(2, 0) = 1, gain = mean(1, -0.5) = 0.25 -> restoration 0.25
    assert u.loc["a", "gap"] == pytest.approx(1.0) and u.loc["a", "restoration"] == pytest.approx(0.25)
    # task b: gap 0.01 < 0.1 -> excluded, with its reason
    assert np.isnan(u.loc["b", "restoration"]) and "gap < 0.1" in u.loc["b", "excluded"]
    t = analyze_patching(df).table.iloc[0]
    assert t["n_tasks"] == 1 and "1 task(s) excluded" in t["note"] and "no size-matched random sets" in t["note"]


def test_holm_across_steps_and_missing_columns():
    res = analyze_patching(_table(0.8, 0.1, steps=(1, 2, 3)), n_boot=50)
    assert list(res.table["step"]) == [1, 2, 3]
    np.testing.assert_allclose(res.table["p_holm"], np.minimum(1, 3 * res.table["p_signflip"]))
    with pytest.raises(ValueError, match="operators.patch"):
        analyze_patching(_table(0.8, 0.1).drop(columns="patched_gold_logprob"))


def test_null_calibration():
    """Target and random sets restore alike (noisy): the one-sided sign-flip test rejects at most
    about alpha of the time."""
    n = 300  # independent simulated datasets, one per "step"
    df = _table(0.3, 0.3, n_tasks=8, n_items=3, R=4, noise=0.5, seed=1, steps=range(n))
    p = analyze_patching(df, n_boot=0).table["p_signflip"].to_numpy()
    assert len(p) == n and np.isfinite(p).all()
    rate = float(np.mean(p <= 0.05))
    assert rate <= 0.05 + 2.5 * np.sqrt(0.05 * 0.95 / n), rate
    assert np.mean(p <= 0.5) > 0.3  # not a test that never rejects anything


def test_flags_a_specific_value_that_comes_from_harmful_random_sets():
    t = analyze_patching(_table(0.0, -0.5), n_boot=50).table.iloc[0]
    assert t["specific"] == pytest.approx(0.5) and "restores ~nothing" in t["note"]
    assert "restores ~nothing" not in analyze_patching(_table(0.8, 0.1), n_boot=50).table.iloc[0]["note"]


def test_random_sets_of_another_size_are_not_the_null():
    """A random set with a different number of heads restores differently; it must not enter the
    tested set's specific restoration or its R."""
    df = _table(0.8, 0.1, R=3)
    big = df[df["condition"] == "random"].copy()
    big["control_index"] += 10
    big["head_set"] = "L0H1,L0H2,L0H3"           # 3 heads vs the target's 1
    big["patched_gold_logprob"] = big["clean_gold_logprob"]  # restores everything
    res = analyze_patching(pd.concat([df, big], ignore_index=True), n_boot=100)
    t = res.table.iloc[0]
    assert t["R"] == 3
    assert t["random_restoration"] == pytest.approx(0.1)
    assert t["specific"] == pytest.approx(0.7)
    assert t["ci_low"] <= 0.7 <= t["ci_high"]
