"""The series embedded in the package: shipped, in sync with the preset, verified, used by the demo."""

import json
import shutil

import pytest

from checkpoints import embedded
from checkpoints.embedded import (EmbeddedSeriesError, config_hash, embedded_folder, embedded_series,
                                  export_series, has_embedded, preset_config_hash)


def test_the_default_preset_ships_its_series_and_it_matches_the_preset():
    # the package data exists, its run.json is the preset the code builds today, every hash verifies
    assert has_embedded("default")
    s = embedded_series("default")
    assert len(s) >= 10 and s.steps[0] == 0
    run = json.loads((embedded_folder("default") / "run.json").read_text())
    assert config_hash(run["identity"]["config"]) == preset_config_hash("default")
    size = sum(f.stat().st_size for f in embedded_folder("default").rglob("*") if f.is_file())
    assert size <= 40e6
    # nothing but what is needed: no optimiser state, tokenizer in every checkpoint folder
    for cp in s:
        folder = s.local_path(cp)
        assert not (folder / "trainer_state.pt").exists()
        assert (folder / "tokenizer.json").is_file() and (folder / "config.json").is_file()


def test_setup_cfg_ships_the_embedded_series_as_package_data():
    import configparser
    from fnmatch import fnmatch
    from pathlib import Path

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[2] / "setup.cfg")
    pats = [p.strip() for p in cfg["options.package_data"]["checkpoints"].split("\n") if p.strip()]
    root = embedded_folder("default").parents[1]  # the checkpoints package
    files = [f.relative_to(root).as_posix() for f in embedded_folder("default").rglob("*") if f.is_file()]
    missing = [f for f in files if not any(fnmatch(f, p) for p in pats)]
    assert files and not missing, missing


@pytest.fixture
def shipped(tiny_series, tmp_path, monkeypatch):
    """The tiny series exported as if it were embedded (in a temporary DATA_DIR)."""
    monkeypatch.setattr(embedded, "DATA_DIR", tmp_path / "data")
    steps = json.loads((tiny_series / "series.json").read_text())["checkpoints"]
    keep = [steps[0]["step"], steps[-1]["step"]]
    export_series(tiny_series, embedded_folder("tiny"), keep)
    return embedded_folder("tiny")


def test_export_keeps_chosen_steps_hashes_and_no_optimiser_state(shipped, tiny_series):
    s = embedded_series("tiny")
    src = json.loads((tiny_series / "series.json").read_text())["checkpoints"]
    assert s.steps == [src[0]["step"], src[-1]["step"]]
    assert [c.sha256 for c in s] == [src[0]["sha256"], src[-1]["sha256"]]  # same weights as trained
    assert not list(shipped.rglob("trainer_state.pt"))


def test_a_changed_weight_byte_is_named_with_what_to_do(shipped):
    f = shipped / "step_0" / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(EmbeddedSeriesError, match=r"step 0.*differs.*What to do: reinstall.*ablate demo --train"):
        embedded_series("tiny")


def test_a_stale_series_after_a_preset_change_is_refused(shipped, monkeypatch):
    from checkpoints import presets

    monkeypatch.setitem(presets.PRESETS, "tiny", presets.get_preset("tiny", steps=31))
    with pytest.raises(EmbeddedSeriesError, match="config hash .* now has .*Re-export"):
        embedded_series("tiny")


def test_a_missing_checkpoint_is_refused(shipped):
    shutil.rmtree(shipped / "step_0")
    with pytest.raises(EmbeddedSeriesError, match="damaged.*step 0"):
        embedded_series("tiny")


def test_the_default_demo_uses_the_embedded_series_and_trains_nothing(tmp_path, monkeypatch):
    from experiments import demo

    def no_training(*a, **k):
        raise AssertionError("the default demo must not train")

    seen = {}
    monkeypatch.setattr(demo, "train_or_reuse", no_training)
    monkeypatch.setattr(demo, "_part_a", lambda cfg, series, run, timer, progress: seen.setdefault("series", series))
    monkeypatch.setattr("experiments.report.write_report", lambda out, cfg, t: out / "report.md")
    monkeypatch.setenv("SIH_ABLATE_CACHE", str(tmp_path / "cache"))
    demo.run_demo(tmp_path / "demo", "default", progress=False, skip_pretrained=True)
    assert seen["series"] == embedded_folder("default")
    timings = json.loads((tmp_path / "demo" / "demo_timings.json").read_text())
    assert "A1 verify the embedded 'default' series" in timings
