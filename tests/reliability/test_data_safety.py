"""Issue 18: nothing lost, nothing stale, nothing silently wrong (one test per reported case).

Every test asserts the exit status, the message, and (where a user's folder is involved) that no
file outside the toolkit's own outputs changed, by hashing the folder before and after.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from experiments.cli import main as ablate
from tests.reliability.conftest import folder_digest, small_spec


def _cli(*args):
    return CliRunner().invoke(ablate, [str(a) for a in args])


def _one_message(r):
    """Exit non-zero with one 'Error:' message and no traceback."""
    assert r.exit_code != 0, r.output
    assert "Traceback" not in r.output and "Error" in r.output, r.output
    return r.output


# ---- case 1: --new never deletes; it refuses folders the toolkit does not own -----------------------

def test_new_refuses_a_series_folder_and_a_user_folder(series_copy, tmp_path):
    spec = small_spec(tmp_path, series_copy)
    before = folder_digest(series_copy)
    out = _one_message(_cli("run", spec, "--out", series_copy, "--new", "--no-progress"))
    assert "series" in out and "nothing" in out
    assert folder_digest(series_copy) == before
    user = tmp_path / "study"
    user.mkdir()
    (user / "notes.txt").write_text("my notes")
    before = folder_digest(user)
    _one_message(_cli("run", spec, "--out", user, "--new", "--no-progress"))
    assert folder_digest(user) == before and sorted(p.name for p in user.iterdir()) == ["notes.txt"]


def test_new_moves_an_owned_run_aside(series_copy, tmp_path):
    spec = small_spec(tmp_path, series_copy)
    run = tmp_path / "run"
    r = _cli("run", spec, "--out", run, "--no-progress")
    assert r.exit_code == 0, r.output
    old = folder_digest(run)
    spec2 = small_spec(tmp_path, series_copy, name="safe", random_sets=2)
    r = _cli("run", spec2, "--out", run, "--no-progress")
    assert r.exit_code != 0 and "--new" in r.output and "nothing is deleted" in r.output
    assert folder_digest(run) == old
    r = _cli("run", spec2, "--out", run, "--new", "--no-progress")
    assert r.exit_code == 0, r.output
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and folder_digest(aside[0]) == old


# ---- case 2: one writer per run folder ------------------------------------------------------------

def test_second_writer_is_refused_and_sigstop_cannot_desync_the_manifest(series_copy, tmp_path):
    spec = small_spec(tmp_path, series_copy, steps="[10, 20, 30]")
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    first = subprocess.Popen([sys.executable, "-m", "experiments.cli", "run", str(spec), "--out", str(run),
                              "--no-progress"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(600):  # wait until the first run holds the lock
            if (run / ".ablate.lock.json").exists():
                break
            time.sleep(0.05)
        assert (run / ".ablate.lock.json").exists(), "the first run never took the lock"
        first.send_signal(signal.SIGSTOP)
        r = _cli("run", spec, "--out", run, "--no-progress")
        out = _one_message(r)
        assert str(first.pid) in out, out
        r = _cli("run", small_spec(tmp_path, series_copy, name="other"), "--out", run, "--new", "--no-progress")
        _one_message(r)  # --new while another run writes: refused too, nothing moved
        assert run.exists()
    finally:
        first.send_signal(signal.SIGCONT)
        text, _ = first.communicate(timeout=300)
    assert first.returncode == 0, text
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["spec"]["name"] == "safe"
    assert _cli("status", run).exit_code == 0
    res = pd.read_parquet(run / "results.parquet")
    assert sorted(res["step"].unique()) == [10, 20, 30]


def test_stale_lock_of_a_dead_process_is_taken_over(series_copy, tmp_path):
    spec = small_spec(tmp_path, series_copy)
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / ".ablate.lock.json").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename,
                                                       "start": "2026-01-01T00:00:00", "command": "ablate run"}))
    r = _cli("run", spec, "--out", run, "--no-progress")
    assert r.exit_code == 0, r.output
    assert (run / "results.parquet").exists()


# ---- case 3: changed weights are recomputed; hashes are verified -----------------------------------

def _perturb(step_dir: Path) -> None:
    from safetensors.torch import load_file, save_file

    sd = load_file(step_dir / "model.safetensors")
    k = next(k for k in sd if k.endswith("o_proj.weight"))
    sd[k] = sd[k] * 0.5
    save_file(sd, step_dir / "model.safetensors", metadata={"format": "pt"})


def test_retrained_series_is_recomputed_and_a_bad_hash_is_named(series_copy, tmp_path):
    from checkpoints.series import hash_checkpoint

    spec = small_spec(tmp_path, series_copy)
    run = tmp_path / "run"
    assert _cli("run", spec, "--out", run, "--no-progress").exit_code == 0
    res0 = pd.read_parquet(run / "results.parquet")
    # weights changed but series.json not updated: a clear error naming the checkpoint, nothing run
    _perturb(series_copy / "step_30")
    r = _cli("run", spec, "--out", run, "--no-progress")
    out = _one_message(r)
    assert "30" in out and "series.json" in out
    # retrain in place for real: the user deletes the series and trains it again (another seed) into the
    # same folder; the run must recompute every cell of the new weights, never report "already done"
    shutil.rmtree(series_copy)
    r = _cli("train", "--preset", "tiny", "--seed", "1", "--out", series_copy, "--no-progress")
    assert r.exit_code == 0, r.output
    r = _cli("run", spec, "--out", run, "--no-progress")
    assert r.exit_code == 0, r.output
    assert " 0 already done" in r.output, r.output
    res1 = pd.read_parquet(run / "results.parquet")
    assert len(res1) == len(res0)
    m = json.loads((run / "manifest.json").read_text())
    assert hash_checkpoint(series_copy / "step_30") in json.dumps(m.get("checkpoints", {})), m.get("checkpoints")
    tgt0 = res0[res0["condition"] == "target"].sort_values(list(res0.columns[:6])).reset_index(drop=True)
    tgt1 = res1[res1["condition"] == "target"].sort_values(list(res1.columns[:6])).reset_index(drop=True)
    num = [c for c in tgt0.columns if pd.api.types.is_float_dtype(tgt0[c])]
    assert not tgt0[num].equals(tgt1[num]), "results of the old weights were reused"


# ---- case 4: stats says what is missing and refuses bad options ------------------------------------

def test_stats_bad_options_and_empty_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = _one_message(_cli("stats", empty))
    assert "results" in out
    assert "alpha" in _one_message(_cli("stats", empty, "--alpha", "5"))


def test_stats_prereg_step_must_exist(series_copy, tmp_path):
    spec = small_spec(tmp_path, series_copy, steps="[20, 30]", random_sets=1)
    run = tmp_path / "run"
    assert _cli("run", spec, "--out", run, "--no-progress").exit_code == 0
    assert "999" in _one_message(_cli("stats", run, "--prereg", "999", "--n-boot", "20", "--no-mixed-model"))
    r = _cli("stats", run, "--prereg", "20,30", "--n-boot", "20", "--no-mixed-model")
    assert r.exit_code == 0, r.output


def _failing_cells(monkeypatch, when):
    """Make the runner's cell function raise for the keys ``when(key)`` selects (a real failure path)."""
    import experiments.runner as runner

    real = runner.run_cell

    def run_cell(ctx, key):
        if when(key):
            raise RuntimeError(f"injected failure of {key}")
        return real(ctx, key)

    monkeypatch.setattr(runner, "run_cell", run_cell)


def test_stats_exit_status_says_the_preregistered_family_is_incomplete(series_copy, tmp_path, monkeypatch):
    spec = small_spec(tmp_path, series_copy, steps="[20, 30]", random_sets=1)
    run = tmp_path / "run"
    _failing_cells(monkeypatch, lambda k: k.step == 30 and k.kind == "icl" and not k.clean)
    r = _cli("run", spec, "--out", run, "--no-progress")
    assert r.exit_code != 0 and "failed" in r.output
    stats = ("--n-boot", "20", "--no-mixed-model")
    out = _one_message(_cli("stats", run, *stats))
    assert "pre-registered family is incomplete" in out and "[30]" in out and "--allow-partial" in out
    notes = (run / "tables" / "significance.md").read_text()
    assert "Missing from the analysis" in notes and "injected failure" in notes
    r = _cli("stats", run, *stats, "--allow-partial")
    assert r.exit_code == 0, r.output
    assert _cli("stats", run, *stats, "--prereg", "20").exit_code == 0  # step 30 is not in this family
    monkeypatch.undo()
    r = _cli("run", spec, "--out", run, "--no-progress")  # resumes: only the failed cells run again
    assert r.exit_code == 0 and "0 failed" in r.output, r.output
    r = _cli("stats", run, *stats)
    assert r.exit_code == 0, r.output


def test_stats_on_a_run_whose_cells_all_failed(series_copy, tmp_path, monkeypatch):
    spec = small_spec(tmp_path, series_copy, steps="[30]", random_sets=1)
    run = tmp_path / "run"
    _failing_cells(monkeypatch, lambda k: k.kind in ("icl", "lr"))
    assert _cli("run", spec, "--out", run, "--no-progress").exit_code != 0
    out = _one_message(_cli("stats", run, "--n-boot", "20", "--no-mixed-model"))
    assert "injected failure" in out and "re-run" in out and "clean condition" not in out


def test_p_resolution_flag(tmp_path):
    """R = 4 random sets reach p >= 1/5: with the default resolution (alpha) the random-heads p is
    refused and the note says how many sets to run; --p-resolution 0.2 accepts them; bad values refused.
    (A runner-shaped simulated table: the tiny series has no ability to test.)"""
    from stats.simulate import simulate_results

    run = tmp_path / "run"
    run.mkdir()
    simulate_results(n_steps=1, n_tasks=6, n_items=6, n_random=4, drops={"lr": .1, "fc": .1, "pd": .4},
                     seed=0).to_parquet(run / "results.parquet")
    stats = ("stats", run, "--n-boot", "20", "--no-mixed-model")
    r = _cli(*stats)
    assert r.exit_code == 0, r.output
    tab = pd.read_csv(run / "tables" / "significance_tidy.csv")
    tgt = tab[tab["set_role"] == "target"] if "set_role" in tab else tab
    assert len(tgt) and tgt["p_random"].isna().all() and (tgt["R_null"] == 4).all(), tgt.T
    assert "R >= 19" in (run / "tables" / "significance.md").read_text()
    assert _cli(*stats, "--p-resolution", "0.2").exit_code == 0
    tab = pd.read_csv(run / "tables" / "significance_tidy.csv")
    tgt = tab[tab["set_role"] == "target"] if "set_role" in tab else tab
    assert tgt["p_random"].notna().all() and (tgt["p_random"] >= 0.2).all(), tgt.T
    assert "p-resolution" in _one_message(_cli(*stats, "--p-resolution", "1.5"))


# ---- case 5: prompts are checked against the model's context ------------------------------------

def test_shots_beyond_the_context_are_refused_before_any_cell(series_copy, tmp_path):
    before = folder_digest(series_copy)
    out = _one_message(_cli("icl", "--series", series_copy, "--steps", "30", "--out", tmp_path / "icl",
                            "--tasks", "pd_category_letter", "--shots", "0,500", "--n-items", "2", "--no-progress"))
    assert "positions" in out
    assert folder_digest(series_copy) == before


# ---- case 6: validation before any cell; a failed start does not block the retry ----------------------

def test_failed_train_start_does_not_block_the_retry(tmp_path):
    out = tmp_path / "tr"
    _one_message(_cli("train", "--preset", "tiny", "--steps", "-5", "--out", out, "--no-progress"))
    assert not out.exists() or not any(out.iterdir())


def test_bad_head_is_refused_before_any_cell(series_copy, tmp_path):
    spec = small_spec(tmp_path, series_copy, explicit=["L99H0"])
    run = tmp_path / "run"
    out = _one_message(_cli("run", spec, "--out", run, "--no-progress"))
    assert "L99H0" in out and out.count("Error") == 1 and "FileNotFoundError" not in out
    assert not (run / "cells").exists() or not any((run / "cells").rglob("*.parquet"))


# ---- case 7: one message, never a traceback ---------------------------------------------------------

def test_bad_inputs_give_one_message(tmp_path, series_copy):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a gguf file")
    _one_message(_cli("info", fake))
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    _one_message(_cli("info", bert))
    _one_message(_cli("scan", "--series", series_copy, "--steps", "30", "--out", tmp_path / "s1",
                      "--tau-percentile", "150"))
    binf = tmp_path / "sentences.txt"
    binf.write_bytes(bytes(range(256)) * 4)
    _one_message(_cli("scan", "--series", series_copy, "--steps", "30", "--out", tmp_path / "s2",
                      "--sentences", binf))
    _one_message(_cli("figures", tmp_path, "--format", "jpgx"))


def test_tau_and_read_only_out_and_truncated_weights(series_copy, tmp_path):
    scan = ("scan", "--series", series_copy, "--steps", "30", "--n-sentences", "8")
    assert "tau" in _one_message(_cli(*scan, "--out", tmp_path / "s", "--tau", "-1"))
    if os.geteuid() == 0:  # root writes through chmod 555; sysfs refuses new files even to root
        ro = Path("/sys/sih-ablate-test")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        ro = ro / "x"
    out = _one_message(_cli(*scan, "--out", ro))
    assert "writable --out" in out
    before_digest = folder_digest(series_copy)
    weights = next((series_copy / "step_30").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    truncated = folder_digest(series_copy)
    for cmd in (scan + ("--out", tmp_path / "s2"),
                ("icl", "--series", series_copy, "--steps", "30", "--out", tmp_path / "i", "--tasks",
                 "pd_category_letter", "--shots", "0,2", "--n-items", "2", "--no-progress")):
        out = _one_message(_cli(*cmd))
        assert "step 30" in out and "series.json" in out
    assert folder_digest(series_copy) == truncated != before_digest  # the toolkit never "repairs" it
    model = tmp_path / "model"  # a plain model folder (no series.json): the loader's error, in one line
    shutil.copytree(series_copy / "step_30", model)
    for f in (series_copy / "tokenizer").iterdir():
        shutil.copy(f, model / f.name)
    out = _one_message(_cli("info", model))
    assert "SafetensorError" in out and "Traceback" not in out


def test_log_spaced_zero_and_a_failing_figure(series_copy, tmp_path):
    spec = small_spec(tmp_path, series_copy, steps="{log_spaced = 0}")
    out = _one_message(_cli("run", spec, "--out", tmp_path / "run", "--no-progress"))
    assert "log_spaced" in out and ">= 1" in out
    run = tmp_path / "figs"
    run.mkdir()
    pd.DataFrame({"step": [30], "score": ["relation_index"], "value": [0.1]}).to_parquet(run / "head_scores.parquet")
    r = _cli("figures", run, "--format", "png")
    out = _one_message(r)
    assert "ri_heatmaps" in out and "failed" in out


# ---- case 8: every shipped spec runs clean on the tiny preset --------------------------------------

ALL_SPECS = sorted(p.parent.name for p in (Path(__file__).resolve().parents[2] / "experiments").glob("*/spec.toml"))
#: factors studies train their own series (no --series): tests/integration/test_factors.py runs each on tiny
FACTORS_SPECS = ["emergence_factors"]
SHIPPED_SPECS = [n for n in ALL_SPECS if n not in FACTORS_SPECS]


def test_every_shipped_spec_is_covered():
    from experiments.factors import is_factors_spec

    assert {"sih_ablation", "emergence", "cross_arch"} <= set(SHIPPED_SPECS)
    assert [n for n in ALL_SPECS if is_factors_spec(n)] == FACTORS_SPECS


@pytest.mark.parametrize("name", SHIPPED_SPECS)
def test_shipped_spec_runs_clean_on_tiny(name, series_copy, tmp_path):
    """Each shipped spec, unchanged except the series, its steps (the last two checkpoints) and R = 2."""
    import re
    import tomllib

    src = Path(__file__).resolve().parents[2] / "experiments" / name / "spec.toml"
    text = src.read_text()
    d = tomllib.loads(text)
    assert d["series"]["steps"] and d["controls"]["random_sets"] >= 19
    text, n_steps = re.subn(r"(?m)^steps = .*$", "steps = [20, 30]", text, count=1)
    text, n_r = re.subn(r"(?m)^random_sets = \d+", "random_sets = 2", text, count=1)
    assert n_steps == n_r == 1
    p = tmp_path / "spec.toml"
    p.write_text(text)
    run = tmp_path / "run"
    r = _cli("run", p, "--series", series_copy, "--out", run, "--no-progress")
    assert r.exit_code == 0, r.output
    assert "0 failed" in r.output
    r = _cli("stats", run, "--n-boot", "20", "--no-mixed-model")
    assert r.exit_code == 0, r.output
