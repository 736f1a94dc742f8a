"""Issue 17 Q1 plumbing on the tiny series: KG relations through the scores cell, one SIH set per
relation, and the relation tables (RI per relation, head overlap, cross-relation drops).

Oracles independent of the code under test: the scores hold a relation for every KG source named
(and WordNet's three when it is installed); each relation's tested set is the top-k recomputed here
from the scores rows by hand (max over directions of RI - baseline, >= min_events); the hypergeometric
p of the overlap table equals the textbook sum; the cross table's raw drop equals clean - ablated of
the PD rows of the results table, averaged by hand.
"""

from __future__ import annotations

import json
from math import comb

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from experiments.cli import main as ablate


def _spec(tmp_path, series, kg='["builtin", "templates"]', extra=()):
    p = tmp_path / "relations.toml"
    p.write_text("\n".join([
        'name = "relations"', "seed = 0", "[series]", f'path = "{series}"', "steps = [20, 30]",
        "[scores]", 'relations = ["subj", "obj"]', f"kg = {kg}", "kg_pairs = 12", "n_sentences = 12", "tau = 0.0",
        "n_random = 4", "[heads]", 'select = "sih"', 'rule = "topk"', "k = 1", "min_events = 1", "induction = false",
        "by_relation = true", "[controls]", "random_sets = 2", "[operators]", 'primary = "mean"', "robustness = []",
        "[icl]", 'tasks = ["rel_subj", "rel_partof", "pd_category_letter"]', "shots = [0, 2]", "items = 3",
        "lr_documents = 1", *extra]) + "\n")
    return p


def _by_hand_top1(g: pd.DataFrame, rel: str, min_events: int = 1):
    ri = g[(g.score == "relation_index") & (g.relation == rel)].set_index(["direction", "layer", "head"])
    base = g[(g.score == "baseline") & (g.relation == rel)].set_index(["direction", "layer", "head"])["value"]
    ex = (ri["value"] - base.reindex(ri.index)).where(ri["n_events"] >= min_events)
    per_head = ex.groupby(level=["layer", "head"]).max().dropna()
    per_head = per_head[per_head > 0]
    if per_head.empty:
        return None
    best = per_head.max()
    return sorted(i for i, v in per_head.items() if v == best)[0]


def test_relations_run_scores_sets_and_tables(tiny_series, tmp_path):
    run = tmp_path / "run"
    cli = CliRunner()
    r = cli.invoke(ablate, ["run", str(_spec(tmp_path, tiny_series)), "--out", str(run), "--no-progress"])
    assert r.exit_code == 0, r.output
    sc = pd.read_parquet(run / "head_scores.parquet")
    rels = set(sc.loc[sc.score == "relation_index", "relation"])
    assert {"subj", "obj", "Hyponym-of", "Part-of", "Category-of"} <= rels, rels

    hs = pd.read_parquet(run / "head_sets.parquet")
    for step, g in hs[hs.role == "target"].groupby("step"):
        got = {rel: row.head_set for row in g.itertuples() for rel in json.loads(row.details)["relations"]}
        for rel in rels:
            want = _by_hand_top1(sc[sc.step == step], rel)
            if want is None:
                assert rel not in got
            else:
                assert got.get(rel) == f"L{want[0]}H{want[1]}", (step, rel, got)
        assert g["head_set"].is_unique  # relations selecting the same head share one set

    r = cli.invoke(ablate, ["stats", str(run), "--n-boot", "20", "--no-mixed-model"])
    assert r.exit_code == 0, r.output
    t = run / "tables"
    ri = pd.read_csv(t / "relations_ri.csv")
    assert set(ri["relation"]) == rels and set(ri["step"]) == {20, 30}
    ov = pd.read_csv(t / "relations_overlap.csv")
    n = len(rels)
    assert len(ov) == 2 * n * (n - 1) // 2
    for row in ov.dropna(subset=["p_hypergeom"]).itertuples():  # P(X >= o), X ~ Hypergeom(N, K, n)
        N, K, m, o = row.n_heads, row.k_a, row.k_b, row.overlap
        want = sum(comb(K, x) * comb(N - K, m - x) for x in range(o, min(K, m) + 1)) / comb(N, m)
        assert abs(row.p_hypergeom - want) < 1e-12
    cross = pd.read_csv(t / "relations_cross.csv")
    assert len(cross) and set(cross["task"]) <= {"rel_subj", "rel_partof", "pd_category_letter"}
    res = pd.read_parquet(run / "results.parquet")
    for one in cross.itertuples():  # the gold log-prob drop, by hand from the results rows
        def lp(cond, hs=""):
            x = res[(res.step == one.step) & (res.condition == cond) & (res.task == one.task) & (res.shots >= 1)]
            x = x[x.head_set == hs] if hs else x
            return x.set_index(["shots", "item"])["gold_logprob"].sort_index()
        clean, abl = lp("clean"), lp("target", one.head_set)
        assert abs((clean.reindex(abl.index) - abl).mean() - one.logprob_drop) < 1e-9
        assert 1 <= one.R <= 2 and one.same_relation == (one.task_relation in one.relations.split(","))
    assert "Which heads serve which relation" in (t / "relations.md").read_text()

    r = cli.invoke(ablate, ["figures", str(run), "--format", "png"])
    assert (run / "figures" / "relations.png").is_file(), r.output


def test_scores_only_relations_run_and_bad_kg(tiny_series, tmp_path):
    spec = _spec(tmp_path, tiny_series, kg='["templates"]')
    text = spec.read_text().split("[heads]")[0]  # scores only: no ablation protocol
    spec.write_text(text)
    run = tmp_path / "scan"
    cli = CliRunner()
    r = cli.invoke(ablate, ["run", str(spec), "--out", str(run), "--no-progress"])
    assert r.exit_code == 0, r.output
    r = cli.invoke(ablate, ["stats", str(run)])
    assert r.exit_code == 0, r.output
    assert (run / "tables" / "relations_ri.csv").is_file() and "Category-of" in (run / "tables" / "relations.md").read_text()

    for kg, needle in (('["wordnett"]', "did you mean 'wordnet'"), ('["tsv:/nope.tsv"]', "/nope.tsv"),
                       ('["wordnet", "builtin"]', "keep one")):
        bad = _spec(tmp_path, tiny_series, kg=kg)
        r = cli.invoke(ablate, ["run", str(bad), "--out", str(tmp_path / "bad"), "--no-progress"])
        if "wordnet" in kg and "not found" in r.output and "WordNet" in r.output:
            continue  # WordNet not installed here: that is its own clear message
        assert r.exit_code != 0 and needle in r.output and "Traceback" not in r.output, r.output
        assert not (tmp_path / "bad").exists()


def test_tsv_source_in_the_scan(tiny_series, tmp_path):
    tsv = tmp_path / "triples.tsv"
    tsv.write_text("head\trelation\ttail\tsentence\n"
                   "dog\tLives-in\tkennel\tIn the old story the dog slept in a kennel every night.\n"
                   "horse\tLives-in\tstable\tIn the old story the horse slept in a stable every night.\n"
                   "cow\tLives-in\tbarn\tIn the old story the cow slept in a barn every night.\n")
    spec = _spec(tmp_path, tiny_series, kg=f'["tsv:{tsv}"]')
    spec.write_text(spec.read_text().split("[heads]")[0])
    run = tmp_path / "scan"
    r = CliRunner().invoke(ablate, ["run", str(spec), "--out", str(run), "--no-progress"])
    assert r.exit_code == 0, r.output
    sc = pd.read_parquet(run / "head_scores.parquet")
    ri = sc[(sc.score == "relation_index") & (sc.relation == "Lives-in")]
    assert len(ri) and np.isfinite(ri["value"]).any()


def test_stats_of_a_run_with_nothing_to_ablate_says_why(tiny_series, tmp_path):
    """No head passes the rule at any checkpoint (min_events too high, no induction set): the ablation
    cells finish empty, and `ablate stats` says why in one message (a plain run) or writes the relation
    tables from the scores alone (a relations run)."""
    cli = CliRunner()
    for kg, by_rel in (("[]", "false"), ('["templates"]', "true")):
        spec = _spec(tmp_path, tiny_series, kg=kg)
        spec.write_text(spec.read_text().replace("min_events = 1", "min_events = 100000")
                        .replace("by_relation = true", f"by_relation = {by_rel}"))
        run = tmp_path / f"run_{by_rel}"
        r = cli.invoke(ablate, ["run", str(spec), "--out", str(run), "--no-progress"])
        assert r.exit_code == 0 and "0 failed" in r.output, r.output
        r = cli.invoke(ablate, ["stats", str(run), "--n-boot", "20", "--no-mixed-model"])
        if by_rel == "false":
            assert r.exit_code != 0 and "no ablated rows" in r.output and "Traceback" not in r.output, r.output
        else:
            assert r.exit_code == 0 and (run / "tables" / "relations_ri.csv").is_file(), r.output


def test_ablate_scan_kg_option_and_its_relation_tables(tiny_series, tmp_path):
    run = tmp_path / "scan"
    cli = CliRunner()
    r = cli.invoke(ablate, ["scan", "--series", str(tiny_series), "--steps", "30", "--out", str(run),
                            "--relations", "subj", "--kg", "builtin,templates", "--kg-pairs", "10", "--tau", "0"])
    assert r.exit_code == 0, r.output
    sc = pd.read_parquet(run / "head_scores.parquet")
    assert {"subj", "Hyponym-of", "Part-of", "Category-of"} <= set(sc.loc[sc.score == "relation_index", "relation"])
    r = cli.invoke(ablate, ["stats", str(run)])
    assert r.exit_code == 0, r.output
    ri = pd.read_csv(run / "tables" / "relations_ri.csv")
    assert set(ri["relation"]) == {"subj", "Hyponym-of", "Part-of", "Category-of"}
    r = cli.invoke(ablate, ["scan", "--series", str(tiny_series), "--out", str(tmp_path / "bad"), "--kg", "wordnett"])
    assert r.exit_code != 0 and "did you mean 'wordnet'" in r.output and "Traceback" not in r.output
