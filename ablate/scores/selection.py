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

**"top-k"** (:func:`top_k_heads`, the one top-k rule; spec ``heads.rule = "topk"``): the k heads with
the largest RI above the fake-tail null, best group, among heads whose excess is positive and rests
on at least ``min_events`` gated events (ties: lower layer, then lower head).

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

__all__ = ["Selection", "select_sihs", "top_k_heads", "null_tests", "select_from_tests", "selection_test_rows",
           "tests_from_scores", "SELECTION_SCORES"]


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


#: Score names of the per-head selection-test rows a scan writes next to the scores
#: (``head_scores.parquet``): the null-FDR rule selects from them without recomputing the RI.
TEST_P, TEST_EFFECT = "sih_test_p", "sih_test_effect"
SELECTION_SCORES = (TEST_P, TEST_EFFECT)


def null_tests(result: RelationIndexResult, *, nulls: tuple[str, ...] = ("baseline", "shuffled"),
               min_triplets: int = 5, groups: list[tuple[str, str]] | None = None) -> pd.DataFrame:
    """Stage 1 of the null-FDR rule: per (group, head) the test of RI above every null.

    Returns one row per (relation, direction, layer, head): ``group, relation, direction, layer,
    head, ri, n_events, n_pairs, p, effect`` and ``ri_<null>`` per null, where ``p = max_n p_n``
    (one-sided Wilcoxon signed-rank of the per-triplet differences, 1 with fewer than
    ``min_triplets`` pairs or all differences 0) and ``effect = min_n (RI - RI^null)``.

    Raises:
        AblateError: a null was not computed.
    """
    from scipy.stats import wilcoxon

    missing = [n for n in nulls if n not in result.sums]
    if missing:
        raise AblateError(f"null(s) {missing} not in the result (has {result.scores}); compute them with "
                          f"relation_index(..., nulls={tuple(nulls)})")
    groups = result.groups() if groups is None else groups
    real_pt = result.per_triplet(SCORE_RI).numpy()  # [K, L, H]
    null_pt = {n: result.per_triplet(n).numpy() for n in nulls}
    rows = []
    for rel, d in groups:
        m = result._group_mask(rel, d).numpy()
        ri = result.ri(rel, d).numpy()
        n_ev = result.n_events(rel, d).numpy()
        nri = {n: result.ri(rel, d, n).numpy() for n in nulls}
        L, H = ri.shape
        for li in range(L):
            for h in range(H):
                p_max, e_min, n_min = 0.0, np.inf, 10**9
                for n in nulls:
                    a, b = real_pt[m, li, h], null_pt[n][m, li, h]
                    ok = ~np.isnan(a) & ~np.isnan(b)
                    diff = a[ok] - b[ok]
                    n_min = min(n_min, int(ok.sum()))
                    p = (float(wilcoxon(diff, alternative="greater").pvalue)
                         if ok.sum() >= min_triplets and np.any(diff != 0) else 1.0)
                    p_max = max(p_max, p)
                    e_min = min(e_min, float(ri[li, h] - nri[n][li, h]))
                row = dict(group=_key(rel, d), relation=rel, direction=d, layer=result.layers[li], head=h,
                           ri=float(ri[li, h]), n_events=int(n_ev[li, h]), n_pairs=int(n_min if nulls else 0),
                           p=float(p_max), effect=float(e_min))
                for n in nulls:
                    row[f"ri_{n}"] = float(nri[n][li, h])
                rows.append(row)
    return pd.DataFrame(rows)


def selection_test_rows(tests: pd.DataFrame) -> pd.DataFrame:
    """:func:`null_tests` as tidy score rows (``score`` = :data:`TEST_P` / :data:`TEST_EFFECT`,
    ``n_events`` = the number of paired triplets) for ``head_scores.parquet``."""
    cols = ["score", "relation", "direction", "layer", "head", "value", "n_events"]
    if tests.empty:
        return pd.DataFrame(columns=cols)
    base = tests[["relation", "direction", "layer", "head", "n_pairs"]].rename(columns={"n_pairs": "n_events"})
    parts = [base.assign(score=name, value=tests[col].to_numpy(float)) for name, col in ((TEST_P, "p"), (TEST_EFFECT, "effect"))]
    return pd.concat(parts, ignore_index=True)[cols]


def tests_from_scores(scores: pd.DataFrame, groups: list[tuple[str, str]] | None = None) -> pd.DataFrame:
    """The :func:`null_tests` table back from a checkpoint's score rows (inverse of :func:`selection_test_rows`).

    Raises:
        AblateError: the rows hold no selection tests (a scan without nulls).
    """
    t = scores[scores["score"].isin(SELECTION_SCORES)]
    if t.empty:
        raise AblateError("the head scores hold no selection tests (rows 'sih_test_p'); the null-FDR rule needs "
                          "a scan with scores.nulls = [\"baseline\", ...]. Re-run the scan with nulls, or use "
                          "heads.rule = \"topk\".")
    key = ["relation", "direction", "layer", "head"]
    w = t.pivot_table(index=key, columns="score", values="value", aggfunc="first").reset_index()
    npairs = t[t["score"] == TEST_P].set_index(key)["n_events"]
    ri = scores[scores["score"] == SCORE_RI].set_index(key)
    w = w.rename(columns={TEST_P: "p", TEST_EFFECT: "effect"})
    idx = pd.MultiIndex.from_frame(w[key])
    w["n_pairs"] = npairs.reindex(idx).to_numpy()
    w["ri"] = ri["value"].reindex(idx).to_numpy()
    w["n_events"] = ri["n_events"].reindex(idx).to_numpy()
    w["group"] = w["relation"].astype(str) + "/" + w["direction"].astype(str)
    if groups is not None:
        w = w[[(r, d) in set(groups) for r, d in zip(w["relation"], w["direction"])]]
    return w.sort_values(["relation", "direction", "layer", "head"], kind="stable").reset_index(drop=True)


def select_from_tests(tests: pd.DataFrame, *, alpha: float = 0.05, min_effect: float = 0.05,
                      params: dict | None = None) -> Selection:
    """Stage 2 of the null-FDR rule: Benjamini-Hochberg per group across heads, then ``q <= alpha``
    and ``effect >= min_effect``; sets per group and their union ``"all"``."""
    from statsmodels.stats.multitest import multipletests

    sets: dict[str, HeadSet] = {}
    parts = []
    for grp, g in tests.groupby("group", sort=False):
        g = g.copy()
        g["q"] = multipletests(g["p"].to_numpy(float), alpha=alpha, method="fdr_bh")[1]
        eff = g["effect"].to_numpy(float)
        g["selected"] = (g["q"].to_numpy() <= alpha) & np.isfinite(eff) & (eff >= min_effect)
        sets[grp] = HeadSet((int(l), int(h)) for l, h in zip(g.loc[g["selected"], "layer"], g.loc[g["selected"], "head"]))
        parts.append(g)
    allset = HeadSet()
    for s_ in sets.values():
        allset = allset | s_
    sets["all"] = allset
    p = dict(params or {}, alpha=alpha, min_effect=min_effect)
    return Selection("null-fdr", p, sets, pd.concat(parts, ignore_index=True) if parts else pd.DataFrame())


def select_sihs(result: RelationIndexResult, *, nulls: tuple[str, ...] = ("baseline", "shuffled"),
                alpha: float = 0.05, min_effect: float = 0.05, min_triplets: int = 5,
                groups: list[tuple[str, str]] | None = None) -> Selection:
    """Select SIHs: RI significantly above every null (BH-FDR) by at least ``min_effect``.

    :func:`null_tests` then :func:`select_from_tests`.

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
    tests = null_tests(result, nulls=nulls, min_triplets=min_triplets, groups=groups)
    params = dict(nulls=list(nulls), min_triplets=min_triplets,
                  test="one-sided Wilcoxon signed-rank on per-triplet E_j[a] differences, max p over nulls",
                  correction="Benjamini-Hochberg per group across heads", tau=result.tau)
    return select_from_tests(tests, alpha=alpha, min_effect=min_effect, params=params)


def top_k_heads(scores: "RelationIndexResult | pd.DataFrame", k: int, *, groups: list[tuple[str, str]] | None = None,
                null: str = "baseline", min_events: int = 0) -> Selection:
    """The one top-k rule: the ``k`` heads with the largest ``max_g [RI_h(g) - RI_h^null(g)]``.

    ``g`` runs over the (relation, direction) groups; a group counts for a head only when its RI
    rests on at least ``min_events`` gated events (an RI from a handful of events is noise), and
    only heads whose excess is positive are selected (so fewer than ``k`` may come back). Ties: lower
    layer, then lower head.

    Args:
        scores: a :class:`~ablate.scores.relation_index.RelationIndexResult` computed with ``null``,
            or its tidy :meth:`~ablate.scores.relation_index.RelationIndexResult.frame` (e.g. the rows
            of ``head_scores.parquet`` of one checkpoint: columns score, relation, direction, layer,
            head, value, n_events).
        k: how many heads at most.
        groups: (relation, direction) pairs (default: all in ``scores``).
        null: the null the RI must exceed (``"baseline"``: the fake tail).
        min_events: minimum gated events of the RI in a group.

    Returns:
        :class:`Selection` with ``sets["all"]`` and a table (layer, head, excess, group, ri, ri_null,
        n_events, selected) of every head, sorted by rank.
    """
    if k < 1:
        raise AblateError(f"top_k_heads needs k >= 1, got {k}")
    df = scores.frame() if isinstance(scores, RelationIndexResult) else scores
    tau = scores.tau if isinstance(scores, RelationIndexResult) else None
    if null not in set(df["score"]):
        raise AblateError(f"null {null!r} not in the scores (has {sorted(set(df['score']))}); compute it "
                          f"(relation_index(..., nulls=({null!r},)) or scores.nulls = [{null!r}])")
    ri = df[df["score"] == SCORE_RI]
    if groups is None:
        groups = list(dict.fromkeys(zip(ri["relation"], ri["direction"])))
    layers = sorted(set(ri["layer"]))
    H = int(ri["head"].max()) + 1 if len(ri) else 0
    excess = np.full((len(layers), H), -np.inf)
    best = np.full((len(layers), H), "", dtype=object)
    li_of = {l: i for i, l in enumerate(layers)}

    def grid(frame: pd.DataFrame, col: str) -> np.ndarray:
        out = np.full((len(layers), H), np.nan)
        out[[li_of[l] for l in frame["layer"]], frame["head"].to_numpy()] = frame[col].to_numpy()
        return out

    for rel, d in groups:
        g = ri[(ri["relation"] == rel) & (ri["direction"] == d)]
        n = df[(df["score"] == null) & (df["relation"] == rel) & (df["direction"] == d)]
        if g.empty:
            continue
        diff = grid(g, "value") - grid(n, "value")
        diff = np.where(grid(g, "n_events") >= min_events, diff, np.nan)
        cand = np.nan_to_num(diff, nan=-np.inf)
        best = np.where(cand > excess, _key(rel, d), best)
        excess = np.fmax(excess, cand)
    order = np.argsort(-excess, axis=None, kind="stable")
    chosen = [divmod(int(i), H) for i in order[:k] if excess.flat[int(i)] > 0]
    heads = HeadSet((layers[li], h) for li, h in chosen)
    rows = [dict(rank=r + 1, layer=layers[divmod(int(i), H)[0]], head=divmod(int(i), H)[1],
                 excess=float(excess.flat[int(i)]), group=best.flat[int(i)],
                 selected=(layers[divmod(int(i), H)[0]], divmod(int(i), H)[1]) in heads)
            for r, i in enumerate(order)]
    params = dict(k=k, null=null, min_events=min_events, groups=[_key(r, d) for r, d in groups], tau=tau)
    return Selection("top-k", params, {"all": heads}, pd.DataFrame(rows))
