import numpy as np
import pandas as pd
import pytest

from stats.drops import Columns, normalised_drops, specific_units, unit_table
from stats.simulate import simulate_results


def _tiny():
    rows = []
    for item, (c, a, fl) in enumerate([(0.9, 0.5, 0.3), (0.7, 0.6, 0.3)]):
        base = dict(step=10, tokens_seen=100, task="t", shots=2, item=item, lr=1.0 + item)
        rows.append(dict(base, condition="clean", head_set="", operator="none", control_index=-1,
                         fc=1.0, pd=c, fc_floor=0.5, pd_floor=fl))
        rows.append(dict(base, condition="target", head_set="L0H0", operator="mean", control_index=-1,
                         fc=0.75, pd=a, lr=0.5 + item, fc_floor=np.nan, pd_floor=np.nan))
    return pd.DataFrame(rows)


def test_normalised_drop_formula_task_level_normaliser():
    dt = normalised_drops(_tiny())
    it = dt.items.set_index(["ability", "item"])["drop"]
    gap_pd = np.mean([0.9 - 0.3, 0.7 - 0.3])  # task x checkpoint normaliser, not per item
    assert it[("pd", 0)] == pytest.approx((0.9 - 0.5) / gap_pd)
    assert it[("pd", 1)] == pytest.approx((0.7 - 0.6) / gap_pd)
    assert it[("fc", 0)] == pytest.approx((1.0 - 0.75) / 0.5)
    assert it[("lr", 1)] == pytest.approx((2.0 - 1.5) / 1.5)  # LR floor is 0


def test_column_mapping_and_missing_column_error():
    df = _tiny().rename(columns={"pd": "pattern"})
    dt = normalised_drops(df, Columns(pd="pattern"))
    assert (dt.items["ability"] == "pd").any()
    with pytest.raises(ValueError, match="required column"):
        normalised_drops(_tiny().drop(columns=["step"]))


def test_orphan_ablated_rows_error():
    df = _tiny()
    df = df[~((df["condition"] == "clean") & (df["item"] == 1))]
    with pytest.raises(ValueError, match="no clean row"):
        normalised_drops(df)


def test_absent_ability_excluded_and_reported():
    df = simulate_results(n_steps=2, n_tasks=3, n_items=5, absent={1: ("pd",)}, seed=0)
    dt = normalised_drops(df, min_gap={"pd": 0.1})
    ex = dt.normalisers[dt.normalisers["excluded"]]
    assert set(ex["ability"]) == {"pd"} and ex["step"].nunique() == 1 and len(ex) == 3
    assert ex["reason"].str.contains("PD absent").all()
    u = unit_table(dt.raw, dt.normalisers)
    bad = u[u["step"] == ex["step"].iloc[0]]
    assert not bad["valid"].any() and bad["reason"].str.contains("PD absent").all()


def test_lr_docs_broadcast_and_specific_drop():
    df = simulate_results(n_steps=1, n_tasks=4, n_items=5, lr_docs=True, n_random=3, seed=1)
    dt = normalised_drops(df)
    u = unit_table(dt.raw, dt.normalisers)
    assert "lr_docs" not in set(u["task"])
    assert (u["lr_source"] == "lr_docs").all()
    docs = dt.raw[(dt.raw["task"] == "lr_docs") & (dt.raw["condition"] == "target")]["drop"].iloc[0]
    assert np.allclose(u.loc[u["condition"] == "target", "lr"], docs)
    s = specific_units(u)
    rnd = u[u["condition"] == "random"].groupby("task")["pd"].mean()
    tg = s.set_index("task")
    assert np.allclose(tg["s_pd"], tg["pd"] - rnd.reindex(tg.index))
    assert (s["R"] == 3).all()
