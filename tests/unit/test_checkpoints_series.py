"""CheckpointSeries: manifests, discovery, subsets, hashes, duplicates, errors, hub layout."""

from __future__ import annotations

import hashlib
import json
import os
import warnings

import pytest
import torch
from safetensors.torch import save_file

from checkpoints.series import (
    Checkpoint,
    CheckpointNotFoundError,
    CheckpointSeries,
    CorruptCheckpointError,
    DuplicateWeightsWarning,
    hash_checkpoint,
)


def _write_ckpt(folder, value: float) -> None:
    os.makedirs(folder, exist_ok=True)
    save_file({"w": torch.full((4, 3), float(value)), "b": torch.arange(3.0) * value},
              os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "config.json"), "w") as fh:
        json.dump({"model_type": "llama"}, fh)


@pytest.fixture
def series_dir(tmp_path):
    steps = [0, 10, 100, 1000]
    cps = []
    for i, s in enumerate(steps):
        _write_ckpt(tmp_path / f"step_{s}", i)
        cps.append(Checkpoint(s, s * 64, str(tmp_path / f"step_{s}"), extra={"loss": 5.0 - i}))
    CheckpointSeries(cps, root=tmp_path).with_hashes().save_manifest(tmp_path)
    return tmp_path


def test_manifest_round_trip(series_dir):
    s = CheckpointSeries.from_local(series_dir)
    assert s.steps == [0, 10, 100, 1000]
    assert [c.tokens_seen for c in s] == [0, 640, 6400, 64000]
    assert s[2].extra == {"loss": 3.0}
    raw = json.loads((series_dir / "series.json").read_text())
    assert raw["checkpoints"][1]["path"] == "step_10"  # relative paths on disk
    # write it elsewhere and read it back: identical entries
    s.save_manifest(series_dir)
    again = CheckpointSeries.from_local(series_dir)
    assert [(c.step, c.tokens_seen, c.locator, c.sha256, c.extra) for c in again] == \
           [(c.step, c.tokens_seen, c.locator, c.sha256, c.extra) for c in s]


def test_hash_is_sha256_of_file_bytes(series_dir):
    f = series_dir / "step_10" / "model.safetensors"
    assert hash_checkpoint(series_dir / "step_10") == hashlib.sha256(f.read_bytes()).hexdigest()
    assert CheckpointSeries.from_local(series_dir).by_step(10).sha256 == hash_checkpoint(series_dir / "step_10")


def test_discovery_without_manifest(tmp_path):
    for name, v in [("checkpoint-500", 1), ("checkpoint-20", 2), ("step_3", 3), ("other", 4)]:
        _write_ckpt(tmp_path / name, v)
    s = CheckpointSeries.from_local(tmp_path)
    assert s.steps == [3, 20, 500]
    assert s.by_step(20).locator.endswith("checkpoint-20")


def test_subsets(series_dir):
    s = CheckpointSeries.from_local(series_dir)
    assert s.select([100, 10]).steps == [10, 100]
    assert s.every(2).steps == [0, 100, 1000]
    assert s.every(3, include_last=False).steps == [0, 1000]
    assert s.log_spaced(3).steps == [0, 10, 1000]
    assert s.log_spaced(10).steps == s.steps
    with pytest.raises(CheckpointNotFoundError, match="step 50"):
        s.select([50])


def test_duplicate_weights_detected(series_dir):
    _write_ckpt(series_dir / "step_1000", 1)  # same tensors as step 10
    s = CheckpointSeries.from_local(series_dir)
    # the manifest hash of step 1000 is now stale -> verify reports corruption naming the step
    with pytest.raises(CorruptCheckpointError, match="step 1000"):
        s.verify()
    fresh = CheckpointSeries([Checkpoint(c.step, c.tokens_seen, c.locator) for c in s])
    assert fresh.duplicates() == [[10, 1000]]
    with pytest.warns(DuplicateWeightsWarning, match="step 10, step 1000"):
        fresh.verify()
    assert fresh.drop_duplicates().steps == [0, 10, 100]


def test_no_warning_without_duplicates(series_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CheckpointSeries.from_local(series_dir, verify=True)


def test_missing_checkpoint_names_step(series_dir):
    import shutil

    shutil.rmtree(series_dir / "step_100")
    s = CheckpointSeries.from_local(series_dir)
    with pytest.raises(CheckpointNotFoundError, match="step 100"):
        s.verify()


def test_missing_weights_file_names_step(series_dir):
    os.remove(series_dir / "step_10" / "model.safetensors")
    with pytest.raises(CheckpointNotFoundError, match="step 10 .*no weight files"):
        CheckpointSeries.from_local(series_dir, verify=True)


def test_corrupted_checkpoint_names_step(series_dir):
    f = series_dir / "step_100" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:40])  # truncated file
    with pytest.raises(CorruptCheckpointError, match="step 100"):
        CheckpointSeries.from_local(series_dir, verify=True)


def test_bad_manifest(tmp_path):
    (tmp_path / "series.json").write_text("{not json")
    with pytest.raises(CorruptCheckpointError, match="series.json"):
        CheckpointSeries.from_local(tmp_path)


def test_empty_folder_and_missing_folder(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="step_N"):
        CheckpointSeries.from_local(tmp_path)
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        CheckpointSeries.from_local(tmp_path / "nope")


def test_duplicate_steps_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"\[5\]"):
        CheckpointSeries([Checkpoint(5, None, "a"), Checkpoint(5, None, "b")])


def _fake_hub_cache(root, repo="org/tiny", steps=(0, 1000, 2000, 3000), dup=(3000, 2000)):
    """The huggingface_hub cache layout: refs/<branch> -> commit, snapshots/<commit>/files."""
    base = root / ("models--" + repo.replace("/", "--"))
    (base / "refs").mkdir(parents=True)
    values = {s: i for i, s in enumerate(steps)}
    values[dup[0]] = values[dup[1]]
    for i, s in enumerate(steps):
        sha = f"{i + 1:040x}"
        (base / "refs" / f"step{s}").write_text(sha)
        _write_ckpt(base / "snapshots" / sha, values[s])
    (base / "refs" / "main").write_text(f"{len(steps):040x}")
    return root


def test_hub_revisions_listed_from_offline_cache(tmp_path):
    cache = _fake_hub_cache(tmp_path)
    s = CheckpointSeries.from_hub("org/tiny", cache_dir=cache, local_files_only=True,
                                  tokens_per_step=2_097_152)
    assert s.steps == [0, 1000, 2000, 3000]  # "main" does not match step{N}
    assert s[1].locator == "hub:org/tiny@step1000" and s[1].tokens_seen == 1000 * 2_097_152
    assert (s.local_path(s[2]) / "model.safetensors").is_file()
    with pytest.warns(DuplicateWeightsWarning, match="step 2000, step 3000"):
        s.verify()


def test_hub_explicit_revisions_and_missing_revision(tmp_path):
    cache = _fake_hub_cache(tmp_path)
    s = CheckpointSeries.from_hub("org/tiny", revisions=["step1000", "step0"], cache_dir=cache,
                                  local_files_only=True)
    assert s.steps == [0, 1000]
    s2 = CheckpointSeries.from_hub("org/tiny", steps=[1000, 4000], cache_dir=cache, local_files_only=True)
    with pytest.raises(CheckpointNotFoundError, match="step 4000"):
        s2.verify()
    with pytest.raises(ValueError, match="does not match"):
        CheckpointSeries.from_hub("org/tiny", revisions=["main"], cache_dir=cache, local_files_only=True)


def test_revision_folder_layout(tmp_path):
    for s in (5, 50):
        _write_ckpt(tmp_path / f"step{s}", s)
    s = CheckpointSeries.from_revision_folder(tmp_path, tokens_per_step=2)
    assert s.steps == [5, 50] and s[1].tokens_seen == 100
