"""Semantic-induction-head (SIH) selection by an explicit, reported rule (docs/science.md §2).

The paper calls heads with "salient" RI semantic induction heads without a cut-off. Two rules:

**"null-fdr"** (:func:`select_sihs`). For each relation group (relation, direction) and head h,
and for each null n in ``nulls`` (``"baseline"``: fake tail = 10th token; ``"shuffled"``: random
tail position), over the triplets k that have events under both the real and the null tail:

* ``d_k = E_j[a_T]_k - E_j[a_null]_k`` (per-triplet paired difference);
* one-sided Wilcoxon signed-rank test of ``d > 0`` (scipy), p_n (1 when fewer than
  ``min_triplets`` pairs or all d = 0);
* effect_n = RI_h(r) - RI_h^null(r) (event-weighted, as the RI itself).

The head's p-value is ``max_n p_n`` (intersection-union: above *every* null). p-values are
Benjamini-Hochberg-adjusted across the heads of the group (statsmodels ``multipletests``,
``fdr_bh``). A head is selected when ``q <= alpha`` and ``min_n effect_n >= min_effect``.

**"top-k"** (:func:`top_k_heads`): the k heads with the largest RI of a group (ties: lower
layer, then lower head).

Both return :class:`~ablate.model.heads.HeadSet` s plus a report (rule, parameters, resulting sets) and
a per-head table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ablate.model.errors import AblateError
from ablate.model.heads import HeadSet
from ablate.scores.relation_index import SCORE_RI, RelationIndexResult

__all__ = ["Selection", "select_sihs", "top_k_heads"]


@dataclass
class Selection:
    """Selected head sets per group ("subj/forward"), the union ("all"), and how they were chosen.

    Attributes:
        rule: ``"null-fdr"`` or ``"top-k"``.
        params: the rule's parameters.
        sets: group key -> HeadSet; ``"all"`` = union over groups.
        table: one row per (group, head) with the statistics behind the decision.
    """

    rule: str
    params: dict
    sets: dict[str, HeadSet]
    table: pd.DataFrame = field(default_factory=pd.DataFrame)

    def report(self) -> dict:
        """JSON-ready summary: rule, parameters, and each set as a string ("L3H5,L4H0")."""
        return dict(rule=self.rule, params=self.params, sets={k: str(v) for k, v in self.sets.items()},
                    sizes={k: len(v) for k, v in self.sets.items()})

    def summary(self) -> str:
        lines = [f"SIH selection rule={self.rule} " + ", ".join(f"{k}={v}" for k, v in self.params.items())]
        lines += [f"  {k}: {len(v)} heads {v}" for k, v in self.sets.items()]
        return "\n".join(lines)


def _key(rel: str, direction: str) -> str:
    return f"{rel}/{direction}"


def select_sihs(result: RelationIndexResult, *, nulls: tuple[str, ...] = ("baseline", "shuffled"),
                alpha: float = 0.05, min_effect: float = 0.05, min_triplets: int = 5,
                groups: list[tuple[str, str]] | None = None) -> Selection:
    """Select SIHs: RI significantly above every null (BH-FDR) by at least ``min_effect``.

    Args:
        result: a :class:`~ablate.scores.relation_index.RelationIndexResult` computed with ``nulls``.
        nulls: nulls to beat (must be in ``result.scores``).
        alpha: FDR level (Benjamini-Hochberg, per group, across heads).
        min_effect: minimum RI - null RI, for every null.
        min_triplets: minimum number of paired triplets for a test (else p = 1).
        groups: (relation, direction) pairs (default: all in the result).

    Raises:
        AblateError: a null was not computed.
    """
    from scipy.stats import wilcoxon
    from statsmodels.stats.multitest import multipletests

    missing = [n for n in nulls if n not in result.sums]
    if missing:
        raise AblateError(f"null(s) {missing} not in the result (has {result.scores}); compute them with "
                          f"relation_index(..., nulls={tuple(nulls)})")
    groups = result.groups() if groups is None else groups
    real_pt = result.per_triplet(SCORE_RI).numpy()  # [K, L, H]
    null_pt = {n: result.per_triplet(n).numpy() for n in nulls}
    rows = []
    sets: dict[str, HeadSet] = {}
    for rel, d in groups:
        m = result._group_mask(rel, d).numpy()
        ri = result.ri(rel, d).numpy()
        n_ev = result.n_events(rel, d).numpy()
        nri = {n: result.ri(rel, d, n).numpy() for n in nulls}
        L, H = ri.shape
        ps, effs, npairs = np.ones((L, H)), np.full((L, H), np.nan), np.zeros((L, H), dtype=int)
        for li in range(L):
            for h in range(H):
                p_max, e_min, n_min = 0.0, np.inf, 10**9
                for n in nulls:
                    a, b = real_pt[m, li, h], null_pt[n][m, li, h]
                    ok = ~np.isnan(a) & ~np.isnan(b)
                    diff = a[ok] - b[ok]
                    n_min = min(n_min, int(ok.sum()))
                    if ok.sum() >= min_triplets and np.any(diff != 0):
                        p = float(wilcoxon(diff, alternative="greater").pvalue)
                    else:
                        p = 1.0
                    p_max = max(p_max, p)
                    e_min = min(e_min, float(ri[li, h] - nri[n][li, h]))
                ps[li, h], effs[li, h], npairs[li, h] = p_max, e_min, n_min
        q = multipletests(ps.ravel(), alpha=alpha, method="fdr_bh")[1].reshape(L, H)
        chosen = []
        for li in range(L):
            for h in range(H):
                eff = effs[li, h]
                sel = bool(q[li, h] <= alpha and np.isfinite(eff) and eff >= min_effect)
                if sel:
                    chosen.append((result.layers[li], h))
                row = dict(group=_key(rel, d), relation=rel, direction=d, layer=result.layers[li], head=h,
                           ri=float(ri[li, h]), n_events=int(n_ev[li, h]), n_pairs=int(npairs[li, h]),
                           p=float(ps[li, h]), q=float(q[li, h]), effect=float(eff), selected=sel)
                for n in nulls:
                    row[f"ri_{n}"] = float(nri[n][li, h])
                rows.append(row)
        sets[_key(rel, d)] = HeadSet(chosen)
    allset = HeadSet()
    for s in sets.values():
        allset = allset | s
    sets["all"] = allset
    params = dict(nulls=list(nulls), alpha=alpha, min_effect=min_effect, min_triplets=min_triplets,
                  test="one-sided Wilcoxon signed-rank on per-triplet E_j[a] differences, max p over nulls",
                  correction="Benjamini-Hochberg per group across heads", tau=result.tau)
    return Selection("null-fdr", params, sets, pd.DataFrame(rows))


def top_k_heads(result: RelationIndexResult, k: int, *, groups: list[tuple[str, str]] | None = None) -> Selection:
    """The ``k`` heads with the highest RI in each group (NaN RI never selected)."""
    if k < 1:
        raise AblateError(f"top_k_heads needs k >= 1, got {k}")
    groups = result.groups() if groups is None else groups
    sets, rows = {}, []
    for rel, d in groups:
        ri = result.ri(rel, d).numpy()
        cand = [(-float(ri[li, h]), result.layers[li], h) for li in range(ri.shape[0]) for h in range(ri.shape[1])
                if np.isfinite(ri[li, h])]
        cand.sort()
        top = cand[:k]
        sets[_key(rel, d)] = HeadSet((l, h) for _, l, h in top)
        rows += [dict(group=_key(rel, d), relation=rel, direction=d, layer=l, head=h, ri=-v, rank=i + 1)
                 for i, (v, l, h) in enumerate(top)]
    allset = HeadSet()
    for s in sets.values():
        allset = allset | s
    sets["all"] = allset
    return Selection("top-k", dict(k=k, tau=result.tau), sets, pd.DataFrame(rows))
