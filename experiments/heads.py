"""The ``heads/step=S`` cell: which heads a checkpoint's conditions ablate.

Rows (one per head set): ``step, tokens_seen, role (target / induction / random), control_index
(-1, or 0..R-1 for random sets), head_set, k, rule, details`` (JSON of the selection's parameters
and the scores behind it, so the choice is reported, not hidden).

* target: SIHs by the spec's rule (``topk`` by relation index above its fake-tail baseline, or
  ``fdr``: RI significantly above its nulls, Benjamini-Hochberg) at this checkpoint or at the final
  one (``heads.at``), or an explicit head set;
* induction: the top-k heads by prefix-matching score among heads with a positive copying score;
* random: R sets matched to the target in size and layer histogram, disjoint from it, seeded.
"""

from __future__ import annotations

import json
from functools import lru_cache

import pandas as pd

from ablate.controls import matched_random_sets
from ablate.heads import HeadSet


def induction_heads(handle, k: int, seed: int = 0) -> tuple[HeadSet, dict]:
    """Top-k heads by prefix matching among heads whose copying score is positive."""
    from ablate.copying import copying_score, prefix_matching_score

    pm = prefix_matching_score(handle, seed=seed)
    cp = copying_score(handle, seed=seed)
    vals = pm.values.clone()
    eligible = cp.values > 0
    if eligible.sum() >= k:
        vals[~eligible] = float("-inf")
    H = vals.shape[1]
    order = vals.flatten().argsort(descending=True)[:k]
    heads = HeadSet((pm.layers[int(i) // H], int(i) % H) for i in order)
    details = {"prefix_matching": {str(HeadSet([(pm.layers[int(i) // H], int(i) % H)])): round(float(pm.values.flatten()[i]), 4) for i in order},
               "copying": {str(HeadSet([(pm.layers[int(i) // H], int(i) % H)])): round(float(cp.values.flatten()[i]), 4) for i in order}}
    return heads, details


def sih_heads(handle, spec, seed: int = 0) -> tuple[HeadSet, dict]:
    """SIHs by the spec's selection rule (see :mod:`ablate.selection`)."""
    from ablate.selection import select_sih_for_spec

    return select_sih_for_spec(handle, spec.heads, seed=seed)


def select_head_sets(handle, spec, step: int, tokens_seen, final_handle_loader=None) -> pd.DataFrame:
    h = spec.heads
    a = handle.adapter
    rows = []
    if h.select == "explicit":
        target = HeadSet.parse(h.explicit[0]).validate(a.n_layers, a.n_heads)
        tdet = {"explicit": list(h.explicit)}
        rule = "explicit"
    else:
        target, tdet = sih_heads(handle, spec, seed=spec.seed)
        rule = h.rule
    rows.append(("target", -1, str(target), len(target), rule, json.dumps(tdet, default=str)))
    ind = HeadSet()
    if h.induction:
        ind, idet = induction_heads(handle, min(h.k, a.n_layers * a.n_heads), seed=spec.seed)
        rows.append(("induction", -1, str(ind), len(ind), "prefix_matching+copying", json.dumps(idet)))
    for ci, rs in enumerate(matched_random_sets(target, a.n_layers, a.n_heads, spec.controls.random_sets,
                                                seed=spec.seed * 1_000_003 + step)):
        rows.append(("random", ci, str(rs), len(rs), "matched_random", "{}"))
    df = pd.DataFrame(rows, columns=["role", "control_index", "head_set", "k", "rule", "details"])
    df.insert(0, "step", step)
    df.insert(1, "tokens_seen", tokens_seen)
    return df
