"""Exceptions raised by the toolkit.

Every error says *what* was wrong, *where* (which argument, file, layer, step) and *how to fix it*.
They all derive from :class:`AblateError` so callers can catch the toolkit's errors in one place.
"""

from __future__ import annotations


class AblateError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class UnknownArchitectureError(AblateError):
    """The model's family has no architecture adapter."""


class HeadIndexError(AblateError, IndexError):
    """A (layer, head) pair is outside the model."""


class PositionError(AblateError, IndexError):
    """An intervention names a position outside the sequence."""


class ModelLoadError(AblateError):
    """A model could not be loaded (missing folder, hub unreachable, bad GGUF file)."""


class InterventionError(AblateError):
    """An intervention is missing what it needs (reference batch, source batch, ...)."""


class NumericalError(AblateError):
    """The model produced NaN or infinite values."""


class RunFolderError(AblateError):
    """A run folder cannot be used as asked (not the toolkit's, locked by another writer, unwritable)."""


class RunLockedError(RunFolderError):
    """Another process is writing the run folder (its lock names the holder)."""
