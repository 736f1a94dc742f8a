"""The built-in trainer on the tiny preset: series output, determinism, kill + resume, sweeps."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from checkpoints.presets import get_preset
from checkpoints.series import CheckpointSeries
from checkpoints.trainer import TrainerError, checkpoint_schedule, train

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_uninterrupted")
    series = train(get_preset("tiny"), out, threads=1, progress=False)
    return out, series


def test_schedule_log_then_linear():
    assert checkpoint_schedule(30, 3, 3) == [0, 1, 2, 5, 10, 20, 30]
    s = checkpoint_schedule(18_000, 8, 16)
    assert s[0] == 0 and s[-1] == 18_000 and len(s) == 25
    assert all(b > a for a, b in zip(s, s[1:]))


def test_tiny_series_layout(tiny_run):
    out, series = tiny_run
    assert series.steps == checkpoint_schedule(30, 3, 3)
    again = CheckpointSeries.from_local(out, verify=True)
    assert again.steps == series.steps
    last = again[-1]
    assert last.tokens_seen == 30 * 4 * 32
    assert last.extra["loss"] < 6.5 and last.extra["eval_loss"] < again[0].extra["eval_loss"]
    folder = Path(last.locator)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (folder / name).is_file(), name
    # the resume state is kept on the newest checkpoint only
    assert (folder / "trainer_state.pt").is_file()
    assert not (Path(again[-2].locator) / "trainer_state.pt").exists()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.bos_token == "<|bos|>" and tok.eos_token == "<|eos|>" and tok.pad_token == "<|pad|>"
    assert tok("apple, March: 0").input_ids[0] == tok.bos_token_id


def _cli(out, *extra):
    return [sys.executable, "-m", "experiments.commands.train", "--preset", "tiny", "--out", str(out),
            "--threads", "1", "--no-progress", *extra]


def _steps_in_manifest(out: Path) -> list[int]:
    try:
        return [e["step"] for e in json.loads((out / "series.json").read_text())["checkpoints"]]
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def test_kill_and_resume_is_bitwise_identical(tiny_run, tmp_path):
    ref_out, ref = tiny_run
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli(out, "--sleep-per-step", "0.3"), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and 5 not in _steps_in_manifest(out) and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    done = _steps_in_manifest(out)
    assert 5 in done and 30 not in done, done
    # re-run the same command: it resumes and completes
    res = subprocess.run(_cli(out), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    resumed = CheckpointSeries.from_local(out, verify=True)
    assert resumed.steps == ref.steps
    for a, b in zip(ref, resumed):
        assert a.sha256 == b.sha256, f"step {a.step} differs after resume"
    final_ref = (Path(ref[-1].locator) / "model.safetensors").read_bytes()
    final_res = (Path(resumed[-1].locator) / "model.safetensors").read_bytes()
    assert final_ref == final_res


def test_same_out_with_other_config_is_refused(tiny_run):
    out, _ = tiny_run
    with pytest.raises(TrainerError, match="different run"):
        train(get_preset("tiny", seed=7), out, threads=1, progress=False)


def test_completed_run_is_a_no_op(tiny_run):
    out, series = tiny_run
    before = (out / "series.json").read_text()
    again = train(get_preset("tiny"), out, threads=1, progress=False)
    assert again.steps == series.steps and (out / "series.json").read_text() == before


@pytest.mark.parametrize("prefetch", [True, False])
def test_skeleton_sweep_matches_fresh_loads(tiny_run, prefetch):
    from transformers import AutoModelForCausalLM

    from checkpoints.sweep import sweep

    out, _ = tiny_run
    series = CheckpointSeries.from_local(out)
    ids = torch.tensor([[0, 5, 17, 42, 99, 5, 17, 42, 99, 3]])
    seen = []
    for cp, model in sweep(series, prefetch=prefetch):
        fresh = AutoModelForCausalLM.from_pretrained(cp.locator, attn_implementation="eager").eval()
        with torch.no_grad():
            a, b = model(input_ids=ids).logits, fresh(input_ids=ids).logits
        assert torch.equal(a, b), f"step {cp.step}"
        seen.append(cp.step)
    assert seen == series.steps


def test_sweep_reports_corrupted_checkpoint(tiny_run, tmp_path):
    import shutil

    from checkpoints.series import CorruptCheckpointError
    from checkpoints.sweep import sweep

    out, _ = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("text_ids.npy"))
    f = copy / "step_10" / "model.safetensors"
    f.write_bytes(b"\x00" * 16)
    with pytest.raises(CorruptCheckpointError, match="step 10"):
        for _ in sweep(CheckpointSeries.from_local(copy)):
            pass


def test_probe_runs_on_tiny_series(tiny_run):
    from checkpoints.probe import probe_series

    out, _ = tiny_run
    rows = probe_series(CheckpointSeries.from_local(out).select([0, 30]), shots=4, n_pd=4)
    assert [r.step for r in rows] == [0, 30]
    assert all(0.0 <= r.prefix_matching <= 1.0 for r in rows)


def test_cli_unknown_preset():
    from click.testing import CliRunner

    from experiments.commands.train import train_command

    res = CliRunner().invoke(train_command, ["--preset", "huge", "--out", "x"])
    assert res.exit_code != 0 and "unknown preset 'huge'" in res.output


def test_paper_preset_config_builds_on_meta_device():
    from transformers import LlamaForCausalLM

    cfg = get_preset("paper").llama_config()
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.hidden_size) == (20, 16, 2048)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert 1.0e9 < n < 1.5e9
