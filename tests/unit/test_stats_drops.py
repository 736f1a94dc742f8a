import numpy as np
import pandas as pd
import pytest

from stats.drops import Columns, normalised_drops, presence_tests, specific_units, unit_table, validate_min_gap
from stats.simulate import simulate_results


def _tiny():
    rows = []
    for item, (c, a, fl) in enumerate([(0.9, 0.5, 0.3), (0.7, 0.6, 0.3)]):
        base = dict(step=10, tokens_seen=100, task="t", shots=2, item=item)
        rows.append(dict(base, condition="clean", head_set="", operator="none", control_index=-1,
                         fc=1.0, pd=c, lr=1.0 + item, fc_floor=0.5, pd_floor=fl))
        rows.append(dict(base, condition="target", head_set="L0H0", operator="mean", control_index=-1,
                         fc=0.75, pd=a, lr=0.5 + item, fc_floor=np.nan, pd_floor=np.nan))
    return pd.DataFrame(rows)


def test_normalised_drop_formula_task_level_normaliser():
    dt = normalised_drops(_tiny(), presence_alpha=None)  # 2 queries: no presence test can pass
    it = dt.items.set_index("item")
    gap_pd = np.mean([0.9 - 0.3, 0.7 - 0.3])  # task x checkpoint normaliser, not per item
    assert it.loc[0, "drop_pd"] == pytest.approx((0.9 - 0.5) / gap_pd)
    assert it.loc[1, "drop_pd"] == pytest.approx((0.7 - 0.6) / gap_pd)
    assert it.loc[0, "drop_fc"] == pytest.approx((1.0 - 0.75) / 0.5)
    assert it.loc[1, "drop_lr"] == pytest.approx((2.0 - 1.5) / 1.5)  # LR floor is 0, gap = mean(1, 2)
    assert it["query"].tolist() == ["t:0", "t:1"]


def test_column_mapping_and_missing_column_error():
    df = _tiny().rename(columns={"pd": "pattern"})
    dt = normalised_drops(df, Columns(pd="pattern"), presence_alpha=None)
    assert np.isfinite(dt.items["drop_pd"]).any()
    with pytest.raises(ValueError, match="required column"):
        normalised_drops(_tiny().drop(columns=["step"]))
    assert normalised_drops(_tiny()).items["drop_pd"].isna().all()  # with the test: 2 queries never suffice


def test_orphan_ablated_rows_error():
    df = _tiny()
    df = df[~((df["condition"] == "clean") & (df["item"] == 1))]
    with pytest.raises(ValueError, match="no clean row"):
        normalised_drops(df)


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan"), float("inf"), "x"])
def test_min_gap_validated(bad):
    with pytest.raises(ValueError, match="finite number > 0"):
        validate_min_gap({"pd": bad})
    with pytest.raises(ValueError, match="unknown ability"):
        validate_min_gap({"icl": 0.1})


def test_zero_shot_and_nan_items_are_counted_not_dropped_silently():
    df = simulate_results(n_steps=1, n_tasks=2, n_items=6, shots=(0, 1, 4), seed=0)
    df.loc[(df["shots"] == 1), "lr"] = np.nan           # LR needs >= 2 demonstrations
    hit = df.index[(df["condition"] == "target") & (df["shots"] == 4)][:3]
    df.loc[hit, "pd"] = np.nan                           # three NaN PD values under ablation
    dt = normalised_drops(df)
    c = dt.counts
    tg = c[c["condition"] == "target"]
    assert tg["rows"].sum() == 2 * 6 * 3
    assert tg["zero-shot (the FC floor, not a level of ICL)"].sum() == 12
    assert tg["LR undefined (fewer than 2 demonstrations)"].sum() == 12
    assert tg["PD NaN on the ablated row"].sum() == 3
    assert tg["analysed"].sum() == 12 - 3
    assert len(dt.items[dt.items["condition"] == "target"]) == 9
    assert set(dt.items["shots"]) == {4}


def test_presence_pd_at_chance_is_absent_even_with_a_gap_above_min_gap():
    """The demo's case: PD at chance (binomial p = .25) with a raw gap >= .05 must be 'absent'."""
    rows = []
    outcomes = [1] * 12 + [0] * 8  # 12 of 20 correct, chance .5: gap .1, exact binomial p = .252
    for i, o in enumerate(outcomes):
        base = dict(step=1, task="t", shots=20, item=i, lr=0.5, fc=1.0, fc_floor=0.0, pd_floor=0.5)
        rows.append(dict(base, condition="clean", operator="none", pd=float(o)))
        rows.append(dict(base, condition="target", operator="mean", head_set="L0H0", pd=0.0))
    dt = normalised_drops(pd.DataFrame(rows), min_gap={"pd": 0.05})
    n = dt.normalisers.set_index("ability").loc["pd"]
    assert n["gap"] == pytest.approx(0.1) and n["p_present"] == pytest.approx(0.2517, abs=1e-3)
    assert n["excluded"] and "not reliably above its floor" in n["reason"]
    assert dt.items["drop_pd"].isna().all()              # no drop of 1.63 from an absent ability
    assert not dt.normalisers.set_index("ability").loc["lr", "excluded"]


def test_presence_matches_scipy_binomial_and_near_threshold_flag():
    from scipy.stats import binomtest
    rows = []
    for i in range(30):
        o = float(i < 21)  # 21 / 30 vs chance .5
        for sh in (2, 8):
            base = dict(step=1, task="t", shots=sh, item=i, lr=0.06 + 0.01 * (i % 3), fc=1.0, fc_floor=0.0,
                        pd_floor=0.5)
            rows.append(dict(base, condition="clean", operator="none", pd=o))
            rows.append(dict(base, condition="target", operator="mean", head_set="L0H0", pd=0.0))
    dt = normalised_drops(pd.DataFrame(rows))
    n = dt.normalisers.set_index("ability")
    assert n.loc["pd", "p_present"] == pytest.approx(binomtest(21, 30, 0.5, alternative="greater").pvalue)
    assert not n.loc["lr", "excluded"] and n.loc["lr", "near_threshold"]   # gap .07 < 2 x .05
    assert not n.loc["pd", "near_threshold"]


def test_document_lr_is_secondary_never_a_unit():
    df = simulate_results(n_steps=1, n_tasks=4, n_items=5, n_random=3, seed=1)
    docs = []
    for cond, ci, hs, lr in [("clean", -1, "", 0.3), ("target", -1, "L0H0,L1H0,L2H0,L3H0", 0.1)]:
        for d in range(6):
            docs.append(dict(step=df["step"].iloc[0], tokens_seen=0, condition=cond, control_index=ci, head_set=hs,
                             operator="none" if cond == "clean" else "mean", task="lr_docs", shots=0, item=d,
                             lr=lr + 0.01 * d))
    dt = normalised_drops(pd.concat([df, pd.DataFrame(docs)], ignore_index=True))
    u = unit_table(dt.raw, dt.normalisers)
    assert "lr_docs" not in set(u["task"]) and "lr_docs" not in set(dt.items["task"])
    assert len(dt.documents) == 12


def test_specific_drop_and_R_counts_only_random_sets_with_data():
    df = simulate_results(n_steps=1, n_tasks=4, n_items=5, n_random=3, seed=1)
    gone = (df["condition"] == "random") & (df["control_index"] == 2) & (df["task"] == "task01")
    dt = normalised_drops(df[~gone])
    u = unit_table(dt.raw, dt.normalisers)
    s = specific_units(u).set_index("task")
    assert s.loc["task01", "R"] == 2 and (s.drop(index="task01")["R"] == 3).all()
    rnd = u[u["condition"] == "random"].groupby("task")["pd"].mean()
    assert np.allclose(s["s_pd"], s["pd"] - rnd.reindex(s.index))


def test_presence_sign_flip_for_item_level_floors():
    rng = np.random.default_rng(0)
    d = pd.DataFrame({"step": 1, "task": "t", "shots": 4, "item": np.arange(12), "lr": rng.normal(0, 1, 12),
                      "fc": 1.0, "fc_floor": 0.0, "pd": 1.0, "pd_floor": 0.5})
    p = presence_tests(d).set_index("ability")
    from stats.contrasts import sign_flip_test
    assert p.loc["lr", "p_present"] == pytest.approx(sign_flip_test(d["lr"].to_numpy()).pvalue)


def test_a_task_mean_drop_is_capped_at_one():
    """A head that only carries the format: ablated, FC goes 1 -> 0 (drop 1) and PD 1 -> 0 falls
    below chance .25 (raw drop 1/.75 = 1.33). Capped, PD's drop is 1, not more than FC's."""
    from stats.simulate import simulate_results
    from stats.drops import normalised_drops, unit_table

    df = simulate_results(n_steps=1, n_tasks=4, n_items=8, n_random=2, drops={"lr": 0.0, "fc": 0.0, "pd": 0.0}, seed=1)
    tgt = df["condition"] == "target"
    icl = df["task"] != "lr_docs"
    df.loc[icl & (df["condition"] == "clean"), ["pd", "fc"]] = 1.0
    df.loc[icl, "pd_floor"] = 0.25
    df.loc[icl, "fc_floor"] = 0.0
    df.loc[icl & (df["condition"].isin(["random"])), ["pd", "fc"]] = 1.0
    df.loc[icl & tgt, ["pd", "fc"]] = 0.0
    dt = normalised_drops(df, presence_alpha=None)
    u = unit_table(dt.raw, dt.normalisers)
    u = u[u["condition"] == "target"]
    assert len(u) and (u["pd"] - 1).abs().max() < 1e-12 and (u["fc"] - 1).abs().max() < 1e-12
    it = dt.items[dt.items["condition"] == "target"]
    assert (it.groupby("task")["drop_pd"].mean() - 1).abs().max() < 1e-12
    # an uncapped drop below 1 is untouched
    df.loc[icl & tgt & (df["item"] % 2 == 0), ["pd", "fc"]] = 1.0
    dt = normalised_drops(df, presence_alpha=None)
    u = unit_table(dt.raw, dt.normalisers)
    u = u[u["condition"] == "target"]
    assert (u["fc"] - 0.5).abs().max() < 0.2 and (u["pd"] < 1).all()
