"""Checkpoint series (local folders, hub revisions), fast sweeps, and the built-in trainer.

Light to import: heavy libraries (torch, transformers) are imported inside the functions that
need them.

Main entry points:
    * :class:`checkpoints.series.CheckpointSeries` — ``from_local``, ``from_hub``, subsets,
      hashes, duplicates.
    * :func:`checkpoints.sweep.sweep` — iterate a series with one model skeleton.
    * :func:`checkpoints.trainer.train` / ``ablate train`` (experiments/commands/train.py); its
      training documents teach the categories of :mod:`ablate.icl.wordlists`, the ICL tasks' vocabulary.
    * :mod:`checkpoints.probe` — a small induction / pattern-discovery probe.
"""

from checkpoints.series import (
    Checkpoint,
    CheckpointError,
    CheckpointNotFoundError,
    CheckpointSeries,
    CorruptCheckpointError,
    DuplicateWeightsWarning,
)
from checkpoints.sweep import sweep

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointNotFoundError",
    "CheckpointSeries",
    "CorruptCheckpointError",
    "DuplicateWeightsWarning",
    "sweep",
]
