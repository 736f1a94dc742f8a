"""`ablate icl` end to end on a tiny two-checkpoint series: tables, resume, settings guard
(a one-section ``[levels]`` spec through the runner)."""

import pandas as pd
import pytest
from click.testing import CliRunner

from ablate.icl.series import evaluate_model, summarize
from experiments.cli import main
from ablate.testing.tiny import tiny_model, tiny_tokenizer

TASKS = "binary_fruit_month,pd_order_letter"


@pytest.fixture(scope="module")
def series_dir(tmp_path_factory):
    from ablate.icl.wordlists import all_words

    root = tmp_path_factory.mktemp("series")
    tok = tiny_tokenizer(list(all_words("all")) + list("0123456789") + list("BCDFGHJKLMNPQRSTVWXZ")
                         + ["true", "false", ",", ":"])
    for step, seed in ((0, 0), (10, 1)):
        m = tiny_model("llama", vocab_size=len(tok), max_pos=256, seed=seed)
        m.save_pretrained(root / f"step_{step}")
        tok.save_pretrained(root / f"step_{step}")
    return root


def _run(args):
    r = CliRunner().invoke(main, ["icl"] + args, catch_exceptions=False)
    return r


def test_cli_series_tables_and_resume(series_dir, tmp_path):
    out = tmp_path / "run"
    args = ["--series", str(series_dir), "--out", str(out), "--tasks", TASKS, "--shots", "0,2,4",
            "--n-items", "4", "--controls", "clean,shuffled", "--no-progress"]
    r = _run(args)
    assert r.exit_code == 0, r.output
    items = pd.read_parquet(out / "icl_items.parquet")
    summary = pd.read_parquet(out / "icl_summary.parquet")
    assert set(items["step"]) == {0, 10}
    for c in ("step", "task", "shots", "item", "control", "fc", "pd", "fc_cont", "pd_cont",
              "gold_logprob", "lr_prompt", "condition"):
        assert c in items.columns
    assert len(items) == 2 * 2 * 3 * 4 * 2
    assert {"n", "fc", "pd", "fc_sem", "min_shots_fc80", "chance"} <= set(summary.columns)
    assert len(summary) == 2 * 2 * 3 * 2
    # resume: the finished cells are reused, no model is loaded again
    (out / "icl_items.parquet").unlink()

    def no_load(*a, **k):
        raise AssertionError("resumed run must not reload a finished checkpoint")

    import ablate.model.handle
    import sys

    import checkpoints.sweep  # noqa: F401  (checkpoints.sweep the name is a function; the module is in sys.modules)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ablate.model.handle, "load_model", no_load)
        mp.setattr(sys.modules["checkpoints.sweep"], "read_state_dict", no_load)
        r = _run(args)
    assert r.exit_code == 0, r.output
    pd.testing.assert_frame_equal(pd.read_parquet(out / "icl_items.parquet"), items)
    # other settings in the same folder are refused, naming the setting
    r = CliRunner().invoke(main, ["icl"] + args[:6] + ["--shots", "0,2"] + args[8:])
    assert r.exit_code != 0 and "other settings" in r.output and "levels.shots" in r.output


def test_cli_steps_and_single_model(series_dir, tmp_path):
    r = _run(["--series", str(series_dir), "--steps", "10", "--out", str(tmp_path / "a"), "--tasks",
              "rel_obj", "--shots", "1", "--n-items", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert set(pd.read_parquet(tmp_path / "a" / "icl_items.parquet")["step"]) == {10}
    r = _run(["--model", str(series_dir / "step_0"), "--out", str(tmp_path / "b"), "--tasks", "rel_obj",
              "--shots", "1", "--n-items", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert set(pd.read_parquet(tmp_path / "b" / "icl_items.parquet")["step"]) == {0}  # a single model is step 0
    r = CliRunner().invoke(main, ["icl"] + ["--series", str(series_dir), "--steps", "7", "--out",
                                         str(tmp_path / "c"), "--no-progress"])
    assert r.exit_code != 0 and "not in the series" in r.output
    r = CliRunner().invoke(main, ["icl"] + ["--out", str(tmp_path / "d")])
    assert r.exit_code != 0 and "exactly one" in r.output


def test_deterministic_and_min_shots(series_dir):
    from ablate.model.handle import load_model

    h = load_model(series_dir / "step_0")
    a = evaluate_model(h, tasks=["binary_fruit_month"], shots=[0, 1, 3], n_items=4, progress=False)
    b = evaluate_model(h, tasks=["binary_fruit_month"], shots=[0, 1, 3], n_items=4, progress=False)
    pd.testing.assert_frame_equal(a, b)
    # min shots to 80% FC, checked on a hand-made table
    t = a.copy()
    t["fc"] = t["shots"].map({0: 0.0, 1: 0.5, 3: 1.0})
    s = summarize(t)
    assert (s.loc[s.control == "clean", "min_shots_fc80"] == 3).all()
    t["fc"] = 0.0
    assert summarize(t)["min_shots_fc80"].isna().all()
