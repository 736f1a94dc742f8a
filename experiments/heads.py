"""The ``heads/step=S`` cell: which heads a checkpoint's conditions ablate.

The selection reads the ``scores/step=S`` cell of its own checkpoint (the rows ``ablate scan`` writes
into ``head_scores.parquet``), so the heads ablated are the heads the heatmaps show, under the
spec's ``[scores]`` settings (the one source of truth for both).

Rows (one per head set): ``step, tokens_seen, role (target / induction / random), control_index
(-1, or the index of a random set), head_set, k, rule, details`` (JSON of the selection's parameters
and the scores behind it, so the choice is reported, not hidden).

Stages:

* :func:`target_sets` -- SIHs by the spec's rule (``topk``: :func:`ablate.scores.selection.top_k_heads`
  on the scores rows; ``fdr``: :func:`ablate.scores.selection.select_sihs`, RI significantly above its
  nulls, Benjamini-Hochberg), at this checkpoint or the final one (``heads.at``); or every explicit
  head set (each one tested, each with its own matched random sets);
* :func:`induction_set` -- the top-k heads by prefix-matching score among heads with a positive
  copying score (from the same scores rows);
* :func:`random_sets` -- R sets matched to each target in size and layer histogram, disjoint from it,
  seeded; the random sets of target ``i`` have control indices ``i*R .. i*R + R-1``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ablate.model.heads import HeadSet
from ablate.scores.controls import matched_random_sets

COLUMNS = ["step", "tokens_seen", "role", "control_index", "head_set", "k", "rule", "details"]


@dataclass(frozen=True)
class TestedSet:
    """One head set of a checkpoint's condition block (one row of the heads cell)."""

    role: str                 # "target" / "induction" / "random"
    control_index: int        # -1, or the random set's index
    heads: HeadSet
    rule: str = ""
    details: dict = field(default_factory=dict, compare=False)

    @property
    def condition_name(self) -> str:
        return self.role if self.control_index < 0 else f"{self.role}{self.control_index}"


def tested_sets(rows: pd.DataFrame) -> tuple[TestedSet, ...]:
    """The :class:`TestedSet` s of a finished heads cell, in row order."""
    return tuple(TestedSet(r.role, int(r.control_index), HeadSet.parse(r.head_set), r.rule)
                 for r in rows.itertuples())


def step_scores(scores: pd.DataFrame, step: int) -> pd.DataFrame:
    """The rows of one checkpoint in a scores table (``head_scores.parquet`` or a scores cell)."""
    return scores[scores["step"] == step]


# ---- stages ------------------------------------------------------------------------------------

def scored_relations(spec, scores: pd.DataFrame) -> list[str]:
    """The relations a scores table holds for this spec: the syntactic ones of ``[scores] relations``,
    then those of the ``[scores] kg`` sources (every other relation name with RI rows), sorted."""
    have = set(scores.loc[scores["score"] == "relation_index", "relation"]) - {""}
    kg = sorted(have - set(spec.scores.relations)) if spec.scores.kg else []
    return [r for r in spec.scores.relations if r in have] + kg


def _groups(spec, scores: pd.DataFrame, relations: list[str] | None = None) -> list[tuple[str, str]]:
    have = set(zip(scores["relation"], scores["direction"]))
    rels = scored_relations(spec, scores) if relations is None else relations
    return [(r, d) for r in rels for d in spec.scores.directions if (r, d) in have]


def sih_heads(spec, scores: pd.DataFrame, handle=None, relations: list[str] | None = None) -> tuple[HeadSet, str, dict]:
    """SIHs of one checkpoint by ``spec.heads.rule`` from its scores rows.

    * ``topk``: :func:`ablate.scores.selection.top_k_heads` -- the k heads with the largest
      ``max_g [RI_h(g) - RI_h^baseline(g)]`` over the scored (relation, direction) groups, positive
      only, with at least ``heads.min_events`` gated events.
    * ``fdr``: :func:`ablate.scores.selection.select_sihs` (per-triplet Wilcoxon above every null of
      ``scores.nulls``, Benjamini-Hochberg per group, minimum effect), union over groups; if more than
      k heads pass, the k with the largest excess are kept. The per-head tests come from the same
      scores rows (``sih_test_p`` / ``sih_test_effect``, written by the scan), so neither rule
      recomputes the relation index.
    """
    from ablate.scores.selection import select_sihs, top_k_heads

    h = spec.heads
    groups = _groups(spec, scores, relations)
    top = top_k_heads(scores, h.k, groups=groups, null="baseline", min_events=h.min_events)
    details = {"groups": [f"{r}/{d}" for r, d in groups], "min_events": h.min_events,
               "tau": spec.scores.tau, "tau_percentile": spec.scores.tau_percentile,
               "n_sentences": spec.scores.n_sentences}
    excess = {(int(r.layer), int(r.head)): float(r.excess) for r in top.table.itertuples()}
    if h.rule == "topk":
        heads = top.sets["all"]
        details["rule"] = "top-k by max over groups of RI - fake-tail RI (positive only)"
    else:
        from ablate.scores.selection import select_from_tests, tests_from_scores

        sel = select_from_tests(tests_from_scores(scores, groups), alpha=h.alpha, min_effect=h.min_effect,
                                params={"nulls": list(spec.scores.nulls)})
        passed = sorted(((-excess.get((x.layer, x.head), -np.inf), x.layer, x.head) for x in sel.sets["all"]))
        heads = HeadSet((l, hh) for _, l, hh in passed[: h.k])
        details["rule"] = "null-fdr"
        details["selection"] = sel.report()
    details["excess_of_selected"] = {str(HeadSet([x])): round(excess[(x.layer, x.head)], 4) for x in heads}
    return heads, h.rule, details


def target_sets(spec, scores: pd.DataFrame | None, n_layers: int, n_heads: int, handle=None,
                fixed: tuple[HeadSet, ...] | None = None) -> list[TestedSet]:
    """The tested head sets of a checkpoint (see the module docstring)."""
    h = spec.heads
    if fixed is not None:
        return [TestedSet("target", -1, t, h.rule, {"selected_at": "final checkpoint"}) for t in fixed]
    if h.select == "explicit":
        one = len(h.explicit) == 1
        return [TestedSet("target", -1, HeadSet.parse(e).validate(n_layers, n_heads), "explicit",
                          {"explicit": list(h.explicit)} if one else {"explicit": e, "of": list(h.explicit)})
                for e in h.explicit]
    if not h.by_relation:
        heads, rule, det = sih_heads(spec, scores, handle)
        return [TestedSet("target", -1, heads, rule, det)]
    # one set per relation; relations that select the same heads share one tested set (listed together)
    out: dict[str, TestedSet] = {}
    for rel in scored_relations(spec, scores):
        heads, rule, det = sih_heads(spec, scores, handle, relations=[rel])
        if not len(heads):
            continue
        if str(heads) in out:
            out[str(heads)].details["relations"].append(rel)
        else:
            out[str(heads)] = TestedSet("target", -1, heads, rule, {**det, "relations": [rel]})
    if not out:
        heads, rule, det = sih_heads(spec, scores, handle)
        return [TestedSet("target", -1, heads, rule, {**det, "relations": []})]
    return list(out.values())


def induction_set(scores: pd.DataFrame, k: int) -> TestedSet:
    """Top-k heads by prefix matching among heads whose copying score is positive (when at least k are)."""
    def grid(name):
        g = scores[scores["score"] == name].sort_values(["layer", "head"], kind="stable")
        L, H = g["layer"].nunique(), int(g["head"].max()) + 1
        return sorted(set(g["layer"])), g["value"].to_numpy().reshape(L, H)

    layers, pm = grid("prefix_matching")
    _, cp = grid("copying")
    vals = pm.copy()
    eligible = cp > 0
    if eligible.sum() >= k:
        vals[~eligible] = -np.inf
    H = vals.shape[1]
    order = np.argsort(-vals, axis=None, kind="stable")[:k]
    picked = [(layers[int(i) // H], int(i) % H) for i in order]
    name = {p: str(HeadSet([p])) for p in picked}
    details = {"prefix_matching": {name[p]: round(float(pm.flat[int(i)]), 4) for p, i in zip(picked, order)},
               "copying": {name[p]: round(float(cp.flat[int(i)]), 4) for p, i in zip(picked, order)}}
    return TestedSet("induction", -1, HeadSet(picked), "prefix_matching+copying", details)


def random_sets(targets: list[TestedSet], n_layers: int, n_heads: int, R: int, seed: int, step: int,
                offset: int = 0) -> list[TestedSet]:
    """R matched random sets per non-empty target; target i's sets have control indices
    offset + i*R .. offset + i*R+R-1."""
    out = []
    for i, t in enumerate(targets):
        if len(t.heads) == 0:
            continue
        for r, rs in enumerate(matched_random_sets(t.heads, n_layers, n_heads, R, seed=seed * 1_000_003 + step)):
            out.append(TestedSet("random", offset + i * R + r, rs, "matched_random",
                                 {"matched_to": str(t.heads)} if len(targets) > 1 or offset else {}))
    return out


# ---- the cell ----------------------------------------------------------------------------------

def select_head_sets(ctx) -> pd.DataFrame:
    """Rows of the ``heads/step=S`` cell from a :class:`experiments.cells.CellContext`."""
    spec, a = ctx.spec, ctx.handle.adapter
    h = spec.heads
    targets = target_sets(spec, ctx.scores, a.n_layers, a.n_heads, ctx.handle, fixed=ctx.final_targets)
    for t in targets:
        if len(t.heads) == 0:  # nothing passed the rule: reported, and no random sets can be matched to it
            t.details["note"] = "no head passed the selection rule at this checkpoint"
    sets = list(targets)
    ind = induction_set(ctx.scores, min(h.k, a.n_layers * a.n_heads)) if h.induction else None
    if ind is not None:
        sets.append(ind)
    R = spec.controls.random_sets
    sets += random_sets(targets, a.n_layers, a.n_heads, R, spec.seed, ctx.step)
    # the statistics match random sets to a tested set by its size k: when no target has the induction
    # set's size (a rule passed fewer than k heads), it gets R random sets matched to its own size and layers
    if ind is not None and len(ind.heads) and len(ind.heads) not in {len(t.heads) for t in targets}:
        sets += random_sets([ind], a.n_layers, a.n_heads, R, spec.seed, ctx.step, offset=len(targets) * R)
    rows = [(ctx.step, ctx.tokens_seen, s.role, s.control_index, str(s.heads), len(s.heads), s.rule,
             json.dumps(s.details, default=str) if s.details else "{}") for s in sets]
    return pd.DataFrame(rows, columns=COLUMNS)
