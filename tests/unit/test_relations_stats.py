"""stats.relations on hand-built scores rows whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from stats.relations import head_overlap, multi_relation_heads, relation_ri, task_relation


def _scores(ri: dict[str, np.ndarray], events: int = 20, step: int = 5) -> pd.DataFrame:
    """RI rows (forward = the grid, reverse = grid - 1) and a zero fake-tail baseline, per relation."""
    rows = []
    for rel, grid in ri.items():
        L, H = grid.shape
        for d, shift in (("forward", 0.0), ("reverse", -1.0)):
            for l in range(L):
                for h in range(H):
                    rows.append((step, 100, "relation_index", rel, d, l, h, grid[l, h] + shift, events))
                    rows.append((step, 100, "baseline", rel, d, l, h, 0.0, events))
    return pd.DataFrame(rows, columns=["step", "tokens_seen", "score", "relation", "direction", "layer", "head",
                                       "value", "n_events"])


A = np.array([[0.9, -0.1, 0.2], [0.5, -0.3, 0.1]])   # top-2: L0H0, L1H0
B = np.array([[0.8, 0.3, -0.2], [-0.1, 0.6, 0.0]])   # top-2: L0H0, L1H1


def test_relation_ri_best_head_and_counts():
    t = relation_ri(_scores({"a": A, "b": B}), k=2, min_events=10).set_index("relation")
    assert t.loc["a", "best_head"] == "L0H0" and abs(t.loc["a", "excess"] - 0.9) < 1e-12
    assert t.loc["a", "ri"] == 0.9 and t.loc["a", "baseline"] == 0.0 and t.loc["a", "best_group"] == "a/forward"
    assert t.loc["a", "n_above"] == 4 and t.loc["a", "top_k"] == "L0H0,L1H0"
    assert t.loc["b", "top_k"] == "L0H0,L1H1" and t.loc["b", "n_above"] == 3
    # too few events: nothing is scored
    t = relation_ri(_scores({"a": A}, events=3), k=2, min_events=10)
    assert t["n_heads_scored"].iloc[0] == 0 and t["best_head"].iloc[0] == ""


def test_overlap_hypergeometric_and_spearman():
    ov = head_overlap(_scores({"a": A, "b": B}), k=2, min_events=10, n_perm=999, seed=1).iloc[0]
    assert ov.overlap == 1 and ov.shared == "L0H0" and ov.n_heads == 6
    # P(X >= 1) for two 2-sets among 6 heads = 1 - C(4,2)/C(6,2) = 1 - 6/15
    assert abs(ov.p_hypergeom - (1 - 6 / 15)) < 1e-12
    assert abs(ov.spearman - spearmanr(A.ravel(), B.ravel()).statistic) < 1e-12
    assert 0 < ov.p_perm <= 1


def test_perfectly_shared_heads_have_a_small_permutation_p():
    g = np.arange(12, dtype=float).reshape(3, 4) / 12
    ov = head_overlap(_scores({"a": g, "b": 2 * g}), k=3, min_events=10, n_perm=1999, seed=0).iloc[0]
    assert ov.spearman == 1.0 and ov.p_perm < 0.01 and ov.overlap == 3
    m = multi_relation_heads(_scores({"a": g, "b": 2 * g}), k=3, min_events=10)
    assert list(m["head"]) == ["L2H1", "L2H2", "L2H3"] and (m["n_relations"] == 2).all()


def test_task_relations():
    assert task_relation("rel_partof") == "Part-of" and task_relation("pd_category_letter") == "Category-of"


def test_relations_of_sets_selected_at_the_final_checkpoint():
    import json

    from stats.relations import relations_of_sets

    hs = pd.DataFrame({"step": [10, 30, 30, 30], "role": ["target", "target", "target", "random"],
                       "head_set": ["L1H0", "L1H0", "L0H1", "L1H1"],
                       "details": [json.dumps({"selected_at": "final checkpoint"}),
                                   json.dumps({"relations": ["subj", "Part-of"]}),
                                   json.dumps({"relations": ["mod"]}), "{}"]})
    got = relations_of_sets(hs)
    assert got == {(10, "L1H0"): ["subj", "Part-of"], (30, "L1H0"): ["subj", "Part-of"], (30, "L0H1"): ["mod"]}
