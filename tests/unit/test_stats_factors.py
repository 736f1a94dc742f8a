"""stats.factors against known answers: curves built from sigmoids whose midpoints obey a chosen law.

The oracle is the construction itself: a variant with B * C tokens per batch gets an induction curve that
rises at log10 N = c + e log10(B * C) (plus small noise); the fit must recover e, put the law's exponent
inside its CI when the data obey it, and outside when the data follow another exponent. Counts and the
curves' definitions are checked on hand-built tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stats.factors import date_curves, law_fit, law_table, variant_curves


def _sigmoid_curve(mid: float, rng, n: int = 18, lo: float = 0.03, amp: float = 0.9, w: float = 0.06):
    x = np.linspace(mid - 0.9, mid + 0.6, n)
    y = lo + amp / (1 + np.exp(-(x - mid) / w)) + rng.normal(0, 0.01, n)
    return pd.DataFrame({"step": np.arange(1, n + 1), "tokens_seen": 10 ** x, "curve": "induction", "value": y})


def _study(exponent: float, c: float = 5.7, seed: int = 0):
    rng = np.random.default_rng(seed)
    factors = pd.DataFrame({"variant": ["a", "b", "c", "d"], "batch_size": [4, 8, 16, 32], "seq_len": [64] * 4,
                            "n_layers": [2] * 4, "d_model": [32] * 4, "few_shot_share": [0.3] * 4,
                            "tokens_trained": [1e7] * 4})
    onsets, boots = [], {}
    for v in factors.itertuples():
        mid = c + exponent * np.log10(v.batch_size * v.seq_len)
        on, b = date_curves(_sigmoid_curve(mid, rng), n_boot=100, seed=seed)
        onsets.append(on.assign(variant=v.variant))
        boots[v.variant] = b["induction"]
    onsets = pd.concat(onsets, ignore_index=True)
    law = {"log10_c": 5.7, "exponent": 0.5, "curve": "induction"}
    table = law_table(factors, onsets, law)
    return table, law_fit(table, boots, law, n_boot=500, seed=0)


def test_data_that_obey_the_law_recover_its_exponent_and_offset():
    table, fit = _study(0.5)
    assert (table["status"] == "dated").all()
    assert np.allclose(table["measured_log10_tokens"], table["predicted_log10_tokens"], atol=0.03)
    b = fit.set_index("quantity").loc["exponent_of_BxC"]
    assert abs(b["estimate"] - 0.5) < 0.05 and b["law_inside_ci"]
    assert b["ci_dating_low"] < 0.5 < b["ci_dating_high"] and b["ci_ols_low"] < 0.5 < b["ci_ols_high"]
    a = fit.set_index("quantity").loc["a_at_law_exponent"]
    assert abs(a["estimate"] - 5.7) < 0.03 and a["law_inside_ci"]


def test_data_with_another_exponent_reject_the_law():
    _, fit = _study(1.0)
    b = fit.set_index("quantity").loc["exponent_of_BxC"]
    assert abs(b["estimate"] - 1.0) < 0.08
    assert b["law_inside_ci"] is False or b["law_inside_ci"] == False  # noqa: E712  (numpy bool)
    assert b["ci_dating_low"] > 0.5


def test_a_flat_curve_is_not_dated_and_leaves_the_exponent_unfitted():
    rng = np.random.default_rng(1)
    flat = _sigmoid_curve(7.0, rng).assign(value=lambda d: 0.03 + rng.normal(0, 0.01, len(d)))
    on, boots = date_curves(flat, n_boot=50)
    row = on.set_index("curve").loc["induction"]
    assert row["emergence"] == "not emerged" and "induction" not in boots
    assert on.set_index("curve").loc["PD", "emergence"] == "no data"  # absent curves are said, not dropped
    factors = pd.DataFrame({"variant": ["a"], "batch_size": [8], "seq_len": [64], "n_layers": [2], "d_model": [32],
                            "few_shot_share": [0.3], "tokens_trained": [1e7]})
    table = law_table(factors, on.assign(variant="a"), {"log10_c": 5.7, "exponent": 0.5, "curve": "induction"},
                      flat.assign(variant="a"))
    assert table["status"].iloc[0] == "not emerged" and np.isnan(table["measured_log10_tokens"].iloc[0])
    assert table["predicted_log10_tokens"].iloc[0] == pytest.approx(5.7 + 0.5 * np.log10(512))
    fit = law_fit(table, {}, {"log10_c": 5.7, "exponent": 0.5})
    assert fit["quantity"].tolist() == ["exponent_of_BxC"] and np.isnan(fit["estimate"].iloc[0])


def test_variant_curves_by_hand():
    hs = pd.DataFrame([
        # step, tokens, score, relation, direction, layer, head, value, n_events
        (1, 100, "prefix_matching", None, None, 0, 0, 0.1, None),
        (1, 100, "prefix_matching", None, None, 1, 0, 0.4, None),
        (1, 100, "relation_index", "subj", "forward", 0, 0, 0.5, 20),
        (1, 100, "baseline", "subj", "forward", 0, 0, 0.2, 20),
        (1, 100, "relation_index", "obj", "forward", 1, 0, 0.9, 3),    # too few events: left out
        (1, 100, "baseline", "obj", "forward", 1, 0, 0.1, 3),
        (1, 100, "relation_index", "subj", "reverse", 1, 0, 0.9, 30),  # reverse direction: left out
        (1, 100, "baseline", "subj", "reverse", 1, 0, 0.0, 30),
    ], columns=["step", "tokens_seen", "score", "relation", "direction", "layer", "head", "value", "n_events"])
    icl = pd.DataFrame([
        (1, 100, "t1", 10, "clean", "clean", 0.8, 0.7, 0.5),
        (1, 100, "t2", 10, "clean", "clean", 0.6, 1.0, 1 / 3),
        (1, 100, "t1", 0, "clean", "clean", 0.0, 0.1, 0.5),            # not the largest shot count
        (1, 100, "t1", 10, "shuffled", "clean", 0.1, 0.0, 0.5),        # not clean
    ], columns=["step", "tokens_seen", "task", "shots", "control", "condition", "pd", "fc", "chance"])
    c = variant_curves(hs, icl).set_index("curve")["value"]
    assert c["induction"] == pytest.approx(0.4)
    assert c["SIH"] == pytest.approx(0.3)
    assert c["PD"] == pytest.approx(((0.8 - 0.5) + (0.6 - 1 / 3)) / 2)
    assert c["FC"] == pytest.approx(0.85)


def test_a_curve_still_rising_at_the_end_is_censored_not_dated():
    """Induction that starts to form only in the last checkpoints: no sigmoid midpoint inside the
    trained tokens, so the law table reports the onset as later than the tokens trained (a lower bound)."""
    rng = np.random.default_rng(2)
    x = np.linspace(5.5, 7.0, 22)
    late = pd.DataFrame({"step": np.arange(1, 23), "tokens_seen": 10 ** x, "curve": "induction",
                         "value": 0.04 + np.where(x > 6.85, (x - 6.85) * 1.2, 0) + rng.normal(0, 0.01, 22)})
    on, boots = date_curves(late, n_boot=50)
    factors = pd.DataFrame({"variant": ["a"], "batch_size": [4], "seq_len": [64], "n_layers": [2], "d_model": [32],
                            "few_shot_share": [0.3], "tokens_trained": [1e7]})
    row = law_table(factors, on.assign(variant="a"), {"log10_c": 5.7, "exponent": 0.5}, late.assign(variant="a")).iloc[0]
    assert np.isnan(row["measured_log10_tokens"]) and row["onset_after_log10_tokens"] == pytest.approx(7.0)
    assert "censored" in row["status"] and "10^7.00" in row["status"], row["status"]
    # without the curve values, an undated curve stays undated (no censoring claimed from the onset alone)
    flat_rise = on.assign(variant="a", emergence="steady trend, no onset", midpoint_log10_tokens=np.nan)
    assert "censored" not in law_table(factors, flat_rise, {"log10_c": 5.7, "exponent": 0.5}).iloc[0]["status"]


def test_exponent_uses_only_variants_that_change_B_and_C():
    """A 3-layer variant with an onset far off the law must not bend the fitted exponent of B*C (it
    changes another factor), but it does enter the offset at the law's exponent, which the law says
    is the same for every variant."""
    table, _ = _study(0.5)
    boots = {v: np.full(50, m) for v, m in zip(table["variant"], table["measured_log10_tokens"])}
    odd = table.iloc[[1]].assign(variant="deep", n_layers=3, measured_log10_tokens=table["measured_log10_tokens"].iloc[1] + 1)
    boots["deep"] = np.full(50, float(odd["measured_log10_tokens"].iloc[0]))
    fit = law_fit(pd.concat([table, odd], ignore_index=True), boots, {"log10_c": 5.7, "exponent": 0.5},
                  n_boot=200).set_index("quantity")
    assert abs(fit.loc["exponent_of_BxC", "estimate"] - 0.5) < 0.05 and fit.loc["exponent_of_BxC", "n_variants"] == 4
    assert "1 dated variant(s) changing another factor left out" in fit.loc["exponent_of_BxC", "note"]
    assert fit.loc["a_at_law_exponent", "n_variants"] == 5 and fit.loc["a_at_law_exponent", "estimate"] > 5.8
