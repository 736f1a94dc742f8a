"""The checkpoint series shipped inside the package (the ``default`` preset, trained once).

Like a public suite, everyone gets the same checkpoints: ``ablate demo`` reads them from
``checkpoints/data/<preset>_series/`` and trains nothing (``ablate demo --train`` trains instead).

Layout of an embedded series folder::

    series.json          the manifest (step, tokens_seen, relative path, sha256 of the weights, losses)
    run.json             the trainer's run identity (config, corpus, torch threads)
    step_N/              config.json, model.safetensors (fp32, as trained), tokenizer files

Before use, :func:`embedded_series` checks that (1) the folder's ``run.json`` holds the config the
preset builds today (the same config hash ``ablate train --preset default`` runs under), and (2) every
checkpoint's weights match the sha256 recorded in ``series.json``. Either failure raises
:class:`EmbeddedSeriesError` with what to do (reinstall, or train the series yourself).

:func:`export_series` makes such a folder from a trainer output folder (``ablate train --out RUN``),
keeping a chosen subset of steps and no optimiser state.

Usage::

    python -m checkpoints.embedded export RUN [--steps 0,10,100,...]   # maintainer: refresh the shipped copy
    python -m checkpoints.embedded verify                              # anyone: check the shipped copy
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from checkpoints.series import CheckpointError, CheckpointSeries, hash_checkpoint

__all__ = ["DATA_DIR", "EmbeddedSeriesError", "embedded_folder", "has_embedded", "embedded_series",
           "export_series", "config_hash", "preset_config_hash"]

#: Where embedded series live inside the installed package.
DATA_DIR = Path(__file__).resolve().parent / "data"

#: Files of a trainer checkpoint folder that are shipped (weights, model config, tokenizer).
_KEEP = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
         "tokenizer_config.json", "special_tokens_map.json")


class EmbeddedSeriesError(CheckpointError):
    """The embedded series is missing, stale (another config) or damaged (hash mismatch)."""


def embedded_folder(preset: str) -> Path:
    """The folder an embedded series of ``preset`` would live in (it may not exist)."""
    return DATA_DIR / f"{preset}_series"


def has_embedded(preset: str) -> bool:
    """Whether the package ships a series for ``preset``."""
    return (embedded_folder(preset) / "series.json").is_file()


def config_hash(config: dict) -> str:
    """The 12-hex config hash (the demo's series cache key) of a ``TrainConfig.to_dict()``."""
    import hashlib

    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def preset_config_hash(preset: str) -> str:
    """:func:`config_hash` of the preset as the code builds it today.

    The corpus is not part of it: the offline corpus's description depends on whether the
    optional ``fortune`` files are installed, which does not change the shipped weights.
    """
    from checkpoints.presets import get_preset

    return config_hash(json.loads(json.dumps(get_preset(preset).to_dict())))


def _fix_hint(preset: str) -> str:
    return ("What to do: reinstall the package from a clean clone (pip install --force-reinstall .), or "
            "run `ablate demo --train` to train the series yourself (~15 min on 1 thread; "
            f"`ablate train --preset {preset} --threads 1 --out RUN` trains the same series into RUN).")


def embedded_series(preset: str = "default", check_hashes: bool = True) -> CheckpointSeries:
    """The embedded series of ``preset``, checked against the preset's config and its hashes.

    Args:
        preset: Preset name.
        check_hashes: Recompute every checkpoint's sha256 and compare with ``series.json``
            (about 20 ms per checkpoint here).

    Raises:
        EmbeddedSeriesError: No embedded series; ``run.json`` differs from the preset's identity;
            a checkpoint is missing, unreadable or its weights differ from the recorded hash.
    """
    folder = embedded_folder(preset)
    if not has_embedded(preset):
        raise EmbeddedSeriesError(f"the package ships no series for preset {preset!r} ({folder} has no "
                                  f"series.json). {_fix_hint(preset)}")
    try:
        run = json.loads((folder / "run.json").read_text())
        shipped = config_hash(run["identity"]["config"])
    except (OSError, ValueError, KeyError) as exc:
        raise EmbeddedSeriesError(f"embedded series {folder}: run.json is missing or unreadable ({exc}). "
                                  f"{_fix_hint(preset)}") from exc
    want = preset_config_hash(preset)
    if shipped != want:
        raise EmbeddedSeriesError(
            f"embedded series {folder} was trained with config hash {shipped}, but the {preset!r} preset "
            f"now has {want}: the preset changed after the series was exported. Re-export it "
            f"(python -m checkpoints.embedded export RUN) or train with `ablate demo --train`.")
    try:
        series = CheckpointSeries.from_local(folder)
        if check_hashes:
            series = series.verify()
    except CheckpointError as exc:
        raise EmbeddedSeriesError(f"embedded series {folder} is damaged: {exc} {_fix_hint(preset)}") from exc
    if any(c.sha256 is None for c in series):
        raise EmbeddedSeriesError(f"embedded series {folder}: series.json lacks a sha256 for some steps. "
                                  f"{_fix_hint(preset)}")
    return series


def export_series(run_dir: str | os.PathLike, dest: str | os.PathLike, steps: list[int] | None = None) -> Path:
    """Copy a trainer output folder's checkpoints (weights, config, tokenizer) into ``dest``.

    Args:
        run_dir: A folder written by :func:`checkpoints.trainer.train` (with ``run.json``).
        dest: Target folder (replaced).
        steps: Steps to keep (default: all).

    Returns:
        ``dest``.

    Raises:
        CheckpointError: The run folder is not a series, a step is missing, or a copied
            checkpoint's hash differs from the run's manifest.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    series = CheckpointSeries.from_local(run_dir)
    if steps is not None:
        series = series.select(steps)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(run_dir / "run.json", tmp / "run.json")
    from checkpoints.series import Checkpoint

    out = []
    for c in series:
        src = series.local_path(c)
        sub = tmp / f"step_{c.step}"
        sub.mkdir()
        for name in _KEEP:
            if (src / name).is_file():
                shutil.copy2(src / name, sub / name)
        h = hash_checkpoint(sub, c.step)
        if c.sha256 is not None and h != c.sha256:
            raise CheckpointError(f"export: step {c.step} copied with hash {h[:12]}..., the run says {c.sha256[:12]}...")
        out.append(Checkpoint(c.step, c.tokens_seen, str(sub), h, c.extra))
    CheckpointSeries(out, root=tmp, source=f"local:{tmp}").save_manifest(tmp)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def main(argv=None) -> None:
    """CLI: ``python -m checkpoints.embedded {export RUN [--steps ...] [--preset P] | verify [--preset P]}``."""
    import argparse

    ap = argparse.ArgumentParser(description="Export or verify the embedded checkpoint series.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("run")
    e.add_argument("--steps", default=None)
    e.add_argument("--preset", default="default")
    v = sub.add_parser("verify")
    v.add_argument("--preset", default="default")
    a = ap.parse_args(argv)
    if a.cmd == "export":
        steps = [int(s) for s in a.steps.split(",")] if a.steps else None
        path = export_series(a.run, embedded_folder(a.preset), steps)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        print(f"exported {path} ({size / 1e6:.1f} MB)")
    try:
        s = embedded_series(a.preset)
    except EmbeddedSeriesError as exc:
        raise SystemExit(f"error: {exc}")
    print(f"{embedded_folder(a.preset)}: {len(s)} checkpoints, steps {s.steps}, hashes match, "
          f"config hash {preset_config_hash(a.preset)}")


if __name__ == "__main__":
    main()
