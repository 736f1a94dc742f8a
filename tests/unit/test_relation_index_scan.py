"""`ablate scan`: tidy head_scores.parquet over a series, resumable per checkpoint (a one-section
``[scores]`` spec through the runner)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from ablate.scores.scan import COLUMNS
from experiments.cli import main
from experiments.commands.scan import scan_spec
from experiments.runner import make_plan, run_spec
from ablate.testing.tiny import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    root = tmp_path_factory.mktemp("series")
    tok = tiny_tokenizer()
    for i, step in enumerate((0, 100)):
        m = tiny_model("llama", vocab_size=len(tok), seed=i)
        m.save_pretrained(root / f"step_{step}")
        tok.save_pretrained(root / f"step_{step}")
    (root / "series.json").write_text(json.dumps({"format": "checkpoint-series/1", "checkpoints": [
        {"step": 0, "tokens_seen": 0, "path": "step_0"}, {"step": 100, "tokens_seen": 51200, "path": "step_100"}]}))
    return root


def test_discover(series):
    plan = make_plan(scan_spec(series=series))
    assert plan.steps == [0, 100] and plan.tokens_seen == {0: 0, 100: 51200}
    assert [str(k) for k in plan.grid] == ["scores/step=0", "scores/step=100"]


def test_scan_cli_tidy_and_resumable(series, tmp_path):
    out = tmp_path / "run"
    args = ["--series", str(series), "--out", str(out), "--n-sentences", "12", "--tau", "0", "--seed", "1"]
    r = CliRunner().invoke(main, ["scan"] + args)
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(out / "head_scores.parquet")
    assert list(df.columns) == COLUMNS
    assert set(df.step) == {0, 100} and set(df.tokens_seen) == {0, 51200}
    assert set(df.score) == {"relation_index", "baseline", "copying", "prefix_matching", "sih_test_p", "sih_test_effect"}
    assert {"subj", "obj", "mod"} <= set(df.relation) and {"forward", "reverse"} <= set(df.direction)
    ri = df[df.score == "relation_index"]
    assert ri.value.dropna().between(0, 1).all() and (ri.n_events >= 0).all()
    # resume: finished cells are not recomputed
    part = out / "cells" / "scores__step=100.parquet"
    mtime = part.stat().st_mtime_ns
    (out / "head_scores.parquet").unlink()
    r = CliRunner().invoke(main, ["scan"] + args)
    assert r.exit_code == 0 and part.stat().st_mtime_ns == mtime
    assert len(pd.read_parquet(out / "head_scores.parquet")) == len(df)
    # other settings on the same run folder are refused
    r = CliRunner().invoke(main, ["scan"] + args[:-2] + ["--seed", "2"])
    assert r.exit_code != 0 and "other settings" in r.output and "seed" in r.output


def test_scan_steps_and_errors(series, tmp_path):
    cfg = dict(n_sentences=6, copying=False, prefix_matching=False, tau=0.0)
    run_spec(scan_spec(series=series, steps=[100], **cfg), tmp_path / "r", progress=False)
    assert set(pd.read_parquet(tmp_path / "r" / "head_scores.parquet").step) == {100}
    with pytest.raises(Exception, match="not in the series"):
        run_spec(scan_spec(series=series, steps=[7], **cfg), tmp_path / "r2", progress=False)
    r = CliRunner().invoke(main, ["scan"] + ["--out", str(tmp_path / "r3")])
    assert r.exit_code != 0 and "exactly one" in r.output
