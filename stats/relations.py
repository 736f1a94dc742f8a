"""Relations beyond the paper's (Q1 of docs/science.md §9): which heads serve which relation.

Inputs are the runner's tables: the scores rows (``head_scores.parquet``; relations from the
syntactic parse and from the ``[scores] kg`` sources), the heads cell rows (``head_sets.parquet``;
with ``heads.by_relation`` one tested SIH set per relation, ``details.relations``) and the per-unit
rows of the ablation (``results.parquet``). Three tables:

* :func:`relation_ri` -- per (step, relation): the best head's relation index against its fake-tail
  baseline (the one top-k rule, :func:`ablate.scores.selection.top_k_heads`, restricted to the
  relation's two directions, so ``min_events`` applies as in the selection), how many heads exceed
  the baseline, and how many pass the scan's per-head Wilcoxon test against the nulls after
  Benjamini-Hochberg over the relation's heads and directions (``n_sig``; NaN without test rows).
* :func:`head_overlap` -- per (step, relation A, relation B) where some head has enough events for
  both (pairs with none are left out): the top-k SIH sets' overlap with its
  hypergeometric p (two random k-sets of N heads: ``P(X >= overlap)``), and the Spearman correlation
  of the two relations' per-head excess over all heads with a permutation p
  (:func:`scipy.stats.permutation_test`, pairings, one-sided "greater"). :func:`multi_relation_heads`
  lists every head in the top-k of two or more relations.
* :func:`cross_relation_drops` -- per (step, operator, tested set, task): the ablation drop of one
  relation's SIH set on a task built from a relation (``TASK_RELATION``), the mean drop of the
  random sets matched to that set, the specific drop and its empirical p against them; the row says
  whether the task's relation is one the set was selected for (``same_relation``). The drop tested
  is that of the gold label's log-prob at the query (the quantity path patching decomposes,
  continuous, defined where PD accuracy sits at its floor); the PD accuracy drop is shown beside it.

All three are exploratory (not corrected across relations, heads or tasks), as the tables say.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .contrasts import empirical_p

__all__ = ["is_relations_spec", "write_relations_tables", "TASK_RELATION", "relation_source", "relation_ri", "head_overlap", "multi_relation_heads",
           "cross_relation_drops", "relations_of_sets", "RelationsResult", "analyze_relations"]

#: the relation each ICL task is built from (docs/science.md §5): the relation-justification tasks
#: name theirs; the classification and pattern-discovery tasks are built from category membership
#: (the ``templates`` source's Category-of).
TASK_RELATION = {"rel_subj": "subj", "rel_obj": "obj", "rel_mod": "mod", "rel_partof": "Part-of"}
_SYNTAX = ("subj", "obj", "mod", "nsubj", "dobj", "amod", "poss", "comp", "conj", "prep", "pobj")
_WORDNET = ("Hyponym-of", "Part-of", "Antonym-of")


RI_COLUMNS = ["step", "tokens_seen", "relation", "source", "n_heads_scored", "max_events", "best_head", "best_group",
              "ri", "baseline", "excess", "n_above", "mean_excess", "n_sig", "top_k"]
OVERLAP_COLUMNS = ["step", "relation_a", "relation_b", "n_heads", "k_a", "k_b", "overlap", "expected", "shared",
                   "p_hypergeom", "n_both", "spearman", "p_perm"]


def task_relation(task: str) -> str:
    """The relation a task is built from (``Category-of`` for classification and ``pd_*`` tasks)."""
    return TASK_RELATION.get(task, "Category-of")


def relation_source(relation: str) -> str:
    """``syntax``, ``wordnet/builtin``, ``templates`` or ``tsv`` (another relation name)."""
    if relation in _SYNTAX:
        return "syntax"
    if relation in _WORDNET:
        return "wordnet/builtin"
    return "templates" if relation == "Category-of" else "tsv"


def _relations(scores: pd.DataFrame) -> list[str]:
    ri = scores[scores["score"] == "relation_index"]
    return [r for r in dict.fromkeys(ri["relation"]) if r]


def _excess(step_scores: pd.DataFrame, relation: str, k: int, min_events: int) -> pd.DataFrame:
    """The top-k rule's per-head table for one relation (both directions): layer, head, excess, ..."""
    from ablate.scores.selection import top_k_heads

    groups = list(dict.fromkeys((r, d) for r, d in zip(step_scores["relation"], step_scores["direction"])
                                if r == relation))
    return top_k_heads(step_scores, k, groups=groups, null="baseline", min_events=min_events).table


def excess_tables(scores: pd.DataFrame, *, k: int = 4, min_events: int = 10) -> dict[int, dict[str, pd.DataFrame]]:
    """step -> relation -> the top-k rule's per-head table (:func:`_excess`), computed once for all
    three tables."""
    return {int(step): {rel: _excess(g, rel, k, min_events) for rel in _relations(g)}
            for step, g in scores.groupby("step", sort=True)}


def relation_ri(scores: pd.DataFrame, *, k: int = 4, min_events: int = 10, alpha: float = 0.05,
                tables: dict | None = None) -> pd.DataFrame:
    """Per (step, relation): the best head's RI vs its fake-tail baseline and counts (module docstring)."""
    from statsmodels.stats.multitest import multipletests

    tables = excess_tables(scores, k=k, min_events=min_events) if tables is None else tables
    rows = []
    for step, g in scores.groupby("step", sort=True):
        for rel, t in tables[int(step)].items():
            ok = t[np.isfinite(t["excess"])]
            best = ok.iloc[0] if len(ok) else None
            tp = g[(g["score"] == "sih_test_p") & (g["relation"] == rel)]["value"].dropna()
            n_sig = (int(multipletests(tp.to_numpy(), alpha=alpha, method="fdr_bh")[0].sum()) if len(tp) else np.nan)
            ev = g[(g["score"] == "relation_index") & (g["relation"] == rel)]

            def value(score):  # the best head's RI or baseline in its best group
                d = best["group"].split("/")[-1]
                v = g[(g["score"] == score) & (g["relation"] == rel) & (g["direction"] == d)
                      & (g["layer"] == best["layer"]) & (g["head"] == best["head"])]["value"]
                return float(v.iloc[0]) if len(v) else np.nan
            rows.append({
                "step": int(step), "tokens_seen": g["tokens_seen"].iloc[0] if "tokens_seen" in g else np.nan,
                "relation": rel, "source": relation_source(rel),
                "n_heads_scored": int(len(ok)), "max_events": int(ev["n_events"].max()) if len(ev) else 0,
                "best_head": f"L{int(best['layer'])}H{int(best['head'])}" if best is not None else "",
                "best_group": best["group"] if best is not None else "",
                "ri": value("relation_index") if best is not None else np.nan,
                "baseline": value("baseline") if best is not None else np.nan,
                "excess": float(best["excess"]) if best is not None else np.nan,
                "n_above": int((ok["excess"] > 0).sum()), "mean_excess": float(ok["excess"].mean()) if len(ok) else np.nan,
                "n_sig": n_sig, "top_k": ",".join(f"L{int(r.layer)}H{int(r.head)}" for r in t[t["selected"]].itertuples()),
            })
    return pd.DataFrame(rows, columns=RI_COLUMNS)


def _spearman_perm(x: np.ndarray, y: np.ndarray, n_perm: int, seed: int) -> tuple[float, float]:
    from scipy import stats

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan, np.nan
    res = stats.permutation_test((x, y), lambda a, b: stats.spearmanr(a, b).statistic, vectorized=False,
                                 permutation_type="pairings", alternative="greater", n_resamples=n_perm,
                                 random_state=np.random.default_rng(seed))
    return float(res.statistic), float(res.pvalue)


def head_overlap(scores: pd.DataFrame, *, k: int = 4, min_events: int = 10, n_perm: int = 999,
                 seed: int = 0, tables: dict | None = None) -> pd.DataFrame:
    """Per (step, relation pair): top-k overlap with hypergeometric p; excess Spearman with permutation p."""
    from scipy.stats import hypergeom

    tables = excess_tables(scores, k=k, min_events=min_events) if tables is None else tables
    rows = []
    for step, per_rel in tables.items():
        rels = list(per_rel)
        tabs = {r: t.set_index(["layer", "head"]) for r, t in per_rel.items()}
        n = len(next(iter(tabs.values()))) if tabs else 0
        for i, a in enumerate(rels):
            for b in rels[i + 1:]:
                A = set(tabs[a].index[tabs[a]["selected"]])
                B = set(tabs[b].index[tabs[b]["selected"]])
                o = len(A & B)
                p_h = float(hypergeom.sf(o - 1, n, len(A), len(B))) if A and B else np.nan
                j = tabs[a].join(tabs[b], lsuffix="_a", rsuffix="_b", how="inner")
                j = j[np.isfinite(j["excess_a"]) & np.isfinite(j["excess_b"])]
                if not len(j) and not (A or B):
                    continue  # no head of this checkpoint has an RI with enough events for either relation
                rho, p_perm = _spearman_perm(j["excess_a"].to_numpy(), j["excess_b"].to_numpy(), n_perm,
                                             seed + int(step))
                rows.append({"step": int(step), "relation_a": a, "relation_b": b, "n_heads": n, "k_a": len(A),
                             "k_b": len(B), "overlap": o,
                             "expected": len(A) * len(B) / n if n else np.nan,
                             "shared": ",".join(f"L{l}H{h}" for l, h in sorted(A & B)), "p_hypergeom": p_h,
                             "n_both": len(j), "spearman": rho, "p_perm": p_perm})
    return pd.DataFrame(rows, columns=OVERLAP_COLUMNS)


def multi_relation_heads(scores: pd.DataFrame, *, k: int = 4, min_events: int = 10,
                         tables: dict | None = None) -> pd.DataFrame:
    """Heads in the top-k of two or more relations: step, head, n_relations, relations, excess per relation."""
    tables = excess_tables(scores, k=k, min_events=min_events) if tables is None else tables
    rows = []
    for step, per_rel in tables.items():
        serve: dict[tuple[int, int], dict[str, float]] = {}
        for rel, t in per_rel.items():
            for r in t[t["selected"]].itertuples():
                serve.setdefault((int(r.layer), int(r.head)), {})[rel] = round(float(r.excess), 4)
        for (l, h), d in sorted(serve.items()):
            if len(d) >= 2:
                rows.append({"step": int(step), "head": f"L{l}H{h}", "n_relations": len(d),
                             "relations": ",".join(d), "excess": json.dumps(d)})
    return pd.DataFrame(rows, columns=["step", "head", "n_relations", "relations", "excess"])


def relations_of_sets(head_sets: pd.DataFrame) -> dict[tuple[int, str], list[str]]:
    """(step, tested target head set) -> the relations it was selected for (``details.relations``).

    With ``heads.at = "final"`` the sets of earlier checkpoints are the final checkpoint's, whose rows
    name the relations: a target row without them takes those of the same head set at another step."""
    out: dict[tuple[int, str], list[str]] = {}
    by_set: dict[str, list[str]] = {}
    targets = head_sets[head_sets["role"] == "target"]
    for r in targets.itertuples():
        rels = json.loads(r.details or "{}").get("relations")
        if rels:
            out[(int(r.step), r.head_set)] = list(rels)
            by_set.setdefault(r.head_set, list(rels))
    for r in targets.itertuples():
        if (int(r.step), r.head_set) not in out and r.head_set in by_set:
            out[(int(r.step), r.head_set)] = by_set[r.head_set]
    return out


def cross_relation_drops(results: pd.DataFrame, head_sets: pd.DataFrame, *, min_shots: int = 1) -> pd.DataFrame:
    """Per (step, operator, target set, task): drop vs its matched random sets (module docstring).

    The tested quantity is the drop of the gold label's log-prob at the query (clean - ablated, per
    item, then the mean over the task's items with >= ``min_shots`` demonstrations): continuous, and
    defined where PD accuracy is at floor. ``pd_drop`` (accuracy) is shown beside it."""
    rels = relations_of_sets(head_sets)
    need = {"step", "condition", "operator", "control_index", "head_set", "task", "shots", "item", "gold_logprob", "pd"}
    if not rels or results is None or results.empty or not need <= set(results.columns):
        return pd.DataFrame()
    x = results[(results["task"] != "lr_docs") & (results["shots"] >= min_shots)]
    keys = ["step", "task", "shots", "item"]
    clean = x[x["condition"] == "clean"][keys + ["gold_logprob", "pd"]].drop_duplicates(keys)
    abl = x[x["condition"].isin(["target", "random"])].merge(clean, on=keys, suffixes=("", "_clean"))
    abl = abl.assign(lp_drop=abl["gold_logprob_clean"] - abl["gold_logprob"], pd_drop=abl["pd_clean"] - abl["pd"])
    units = (abl.groupby(["step", "operator", "condition", "control_index", "head_set", "task"], as_index=False)
             .agg(tokens_seen=("tokens_seen", "first"), lp_drop=("lp_drop", "mean"), pd_drop=("pd_drop", "mean"),
                  n_items=("lp_drop", "size")))
    units["k"] = units["head_set"].map(lambda h: len([x for x in str(h).split(",") if x]))
    matched: dict[tuple[int, int], str] = {}
    for r in head_sets[head_sets["role"] == "random"].itertuples():
        to = json.loads(r.details or "{}").get("matched_to")
        if to:
            matched[(int(r.step), int(r.control_index))] = to
    rows = []
    for (step, op), g in units.groupby(["step", "operator"], sort=True):
        tg = g[(g["condition"] == "target") & g["head_set"].map(lambda h: (int(step), h) in rels).astype(bool)]
        rnd = g[g["condition"] == "random"]
        for (hs, task), t in tg.groupby(["head_set", "task"], sort=True):
            r = rnd[(rnd["task"] == task) & (rnd["k"] == int(t["k"].iloc[0]))]
            to = [matched.get((int(step), int(c))) for c in r["control_index"]]
            own = r[np.array([m == hs for m in to], dtype=bool)]
            r = own if len(own) else r[np.array([m is None for m in to], dtype=bool)]
            obs = float(t["lp_drop"].iloc[0])
            null = r["lp_drop"].to_numpy(float)
            null = null[np.isfinite(null)]
            trel, sel = task_relation(task), rels[(int(step), hs)]
            rows.append({"step": int(step), "tokens_seen": t["tokens_seen"].iloc[0], "operator": op, "head_set": hs,
                         "relations": ",".join(sel), "task": task, "task_relation": trel,
                         "same_relation": trel in sel, "n_items": int(t["n_items"].iloc[0]),
                         "logprob_drop": obs, "random_logprob_drop": float(null.mean()) if len(null) else np.nan,
                         "specific": obs - float(null.mean()) if len(null) else np.nan, "R": int(len(null)),
                         "p_random": empirical_p(obs, null) if len(null) and np.isfinite(obs) else np.nan,
                         "pd_drop": float(t["pd_drop"].iloc[0])})
    return pd.DataFrame(rows)


@dataclass
class RelationsResult:
    """The three relation tables of one run (module docstring)."""

    ri: pd.DataFrame
    overlap: pd.DataFrame
    multi: pd.DataFrame
    cross: pd.DataFrame = field(default_factory=pd.DataFrame)

    def markdown(self) -> str:
        from .tables import to_markdown

        def fmt(df, cols):
            if df.empty:
                return "(none)\n"
            return to_markdown(df[cols].round(4)) + "\n"

        last = self.ri["step"].max() if len(self.ri) else None
        parts = ["# Which heads serve which relation (exploratory; not corrected across relations, heads or tasks)\n",
                 "## Relation index per relation: best head vs its fake-tail baseline\n",
                 "RI and baseline of the head with the largest excess (RI - baseline, over the relation's two "
                 "directions, >= min_events gated events); n_above: heads with positive excess; n_sig: heads x "
                 "directions whose per-triplet Wilcoxon test against the nulls passes BH at .05.\n",
                 fmt(self.ri, ["step", "relation", "source", "best_head", "best_group", "ri", "baseline", "excess",
                               "n_above", "n_heads_scored", "n_sig", "top_k"]),
                 "## Heads shared between relations\n",
                 "Overlap of the top-k sets with its hypergeometric p (two random k-sets); Spearman of the "
                 "per-head excess over all heads with a permutation p (pairings, one-sided).\n",
                 fmt(self.overlap, ["step", "relation_a", "relation_b", "k_a", "k_b", "overlap", "expected", "shared",
                                    "p_hypergeom", "spearman", "p_perm"]),
                 "Heads in the top-k of two or more relations:\n",
                 fmt(self.multi, ["step", "head", "n_relations", "relations"])]
        if len(self.cross):
            parts += ["## Does ablating one relation's SIHs hurt PD on tasks built from another?\n",
                      "logprob_drop: clean - ablated log-prob of the gold label at the query (mean over the task's "
                      "items with >= 1 demonstration); specific: minus the mean over the R random sets matched to "
                      "the set; p_random: (1 + #random >= observed)/(R + 1); pd_drop: the same for PD accuracy. "
                      "same_relation: the task is built from a relation the set was selected for.\n",
                      fmt(self.cross, ["step", "operator", "head_set", "relations", "task", "task_relation",
                                       "same_relation", "logprob_drop", "random_logprob_drop", "specific", "R",
                                       "p_random", "pd_drop"])]
        if last is not None:
            parts.append(f"\n(final scored checkpoint: step {last})\n")
        return "\n".join(parts)

    def write(self, tables_dir: str | Path) -> list[Path]:
        d = Path(tables_dir)
        d.mkdir(parents=True, exist_ok=True)
        out = []
        for name, df in (("relations_ri", self.ri), ("relations_overlap", self.overlap),
                         ("relations_multi", self.multi), ("relations_cross", self.cross)):
            if len(df) or name != "relations_cross":
                df.to_csv(d / f"{name}.csv", index=False)
                out.append(d / f"{name}.csv")
        (d / "relations.md").write_text(self.markdown())
        return out + [d / "relations.md"]


def analyze_relations(scores: pd.DataFrame, head_sets: pd.DataFrame | None = None,
                      results: pd.DataFrame | None = None,
                      *, k: int = 4, min_events: int = 10, n_perm: int = 999, seed: int = 0) -> RelationsResult:
    """The three relation tables (module docstring) from a run's tables."""
    tables = excess_tables(scores, k=k, min_events=min_events)
    cross = (cross_relation_drops(results, head_sets) if head_sets is not None and results is not None
             else pd.DataFrame())
    return RelationsResult(relation_ri(scores, tables=tables),
                           head_overlap(scores, n_perm=n_perm, seed=seed, tables=tables),
                           multi_relation_heads(scores, tables=tables), cross)


def is_relations_spec(spec: dict) -> bool:
    """Whether a run's spec (its manifest's ``spec``) scores KG relations or selects SIHs per relation."""
    return bool((spec.get("scores") or {}).get("kg")) or bool((spec.get("heads") or {}).get("by_relation"))


def write_relations_tables(run_dir: str | Path, spec: dict, *, n_perm: int = 999,
                           seed: int = 0) -> RelationsResult | None:
    """Read RUN/head_scores.parquet (and head_sets, results), write RUN/tables/relations*; None without scores.

    ``spec`` is the run's spec (its manifest's ``spec``); ``k`` and ``min_events`` are its ``[heads]``
    values (the selection's own settings)."""
    run = Path(run_dir)
    if not (run / "head_scores.parquet").exists():
        return None
    h = spec.get("heads") or {}
    hs = pd.read_parquet(run / "head_sets.parquet") if (run / "head_sets.parquet").exists() else None
    results = pd.read_parquet(run / "results.parquet") if (run / "results.parquet").exists() else None
    res = analyze_relations(pd.read_parquet(run / "head_scores.parquet"), hs, results, k=int(h.get("k", 4)),
                            min_events=int(h.get("min_events", 10)), n_perm=n_perm, seed=seed)
    res.write(run / "tables")
    return res
