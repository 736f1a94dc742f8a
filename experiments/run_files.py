"""Crash-safe files of a run folder, shared by ``ablate scan``, ``ablate icl`` and the runner, and
the one reader of a local checkpoint-series folder those commands use.

A file is written to a temporary name in the same folder, flushed to disk and moved into place with
``os.replace``: readers see the old file or the whole new one, never a partial file, whatever
moment the process is killed at.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from ablate.model.errors import AblateError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` to ``path`` as Parquet atomically (temp file, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    df.to_parquet(tmp, index=False)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def check_run_config(path: Path, config: dict, what: str, error: type[AblateError] = AblateError) -> None:
    """Record ``config`` at ``path``, or refuse to resume a run folder made with other settings.

    Raises:
        error: ``path`` holds a different config (the message lists each differing key, old and new).
    """
    path = Path(path)
    if path.is_file():
        old = json.loads(path.read_text())
        if old != config:
            diff = {k: (old.get(k), config.get(k)) for k in sorted(set(old) | set(config)) if old.get(k) != config.get(k)}
            raise error(f"{path.parent} holds {what} with other settings {diff} (old, new); resume with the "
                        "same settings or choose another --out folder")
        return
    atomic_write_bytes(path, json.dumps(config, indent=1, sort_keys=True).encode())


def local_series(folder, error: type[Exception] = AblateError) -> list[tuple[int, int | None, Path]]:
    """``(step, tokens_seen, path)`` of every checkpoint in a local series folder, sorted by step
    (``series.json`` or ``step_N`` / ``checkpoint-N`` sub-folders; see
    :class:`checkpoints.series.CheckpointSeries`).

    Raises:
        error: the folder does not exist, cannot be read as a series, or holds no checkpoints.
    """
    from checkpoints.series import CheckpointSeries

    root = Path(folder)
    if not root.is_dir():
        raise error(f"series folder not found: {root}")
    try:
        s = CheckpointSeries.from_local(root)
    except Exception as e:
        raise error(f"could not read the checkpoint series in {root}: {e}") from e
    if len(s) == 0:
        raise error(f"no checkpoints in {root}: expected series.json or step_N sub-folders")
    return [(cp.step, cp.tokens_seen, Path(s.local_path(cp))) for cp in s]
