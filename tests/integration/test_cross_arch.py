"""The shipped ``cross_arch`` spec on tiny GPT-2 and GPT-NeoX series trained by the built-in trainer.

What ``ablate run experiments/cross_arch/spec.toml --series DIR`` does, with smaller ICL sizes. The
tiny series are too small for any head to pass the SIH rule (no attention weight clears the
relation index's tau gate), so the target set is given explicitly; the selection itself is the
same code for every family and runs on the full spec in the README's commands.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from ablate.model.heads import HeadSet
from experiments.runner import run_spec
from experiments.spec import load_spec, spec_from_dict
from tests.integration.test_trainer_families import FAMILIES, trained_series

SPEC = Path(__file__).resolve().parents[2] / "experiments" / "cross_arch" / "spec.toml"
TARGET = "L1H0"  # tiny preset: 2 layers x 2 heads


def _small_cross_arch(series_dir: Path):
    d = load_spec(SPEC).to_dict()
    d["heads"].update(select="explicit", explicit=[TARGET])
    d["scores"]["n_sentences"] = 10
    d["controls"]["random_sets"] = 2
    d["icl"].update(items=2, lr_documents=2)
    return spec_from_dict(d, str(SPEC)).with_series(str(series_dir))  # what --series DIR does


@pytest.mark.parametrize("family", FAMILIES)
def test_cross_arch_spec_runs_on_trained_family(tmp_path_factory, tmp_path, family):
    from ablate.model.handle import load_model
    from checkpoints.series import CheckpointSeries

    series_dir = trained_series(family, tmp_path_factory)
    spec = _small_cross_arch(series_dir)
    out = tmp_path / f"cross_{family}"
    summary = run_spec(spec, out, progress=False)
    assert summary.cells_failed == 0

    series = CheckpointSeries.from_local(series_dir)
    a = load_model(series[-1].locator).adapter
    assert a.family == family
    steps = sorted(pd.read_parquet(out / "head_sets.parquet")["step"].unique())
    assert steps[0] == 0 and steps[-1] == series.steps[-1] and len(steps) == 4  # log_spaced = 4

    res = pd.read_parquet(out / "results.parquet")
    assert sorted(res["step"].unique()) == steps
    for step, g in res.groupby("step"):
        assert {"clean", "target", "random", "induction"} <= set(g["condition"]), step
        # random sets per tested-set size (the 1-head target's, the k = 2 induction set's own), distinct:
        # a 2 x 2 model has exactly one matched set for each, so 1 of the R = 2 (indices 0 and 2)
        assert set(g.loc[g["condition"] == "random", "control_index"]) == {0, 2}, step
    assert set(res["operator"]) == {"none", "mean", "zero"}
    assert set(res["task"]) == {*spec.icl.tasks, "lr_docs"}  # lr_docs: the loss-reduction rows
    icl = res[res["task"] != "lr_docs"]
    assert icl.loc[icl["condition"] == "clean", ["fc", "pd"]].notna().all().all()

    hs = pd.read_parquet(out / "head_sets.parquet")
    for step, g in hs.groupby("step"):
        roles = g.set_index(["role", "control_index"])["head_set"]
        assert roles[("target", -1)] == TARGET
        for s in g["head_set"]:
            HeadSet.parse(s).validate(a.n_layers, a.n_heads)  # valid heads of this family's model
        ind = HeadSet.parse(roles[("induction", -1)])
        assert len(ind) == 2
        for ci, s in g.loc[g["role"] == "random", ["control_index", "head_set"]].itertuples(index=False):
            r = HeadSet.parse(s)
            if ci < 2:  # matched to the 1-head target
                assert len(r) == 1 and not set(r) & set(HeadSet.parse(TARGET)) and r.layers() == (1,)
            else:  # matched to the induction set's size (its layers where the tiny model has free heads)
                assert len(r) == 2 and not set(r) & set(ind)


@pytest.mark.parametrize("family", FAMILIES)
def test_cross_arch_head_selection_runs_on_trained_family(tmp_path_factory, family):
    """The spec's own SIH rule (relation index on parsed sentences) on the family's final checkpoint."""
    import json

    from ablate.model.handle import load_model
    from checkpoints.series import CheckpointSeries
    from experiments.cells import CellContext, CellKey, run_cell

    spec = load_spec(SPEC)
    assert spec.heads.select == "sih"
    last = CheckpointSeries.from_local(trained_series(family, tmp_path_factory))[-1]
    h = load_model(last.locator)
    ctx = CellContext(spec, last.step, last.tokens_seen, h)
    scores = run_cell(ctx, CellKey("scores", last.step))  # what the heads cell reads
    assert (scores["score"] == "relation_index").any() and scores["n_events"].sum() >= 0
    rows = run_cell(replace(ctx, scores=scores), CellKey("heads", last.step)).set_index("role")
    details = json.loads(rows.loc["target", "details"])
    assert details["groups"] and details["tau"] == spec.scores.tau
    # a tiny series has no SIH: the target may be empty, and then it says so and gets no random sets;
    # the induction set then has R random sets of its own size (the statistics match by size)
    target = HeadSet.parse(rows.loc["target", "head_set"])
    assert len(target) <= spec.heads.k
    ind = HeadSet.parse(rows.loc["induction", "head_set"]).validate(h.adapter.n_layers, h.adapter.n_heads)
    assert len(ind) == spec.heads.k
    rnd = rows.loc[["random"]] if "random" in rows.index else rows.iloc[:0]
    sizes = {len(HeadSet.parse(x)) for x in rnd["head_set"]}
    assert 1 <= len(rnd) and (len(ind) in sizes) and rnd["head_set"].is_unique
    if len(target) == 0:  # distinct matched sets only: at most R, fewer where fewer exist
        assert sizes == {len(ind)} and len(rnd) <= spec.controls.random_sets
