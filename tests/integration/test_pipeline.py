"""One pipeline (issue 13): `ablate scan`, `ablate icl` and `ablate run` into one folder share its cells.

* each checkpoint's scores are computed once, and each command loads each checkpoint at most once
  (counted by wrapping the library functions the runner calls);
* the heads `ablate run` ablates are the top heads of the folder's own head_scores.parquet under the
  spec's rule (recomputed here with plain pandas, an oracle independent of ablate.scores.selection);
* every explicit head set is tested, each with its own matched random sets;
* the clean condition is run once per (step, task), shared by every operator.
"""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest
from click.testing import CliRunner

from ablate.model.heads import HeadSet
from experiments.cli import main as ablate
from experiments.runner import run_spec
from experiments.spec import spec_from_dict

TASKS = ["binary_fruit_month", "pd_category_letter"]
SCORES = {"n_sentences": 20, "tau": 0.0}  # = `ablate scan --n-sentences 20 --tau 0` (argmax gate: events on tiny heads)


def _run_spec_toml(tmp_path, series, rule="topk", **heads) -> str:
    lines = ['name = "pipeline"', "seed = 0", "[series]", f'path = "{series}"', 'steps = [0, 10, 30]',
             "[scores]", *(f"{k} = {json.dumps(v)}" for k, v in SCORES.items()),
             "[heads]", 'select = "sih"', f'rule = "{rule}"', "k = 2", "min_events = 1", "induction = true",
             *(f"{k} = {json.dumps(v)}" for k, v in heads.items()),
             "[controls]", "random_sets = 2", "[operators]", 'primary = "mean"', 'robustness = ["zero"]',
             "[icl]", f"tasks = {json.dumps(TASKS)}", "shots = [0, 2]", "items = 2", "lr_documents = 2"]
    p = tmp_path / f"spec_{rule}.toml"
    p.write_text("\n".join(lines) + "\n")
    return str(p)


@pytest.fixture
def counters(monkeypatch, tiny_series):
    """Per-step counts of model loads (whole model or a checkpoint's tensors) and relation-index runs."""
    import ablate.model.handle
    import ablate.scores.scan
    import sys

    import checkpoints.sweep  # noqa: F401  (checkpoints.sweep the name is a function; the module is in sys.modules)
    from checkpoints.series import CheckpointSeries

    s = CheckpointSeries.from_local(tiny_series)
    step_of = {str(s.local_path(cp)): cp.step for cp in s}
    loads, scores = Counter(), Counter()
    real_load, real_read, real_ri = (ablate.model.handle.load_model, sys.modules["checkpoints.sweep"].read_state_dict,
                                     ablate.scores.scan.relation_index_of)

    def load_model(locator, *a, **k):
        loads[step_of[str(locator)]] += 1
        return real_load(locator, *a, **k)

    def read_state_dict(folder, step=None):
        loads[step] += 1
        return real_read(folder, step)

    def relation_index_of(handle, *a, **k):
        scores[step_of[str(handle.locator)]] += 1
        return real_ri(handle, *a, **k)

    monkeypatch.setattr(ablate.model.handle, "load_model", load_model)
    monkeypatch.setattr(sys.modules["checkpoints.sweep"], "read_state_dict", read_state_dict)
    monkeypatch.setattr(ablate.scores.scan, "relation_index_of", relation_index_of)
    return loads, scores


def _top_heads_oracle(scores: pd.DataFrame, step: int, k: int, min_events: int) -> set[tuple[int, int]]:
    """max over (relation, direction) of RI - fake-tail RI, where the RI has >= min_events events; top k > 0."""
    s = scores[scores["step"] == step]
    ri = s[s["score"] == "relation_index"].set_index(["relation", "direction", "layer", "head"])
    base = s[s["score"] == "baseline"].set_index(["relation", "direction", "layer", "head"])["value"]
    ex = (ri["value"] - base.reindex(ri.index)).where(ri["n_events"] >= min_events)
    best = ex.groupby(level=["layer", "head"]).max().dropna()
    best = best[best > 0].reset_index().sort_values(["value", "layer", "head"], ascending=[False, True, True])
    return set(zip(best["layer"].head(k), best["head"].head(k)))


def _fdr_oracle(scores: pd.DataFrame, step: int, k: int, alpha: float, min_effect: float) -> set[tuple[int, int]]:
    """BH by hand per (relation, direction) over the stored per-head p; selected when q <= alpha and the
    stored effect >= min_effect; union over groups; the k with the largest top-k excess."""
    import numpy as np

    s = scores[scores["step"] == step]
    key = ["relation", "direction", "layer", "head"]
    p = s[s["score"] == "sih_test_p"].set_index(key)["value"]
    e = s[s["score"] == "sih_test_effect"].set_index(key)["value"].reindex(p.index)
    chosen = set()
    for _, g in p.groupby(level=["relation", "direction"]):
        v = g.to_numpy(float)
        m = len(v)
        order = np.argsort(v)
        q = np.empty(m)
        q[order] = np.minimum.accumulate((v[order] * m / np.arange(1, m + 1))[::-1])[::-1]
        for (rel, d, l, h), qq in zip(g.index, np.minimum(q, 1)):
            if qq <= alpha and e[(rel, d, l, h)] >= min_effect:
                chosen.add((l, h))
    ri = s[s["score"] == "relation_index"].set_index(key)
    base = s[s["score"] == "baseline"].set_index(key)["value"]
    ex = (ri["value"] - base.reindex(ri.index)).where(ri["n_events"] >= 1).groupby(level=["layer", "head"]).max()
    ranked = sorted(chosen, key=lambda x: (-np.nan_to_num(ex.get(x, -np.inf), nan=-np.inf), x))
    return set(ranked[:k])


def test_scan_icl_run_into_one_folder_score_each_checkpoint_once(tiny_series, tmp_path, counters):
    loads, scores = counters
    out = tmp_path / "study"
    cli = CliRunner()
    steps = "0,10,30"
    r = cli.invoke(ablate, ["scan", "--series", str(tiny_series), "--steps", steps, "--out", str(out),
                            "--n-sentences", "20", "--tau", "0"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert dict(scores) == {0: 1, 10: 1, 30: 1}
    assert max(loads.values()) == 1 and set(loads) == {0, 10, 30}
    loads.clear()
    r = cli.invoke(ablate, ["icl", "--series", str(tiny_series), "--steps", steps, "--out", str(out),
                            "--tasks", TASKS[0], "--shots", "0,2", "--n-items", "2", "--no-progress"],
                   catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert max(loads.values()) == 1 and set(loads) == {0, 10, 30}
    loads.clear()
    r = cli.invoke(ablate, ["run", _run_spec_toml(tmp_path, tiny_series), "--out", str(out), "--no-progress"],
                   catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert max(loads.values()) == 1 and set(loads) == {0, 10, 30}
    assert dict(scores) == {0: 1, 10: 1, 30: 1}, "the run recomputed scores the scan had written"
    # a second run of every command: nothing is loaded, nothing recomputed
    loads.clear()
    r = cli.invoke(ablate, ["run", _run_spec_toml(tmp_path, tiny_series), "--out", str(out), "--no-progress"])
    assert r.exit_code == 0 and not loads and dict(scores) == {0: 1, 10: 1, 30: 1}
    assert "0 run" in r.output

    # the folder holds every command's tables
    hs = pd.read_parquet(out / "head_scores.parquet")
    assert sorted(hs["step"].unique()) == [0, 10, 30]
    assert sorted(pd.read_parquet(out / "icl_items.parquet")["step"].unique()) == [0, 10, 30]
    sets = pd.read_parquet(out / "head_sets.parquet")
    # the selected heads are the top heads of the folder's own head_scores under the spec's rule
    n_selected = 0
    for step in (0, 10, 30):
        t = sets[(sets["step"] == step) & (sets["role"] == "target")]
        assert len(t) == 1
        got = {(h.layer, h.head) for h in HeadSet.parse(t["head_set"].iloc[0])}
        assert got == _top_heads_oracle(hs, step, k=2, min_events=1), step
        n_selected += len(got)
    assert n_selected > 0, "no head was selected anywhere: the comparison above would be vacuous"

    # a scan with other settings into the folder is refused, naming the setting
    r = cli.invoke(ablate, ["scan", "--series", str(tiny_series), "--steps", steps, "--out", str(out),
                            "--n-sentences", "21", "--tau", "0"])
    assert r.exit_code != 0 and "scores.n_sentences" in r.output


def test_fdr_rule_selects_from_the_stored_tests_without_recomputing(tiny_series, tmp_path, counters):
    """heads.rule = "fdr": the heads cell selects from the scores cell's stored per-head tests; the
    relation index runs once per checkpoint (the scores cell), never again for the selection."""
    _, scores = counters
    out = tmp_path / "fdr"
    r = CliRunner().invoke(ablate, ["run", _run_spec_toml(tmp_path, tiny_series, rule="fdr", alpha=0.9,
                                                                   min_effect=0.0), "--out", str(out),
                                    "--no-progress"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert dict(scores) == {0: 1, 10: 1, 30: 1}, "the fdr rule recomputed the relation index"
    hs = pd.read_parquet(out / "head_scores.parquet")
    assert len(hs[hs["score"] == "sih_test_p"]) == len(hs[hs["score"] == "relation_index"]) > 0
    sets = pd.read_parquet(out / "head_sets.parquet")
    n_sel = 0
    for step in (0, 10, 30):
        t = sets[(sets["step"] == step) & (sets["role"] == "target")]
        assert len(t) == 1 and t["rule"].iloc[0] == "fdr"
        got = {(h.layer, h.head) for h in HeadSet.parse(t["head_set"].iloc[0])} if t["head_set"].iloc[0] else set()
        assert got == _fdr_oracle(hs, step, k=2, alpha=0.9, min_effect=0.0), step
        n_sel += len(got)
    assert n_sel > 0, "nothing selected: the comparison would be vacuous (loose alpha so tiny heads pass)"


def test_every_explicit_set_is_tested_and_clean_runs_once(tiny_series, tmp_path):
    d = {"name": "explicit", "seed": 1, "series": {"path": str(tiny_series), "steps": [30]},
         "scores": SCORES, "heads": {"select": "explicit", "explicit": ["L1H0", "L0H1,L1H1"], "induction": False},
         "controls": {"random_sets": 2}, "operators": {"primary": "mean", "robustness": ["zero"]},
         "icl": {"tasks": TASKS, "shots": [0, 2], "items": 2, "lr_documents": 2}}
    s = run_spec(spec_from_dict(d, "t.toml"), tmp_path / "run", progress=False)
    assert s.cells_failed == 0, s.failed
    sets = pd.read_parquet(tmp_path / "run" / "head_sets.parquet")
    assert list(sets.loc[sets.role == "target", "head_set"]) == ["L1H0", "L0H1,L1H1"]
    rnd = sets[sets.role == "random"]
    # distinct matched sets: a 2 x 2 model has one for L1H0 (L1H1) and one for L0H1,L1H1 (L0H0,L1H0)
    assert list(rnd.sort_values("control_index")["head_set"]) == ["L1H1", "L0H0,L1H0"]
    assert sorted(rnd["control_index"]) == [0, 2]
    res = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert set(res.loc[res.condition == "target", "head_set"]) == {"L1H0", "L0H1,L1H1"}
    # clean once per (step, task): one clean cell per task, rows under operator "none" only
    raw = pd.read_parquet(tmp_path / "run" / "raw_icl.parquet")
    clean = raw[raw.role == "clean"]
    assert set(clean["operator"]) == {"none"} and set(clean["cell"].str.split("/").str[2]) == {"op=none"}
    assert not clean.duplicated(["task", "shots", "item", "control"]).any()
    assert set(raw.loc[raw.role != "clean", "condition_index"]) == set(range(1, 1 + 2 + 2))  # 2 targets, 2 random
    # the stats read it
    from stats.api import run_stats

    out = run_stats(tmp_path / "run", n_boot=20, mixed_model=False)
    assert set(out.table["head_set"]) >= {"L1H0", "L0H1,L1H1"}
