"""stats.paths on hand-built path tables whose answers are known (no model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stats.paths import analyze_paths, path_drops


def _table(target_direct: float, random_direct: list[float], n_tasks: int = 4, n_items: int = 3,
           last_layer_random: bool = False) -> pd.DataFrame:
    rows = []
    sets = [("target", -1, "L0H0", target_direct)] + [("random", r, f"L0H{r + 1}", v) for r, v in enumerate(random_direct)]
    for role, ci, hs, direct in sets:
        for t in range(n_tasks):
            for i in range(n_items):
                paths = {"direct": -direct, "mlp:L1": -0.1, "nonlinear": 0.0}
                if not (last_layer_random and role == "random"):
                    paths["q:L1H0"] = -0.05
                paths["total"] = sum(v for k, v in paths.items())
                for name, eff in paths.items():
                    grp = name if name in ("total", "nonlinear") else name.split(":")[0]
                    rows.append({"step": 10, "task": f"t{t}", "role": role, "control_index": ci, "head_set": hs,
                                 "shots": 5, "item": i, "path": name, "group": grp, "effect": eff})
    return pd.DataFrame(rows)


def test_known_drops_specific_share_and_empirical_p():
    R = [0.0, 0.1, 0.2, 0.05]
    res = analyze_paths(_table(0.5, R), n_boot=200)
    tgt = res.set_index("group")
    d = tgt.loc["direct"]
    assert d["drop"] == pytest.approx(0.5) and d["random_drop"] == pytest.approx(np.mean(R))
    assert d["specific"] == pytest.approx(0.5 - np.mean(R)) and d["R"] == 4 and d["n_tasks"] == 4
    assert d["p_random"] == pytest.approx(1 / 5)  # larger than every random set: the smallest p, 1/(R+1)
    assert d["share"] == pytest.approx(0.5 / (0.5 + 0.1 + 0.05))
    assert tgt.loc["mlp", "specific"] == pytest.approx(0.0) and tgt.loc["mlp", "p_random"] == pytest.approx(1.0)
    assert d["ci_low"] == pytest.approx(0.5) and d["ci_high"] == pytest.approx(0.5)  # no spread, no width


def test_a_set_like_the_random_ones_is_not_significant():
    res = analyze_paths(_table(0.1, [0.0, 0.1, 0.2, 0.3, 0.4]), n_boot=100).set_index("group")
    assert res.loc["direct", "p_random"] == pytest.approx(5 / 6)


def test_missing_receivers_count_as_zero_paths():
    """Random senders in the last layer have no later queries: their q path is 0, not missing."""
    t = _table(0.5, [0.0, 0.1], last_layer_random=True)
    per = path_drops(t)
    q = per[(per["role"] == "random") & (per["group"] == "q")]
    assert len(q) == 2 * 4 and (q["drop"] == 0).all()
    res = analyze_paths(t, n_boot=50).set_index("group")
    assert res.loc["q", "R"] == 2 and res.loc["q", "random_drop"] == 0 and res.loc["q", "drop"] == pytest.approx(0.05)


def test_bad_table_is_refused():
    with pytest.raises(ValueError, match="lacks columns"):
        path_drops(pd.DataFrame({"step": [1]}))
