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

from ablate.scores.controls import matched_random_sets
from ablate.model.heads import HeadSet


def induction_heads(handle, k: int, seed: int = 0) -> tuple[HeadSet, dict]:
    """Top-k heads by prefix matching among heads whose copying score is positive."""
    from ablate.scores.copying import copying_score, prefix_matching_score

    pm = prefix_matching_score(handle, seed=seed, n_sequences=16)
    cp = copying_score(handle, seed=seed, n_sequences=16)
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


@lru_cache(maxsize=8)
def _word_triplets(n_sentences: int, relations: tuple[str, ...], seed: int):
    """Parse the shipped sentences once per process (tokenizer-independent, reused across steps)."""
    from ablate.triplets.syntax import load_sentences, parse_word_triplets

    sents = load_sentences(None, n=n_sentences, seed=seed)
    return tuple(parse_word_triplets(sents, relations=list(relations)))


def sih_heads(handle, spec, seed: int = 0) -> tuple[HeadSet, dict]:
    """SIHs of one checkpoint by the spec's rule.

    Relation index (tau = 2.2 gate, real attention patterns) on spaCy-parsed sentences for the
    spec's relations, forward direction, with the fake-tail (``baseline``) null -- plus the
    shuffled-tail null for the ``fdr`` rule.

    * ``topk``: the k heads with the largest ``max_r [RI_h(r) - RI_h^baseline(r)]`` (RI above its
      fake-tail baseline, best relation), among heads where that excess is positive and rests on at
      least ``heads.min_events`` gated events.
    * ``fdr``: :func:`ablate.scores.selection.select_sihs` (per-triplet Wilcoxon above every null,
      Benjamini-Hochberg per relation, minimum effect), union over relations; if more than k heads
      pass, the k with the largest effect are kept.
    """
    import numpy as np

    from ablate.scores.relation_index import relation_index
    from ablate.triplets.relations import align_triplets
    from ablate.scores.selection import select_sihs

    h = spec.heads
    words = _word_triplets(h.n_sentences, tuple(h.relations), seed)
    triplets, report = align_triplets(list(words), handle.tokenizer, max_tokens=64, directions=("forward",))
    nulls = ("baseline", "shuffled") if h.rule == "fdr" else ("baseline",)
    res = relation_index(handle, triplets, tau=2.2, nulls=nulls, seed=seed)
    rels = [r for r in h.relations if (r, "forward") in res.groups()]
    excess = np.full((len(res.layers), res.n_heads), -np.inf)
    per_rel = {}
    for r in rels:
        d = (res.ri(r, "forward") - res.ri(r, "forward", "baseline")).numpy()
        enough = res.n_events(r, "forward").numpy() >= h.min_events  # RI from a handful of events is noise
        d = np.where(enough, d, np.nan)
        per_rel[r] = d
        excess = np.fmax(excess, np.nan_to_num(d, nan=-np.inf))
    details = {"n_triplets": len(triplets), "alignment": report.summary() if hasattr(report, "summary") else str(report),
               "relations": rels, "tau": 2.2, "min_events": h.min_events}
    if h.rule == "topk":
        order = np.argsort(-excess, axis=None, kind="stable")
        chosen = [divmod(int(i), res.n_heads) for i in order[: h.k] if excess.flat[int(i)] > 0]
        heads = HeadSet((res.layers[li], hh) for li, hh in chosen)
        details["rule"] = "top-k by max over relations of RI - fake-tail RI (positive only)"
    else:
        sel = select_sihs(res, nulls=nulls, alpha=h.alpha, min_effect=h.min_effect,
                          groups=[(r, "forward") for r in rels])
        passed = [(excess[res.layers.index(x.layer), x.head], x.layer, x.head) for x in sel.sets["all"]]
        passed.sort(key=lambda t: (-t[0], t[1], t[2]))
        heads = HeadSet((l, hh) for _, l, hh in passed[: h.k])
        details["rule"] = "null-fdr"
        details["selection"] = sel.report()
    details["excess_of_selected"] = {str(HeadSet([x])): round(float(excess[res.layers.index(x.layer), x.head]), 4)
                                     for x in heads}
    return heads, details


def select_head_sets(handle, spec, step: int, tokens_seen, fixed_target: HeadSet | None = None) -> pd.DataFrame:
    """Rows of the ``heads/step=S`` cell (see module docstring)."""
    h = spec.heads
    a = handle.adapter
    rows = []
    if fixed_target is not None:
        target = fixed_target
        tdet = {"selected_at": "final checkpoint"}
        rule = h.rule
    elif h.select == "explicit":
        target = HeadSet.parse(h.explicit[0]).validate(a.n_layers, a.n_heads)
        tdet = {"explicit": list(h.explicit)}
        rule = "explicit"
    else:
        target, tdet = sih_heads(handle, spec, seed=spec.seed)
        rule = h.rule
    if len(target) == 0:  # nothing passed the rule: reported, and no random sets can be matched to it
        tdet["note"] = "no head passed the selection rule at this checkpoint"
    rows.append(("target", -1, str(target), len(target), rule, json.dumps(tdet, default=str)))
    ind = HeadSet()
    if h.induction:
        ind, idet = induction_heads(handle, min(h.k, a.n_layers * a.n_heads), seed=spec.seed)
        rows.append(("induction", -1, str(ind), len(ind), "prefix_matching+copying", json.dumps(idet)))
    for ci, rs in enumerate([] if len(target) == 0 else matched_random_sets(target, a.n_layers, a.n_heads, spec.controls.random_sets,
                                                seed=spec.seed * 1_000_003 + step)):
        rows.append(("random", ci, str(rs), len(rs), "matched_random", "{}"))
    df = pd.DataFrame(rows, columns=["role", "control_index", "head_set", "k", "rule", "details"])
    df.insert(0, "step", step)
    df.insert(1, "tokens_seen", tokens_seen)
    return df
