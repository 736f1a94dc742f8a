"""Checkpoint series: an ordered list of (step, tokens_seen, locator, content hash).

Sources:

* a **local folder** of Hugging Face checkpoint folders, described by a ``series.json``
  manifest (written by the built-in trainer, or by :meth:`CheckpointSeries.save_manifest`), or
  discovered from sub-folder names ``step_N``, ``step-N``, ``stepN`` or ``checkpoint-N``;
* a **hub repository with revisions** (Pythia publishes ``step{N}`` branches), through
  ``huggingface_hub``: revisions are listed with ``HfApi.list_repo_refs`` (or, offline, from the
  local hub cache) and fetched with ``snapshot_download``.

Content hash: SHA-256 over the bytes of the checkpoint's weight files (``*.safetensors``, or
``pytorch_model*.bin`` when a revision has no safetensors), in sorted file-name order. For the
small models this toolkit trains (about 1 MB) hashing costs milliseconds; for a 1B-parameter
model about 2-4 s per checkpoint (SHA-256 runs at roughly 1-2 GB/s), done once and cached in
the manifest. Two checkpoints with the same hash hold the same weights: a known defect of some
public suites, reported by :meth:`CheckpointSeries.duplicates`.

Manifest format (``series.json``)::

    {"format": "checkpoint-series/1",
     "checkpoints": [{"step": 0, "tokens_seen": 0, "path": "step_0",
                      "sha256": "...", "loss": null, ...}, ...]}

``path`` is relative to the manifest's folder. Extra keys per entry (``loss``, ``eval_loss``)
are kept in :attr:`Checkpoint.extra`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

__all__ = [
    "Checkpoint",
    "CheckpointSeries",
    "CheckpointError",
    "CheckpointNotFoundError",
    "CorruptCheckpointError",
    "DuplicateWeightsWarning",
    "weights_files",
    "hash_checkpoint",
    "MANIFEST_NAME",
]

MANIFEST_NAME = "series.json"
MANIFEST_FORMAT = "checkpoint-series/1"
_DIR_PATTERNS = (re.compile(r"^step[_-]?(\d+)$"), re.compile(r"^checkpoint-(\d+)$"))


class CheckpointError(RuntimeError):
    """Base class of checkpoint-series errors."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint listed in a series (or requested) does not exist."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint's files are unreadable or do not match the recorded hash."""


class DuplicateWeightsWarning(UserWarning):
    """Two or more steps of a series hold byte-identical weights."""


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint of a series.

    Attributes:
        step: Optimiser step.
        tokens_seen: Training tokens seen at this step (``None`` if unknown).
        locator: Local folder path, or ``"hub:REPO@REVISION"`` for a not-yet-downloaded revision.
        sha256: Content hash of the weight files (``None`` until computed).
        extra: Other manifest fields (``loss``, ``eval_loss``, ...).
    """

    step: int
    tokens_seen: int | None
    locator: str
    sha256: str | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_local(self) -> bool:
        """Whether :attr:`locator` is a local folder."""
        return not self.locator.startswith("hub:")


def weights_files(folder: str | os.PathLike, step: int | None = None) -> list[Path]:
    """The weight files of a checkpoint folder (safetensors preferred), sorted by name.

    Args:
        folder: A Hugging Face checkpoint folder.
        step: The step, only used in error messages.

    Raises:
        CheckpointNotFoundError: The folder is missing or holds no weight files.
    """
    folder = Path(folder)
    where = f"checkpoint at step {step} ({folder})" if step is not None else f"checkpoint {folder}"
    if not folder.is_dir():
        raise CheckpointNotFoundError(
            f"{where} is missing: the folder does not exist. Re-create it (re-run the trainer "
            "with the same command to resume) or drop this step from the series (series.select)."
        )
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise CheckpointNotFoundError(
            f"{where} has no weight files (*.safetensors or pytorch_model*.bin); the save was "
            "probably interrupted. Delete the folder and re-run the trainer to resume."
        )
    return files


def hash_checkpoint(folder: str | os.PathLike, step: int | None = None) -> str:
    """SHA-256 of the weight files' bytes, concatenated in sorted file-name order.

    Args:
        folder: Checkpoint folder.
        step: Used in error messages.

    Returns:
        The hex digest.
    """
    h = hashlib.sha256()
    for f in weights_files(folder, step):
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def _hash_cache_path() -> Path:
    """The size+mtime cache of checkpoint hashes (outside the series folder, which is never written)."""
    return Path(os.environ.get("SIH_ABLATE_CACHE", Path.home() / ".cache" / "sih-ablate")) / "checkpoint-hashes.json"


def _signature(files: list[Path]) -> list:
    out = []
    for f in files:
        st = f.stat()
        out.append([f.name, st.st_size, st.st_mtime_ns])
    return out


def cached_hash(folder: str | os.PathLike, step: int | None = None, files: list[Path] | None = None) -> str:
    """:func:`hash_checkpoint` with a fast path: reused while every weight file keeps its size and
    mtime (cached in ``$SIH_ABLATE_CACHE/checkpoint-hashes.json``), recomputed in full otherwise.
    ``files``: hash these files instead of the folder's weight files (e.g. a ``.gguf``)."""
    folder = Path(folder)
    explicit = files is not None
    files = list(files) if explicit else weights_files(folder, step)
    sig = _signature(files)
    key = str(folder.resolve()) + ("|" + ",".join(f.name for f in files) if explicit else "")
    path = _hash_cache_path()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    hit = cache.get(key)
    if isinstance(hit, dict) and hit.get("sig") == sig and isinstance(hit.get("sha256"), str):
        return hit["sha256"]
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    digest = h.hexdigest()
    cache[key] = {"sig": sig, "sha256": digest}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_json(path, cache, unique=True)
    except OSError:
        pass  # a read-only cache only costs the fast path
    return digest


def _validate_safetensors(folder: Path, step: int) -> None:
    from safetensors import safe_open

    for f in weights_files(folder, step):
        if f.suffix != ".safetensors":
            continue
        try:
            with safe_open(str(f), framework="pt") as st:
                keys = list(st.keys())
        except Exception as exc:
            raise CorruptCheckpointError(
                f"checkpoint at step {step}: {f} is not a readable safetensors file ({exc}). "
                "Delete the checkpoint folder and re-run the trainer (it resumes), or re-download."
            ) from exc
        if not keys:
            raise CorruptCheckpointError(f"checkpoint at step {step}: {f} holds no tensors")


def _atomic_write_json(path: Path, obj, unique: bool = False) -> None:
    tmp = path.with_name(path.name + (f".tmp{os.getpid()}" if unique else ".tmp"))
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class CheckpointSeries(Sequence[Checkpoint]):
    """An ordered, immutable series of checkpoints (sorted by step, steps unique).

    Build one with :meth:`from_local`, :meth:`from_hub` or :meth:`from_revision_folder`; take
    subsets with :meth:`select`, :meth:`every` and :meth:`log_spaced`.

    Args:
        checkpoints: The checkpoints (any order).
        root: Folder relative to which manifest paths are written.
        source: Human-readable description of where the series came from.

    Raises:
        ValueError: Two checkpoints share a step.
    """

    def __init__(self, checkpoints: Iterable[Checkpoint], root: str | os.PathLike | None = None,
                 source: str = "") -> None:
        cps = sorted(checkpoints, key=lambda c: c.step)
        steps = [c.step for c in cps]
        if len(set(steps)) != len(steps):
            dup = sorted({s for s in steps if steps.count(s) > 1})
            raise ValueError(f"CheckpointSeries: steps {dup} appear more than once")
        self._cps: tuple[Checkpoint, ...] = tuple(cps)
        self.root = Path(root) if root is not None else None
        self.source = source
        self._fetch = None  # callable(Checkpoint) -> local folder, for hub series

    # -- Sequence protocol ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._cps)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return self._derive(self._cps[i])
        return self._cps[i]

    def __iter__(self) -> Iterator[Checkpoint]:
        return iter(self._cps)

    def __repr__(self) -> str:
        return f"CheckpointSeries({len(self)} checkpoints, steps {self.steps[:3]}...{self.steps[-2:]}, source={self.source!r})"

    @property
    def steps(self) -> list[int]:
        """The steps, ascending."""
        return [c.step for c in self._cps]

    def _derive(self, cps: Iterable[Checkpoint]) -> "CheckpointSeries":
        s = CheckpointSeries(cps, root=self.root, source=self.source)
        s._fetch = self._fetch
        return s

    def by_step(self, step: int) -> Checkpoint:
        """The checkpoint at ``step``.

        Raises:
            CheckpointNotFoundError: No checkpoint at that step (message lists nearby steps).
        """
        for c in self._cps:
            if c.step == step:
                return c
        near = sorted(self.steps, key=lambda s: abs(s - step))[:3]
        raise CheckpointNotFoundError(
            f"no checkpoint at step {step} in {self.source or 'this series'}; nearest steps: {sorted(near)}"
        )

    # -- subsets --------------------------------------------------------------------------
    def select(self, steps: Iterable[int]) -> "CheckpointSeries":
        """The checkpoints at exactly these steps.

        Raises:
            CheckpointNotFoundError: A requested step is not in the series.
        """
        return self._derive(self.by_step(int(s)) for s in dict.fromkeys(steps))

    def every(self, n: int, include_last: bool = True) -> "CheckpointSeries":
        """Every ``n``-th checkpoint (0, n, 2n, ...), plus the last one if ``include_last``.

        Raises:
            ValueError: ``n < 1``.
        """
        if n < 1:
            raise ValueError(f"CheckpointSeries.every: n must be >= 1, got {n}")
        idx = list(range(0, len(self), n))
        if include_last and len(self) and idx[-1] != len(self) - 1:
            idx.append(len(self) - 1)
        return self._derive(self._cps[i] for i in idx)

    def log_spaced(self, k: int) -> "CheckpointSeries":
        """About ``k`` checkpoints whose steps are closest to log-spaced targets.

        Targets are ``k`` points evenly spaced in ``log(step)`` between the smallest positive
        step and the largest; step 0 (if present) is always kept as the first checkpoint. Each
        target takes the nearest unused checkpoint, so the result has ``min(k, len)`` entries.

        Raises:
            ValueError: ``k < 1``.
        """
        if k < 1:
            raise ValueError(f"CheckpointSeries.log_spaced: k must be >= 1, got {k}")
        if k >= len(self):
            return self._derive(self._cps)
        chosen: list[Checkpoint] = []
        pos = [c for c in self._cps if c.step > 0]
        if len(pos) < len(self):
            chosen.append(self._cps[0])
        m = k - len(chosen)
        if m > 0 and pos:
            lo, hi = math.log(pos[0].step), math.log(pos[-1].step)
            targets = [lo + (hi - lo) * i / max(m - 1, 1) for i in range(m)] if m > 1 else [hi]
            free = list(pos)
            for t in targets:
                best = min(free, key=lambda c: abs(math.log(c.step) - t))
                chosen.append(best)
                free.remove(best)
        return self._derive(chosen)

    # -- local folders --------------------------------------------------------------------
    @classmethod
    def from_local(cls, folder: str | os.PathLike, verify: bool = False) -> "CheckpointSeries":
        """Read a local series: ``series.json`` if present, else ``step_N``/``checkpoint-N`` folders.

        Args:
            folder: The series folder.
            verify: Also check every listed checkpoint exists, is readable safetensors and
                matches its recorded hash (see :meth:`verify`).

        Raises:
            CheckpointNotFoundError: The folder does not exist, holds no checkpoints, or (with
                ``verify``) a listed checkpoint is missing.
            CorruptCheckpointError: Malformed manifest, or (with ``verify``) a hash mismatch.
        """
        root = Path(folder)
        if not root.is_dir():
            raise CheckpointNotFoundError(f"series folder {root} does not exist")
        manifest = root / MANIFEST_NAME
        if manifest.is_file():
            series = cls._from_manifest(manifest)
        else:
            cps = []
            for sub in sorted(root.iterdir()):
                if not sub.is_dir():
                    continue
                for pat in _DIR_PATTERNS:
                    m = pat.match(sub.name)
                    if m:
                        cps.append(Checkpoint(step=int(m.group(1)), tokens_seen=None, locator=str(sub)))
                        break
            if not cps:
                raise CheckpointNotFoundError(
                    f"{root} has no {MANIFEST_NAME} and no sub-folders named step_N or checkpoint-N; "
                    "point at a series folder (e.g. the --out folder of `ablate train`)"
                )
            series = cls(cps, root=root, source=f"local:{root}")
        if verify:
            series.verify()
        return series

    @classmethod
    def _from_manifest(cls, manifest: Path) -> "CheckpointSeries":
        try:
            data = json.loads(manifest.read_text())
            entries = data["checkpoints"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CorruptCheckpointError(
                f"{manifest} is not a valid series manifest ({exc}); expected "
                '{"format": "checkpoint-series/1", "checkpoints": [{"step": ..., "path": ...}]}'
            ) from exc
        root = manifest.parent
        cps = []
        for i, e in enumerate(entries):
            if "step" not in e or "path" not in e:
                raise CorruptCheckpointError(f"{manifest}: entry {i} lacks 'step' or 'path': {e}")
            path = Path(e["path"])
            loc = str(path if path.is_absolute() else root / path)
            extra = {k: v for k, v in e.items() if k not in ("step", "tokens_seen", "path", "sha256")}
            cps.append(Checkpoint(int(e["step"]), e.get("tokens_seen"), loc, e.get("sha256"), extra))
        return cls(cps, root=root, source=f"local:{root}")

    def manifest_dict(self) -> dict:
        """The manifest as a dict (paths relative to :attr:`root` where possible)."""
        entries = []
        for c in self._cps:
            path = c.locator
            if self.root is not None and c.is_local:
                try:
                    path = os.path.relpath(c.locator, self.root)
                except ValueError:
                    pass
            entries.append({"step": c.step, "tokens_seen": c.tokens_seen, "path": path,
                            "sha256": c.sha256, **c.extra})
        return {"format": MANIFEST_FORMAT, "checkpoints": entries}

    def save_manifest(self, folder: str | os.PathLike | None = None) -> Path:
        """Write ``series.json`` atomically (to ``folder`` or :attr:`root`).

        Raises:
            ValueError: No folder given and the series has no root.
        """
        target = Path(folder) if folder is not None else self.root
        if target is None:
            raise ValueError("save_manifest: pass a folder (this series has no root)")
        if folder is not None:
            self.root = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        path = target / MANIFEST_NAME
        _atomic_write_json(path, self.manifest_dict())
        return path

    # -- integrity ------------------------------------------------------------------------
    def local_path(self, cp: Checkpoint) -> Path:
        """The local folder of a checkpoint, downloading a hub revision if needed."""
        if cp.is_local:
            return Path(cp.locator)
        if self._fetch is None:
            raise CheckpointError(f"checkpoint at step {cp.step}: {cp.locator} has no fetcher")
        return Path(self._fetch(cp))

    def with_hashes(self) -> "CheckpointSeries":
        """A copy with every missing hash computed (checkpoints must be present).

        Raises:
            CheckpointNotFoundError: A checkpoint is missing (names the step).
        """
        out = []
        for c in self._cps:
            if c.sha256 is None:
                c = replace(c, sha256=hash_checkpoint(self.local_path(c), c.step), extra=c.extra)
            out.append(c)
        return self._derive(out)

    def verify(self, check_hashes: bool = True) -> "CheckpointSeries":
        """Check every checkpoint exists, is readable and (if recorded) matches its hash.

        Returns:
            The series with all hashes filled in; duplicates are reported as a
            :class:`DuplicateWeightsWarning`.

        Raises:
            CheckpointNotFoundError: A checkpoint folder or its weights are missing.
            CorruptCheckpointError: Unreadable safetensors, or hash differs from the manifest.
        """
        out = []
        for c in self._cps:
            folder = self.local_path(c)
            _validate_safetensors(folder, c.step)
            if check_hashes:
                h = hash_checkpoint(folder, c.step)
                if c.sha256 is not None and c.sha256 != h:
                    raise CorruptCheckpointError(
                        f"checkpoint at step {c.step} ({folder}): weights hash {h[:12]}... differs "
                        f"from the manifest's {c.sha256[:12]}...; the files changed or are "
                        "truncated. Re-create the checkpoint or re-download it."
                    )
                c = replace(c, sha256=h, extra=c.extra)
            out.append(c)
        series = self._derive(out)
        dups = series.duplicates()
        if dups:
            warnings.warn(series.duplicate_report(), DuplicateWeightsWarning, stacklevel=2)
        return series

    def verified_hashes(self) -> dict[int, str]:
        """Every checkpoint's content hash, checked against the manifest's ``sha256`` values.

        Fast path: a checkpoint whose weight files keep their size and mtime reuses its cached hash
        (:func:`cached_hash`); otherwise it is hashed in full. A checkpoint without a recorded hash
        gets the computed one.

        Raises:
            CheckpointNotFoundError: a checkpoint folder or its weight files are missing.
            CorruptCheckpointError: a checkpoint's weights differ from its recorded hash (names it).
        """
        out = {}
        for c in self._cps:
            folder = self.local_path(c)
            h = cached_hash(folder, c.step)
            if c.sha256 is not None and c.sha256 != h:
                where = self.root / MANIFEST_NAME if self.root is not None else "the series manifest"
                raise CorruptCheckpointError(
                    f"checkpoint at step {c.step} ({folder}): its weights hash to {h[:12]}... but {where} "
                    f"records {c.sha256[:12]}...; the files changed, are truncated or belong to another "
                    "training run. Re-create the checkpoint (re-run the trainer, which resumes), re-download "
                    "it, or, if the new weights are intended, rewrite series.json (CheckpointSeries."
                    "with_hashes().save_manifest())")
            out[c.step] = h
        return out

    def duplicates(self) -> list[list[int]]:
        """Groups of steps (each of size >= 2) whose weights have the same hash.

        Hashes must be known: call :meth:`with_hashes` or :meth:`verify` first (unhashed
        checkpoints are hashed here if local).
        """
        groups: dict[str, list[int]] = {}
        for c in self.with_hashes():
            groups.setdefault(c.sha256, []).append(c.step)  # type: ignore[arg-type]
        return [g for g in groups.values() if len(g) > 1]

    def duplicate_report(self) -> str:
        """A readable sentence listing duplicate groups ("" when none)."""
        dups = self.duplicates()
        if not dups:
            return ""
        parts = [", ".join(f"step {s}" for s in g) for g in dups]
        return ("identical weights under different steps (same SHA-256): " + "; ".join(parts)
                + ". Treat them as one checkpoint (e.g. series.select(...)) so curves are not "
                "double-counted.")

    def drop_duplicates(self) -> "CheckpointSeries":
        """Keep only the first step of every duplicate group."""
        drop = {s for g in self.duplicates() for s in g[1:]}
        return self._derive(c for c in self.with_hashes() if c.step not in drop)

    # -- hub repositories -----------------------------------------------------------------
    @classmethod
    def from_hub(
        cls,
        repo_id: str,
        revisions: Sequence[str] | None = None,
        steps: Sequence[int] | None = None,
        revision_format: str = "step{step}",
        tokens_per_step: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool | None = None,
        allow_patterns: Sequence[str] = ("*.json", "*.safetensors", "*.model", "*.txt", "pytorch_model*.bin"),
    ) -> "CheckpointSeries":
        """A series of revisions of one hub repository (e.g. ``EleutherAI/pythia-70m``).

        Revisions are, in order of precedence: ``revisions`` (explicit names, step parsed with
        ``revision_format``), ``steps`` (names built with ``revision_format``), or every branch
        of the repo whose name matches ``revision_format`` — listed with
        ``HfApi.list_repo_refs`` online, or from the local hub cache's refs when offline
        (``HF_HUB_OFFLINE=1`` or ``local_files_only=True``). Weights are downloaded lazily
        (``snapshot_download``) when a checkpoint is first used.

        Args:
            repo_id: Hub repository id.
            revisions: Explicit revision names.
            steps: Steps to build revision names from.
            revision_format: Revision name pattern with a ``{step}`` field (Pythia: ``step{step}``).
            tokens_per_step: Multiply steps by this for ``tokens_seen`` (Pythia: 2,097,152).
            cache_dir: Hub cache folder (default: the huggingface_hub default).
            local_files_only: Never touch the network (default: ``HF_HUB_OFFLINE``).
            allow_patterns: Files to download per revision.

        Raises:
            CheckpointNotFoundError: No matching revisions, or a revision is not available.
            ValueError: ``revision_format`` lacks ``{step}``.
        """
        if "{step}" not in revision_format:
            raise ValueError(f"from_hub: revision_format must contain '{{step}}', got {revision_format!r}")
        rx = re.compile("^" + re.escape(revision_format).replace(re.escape("{step}"), r"(\d+)") + "$")
        if local_files_only is None:
            local_files_only = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        if revisions is None and steps is not None:
            revisions = [revision_format.format(step=int(s)) for s in steps]
        if revisions is None:
            revisions = cls._list_hub_revisions(repo_id, cache_dir, local_files_only)
            revisions = [r for r in revisions if rx.match(r)]
            if not revisions:
                raise CheckpointNotFoundError(
                    f"hub repo {repo_id!r}: no revision matches {revision_format!r}; pass "
                    "revisions=[...] explicitly or a different revision_format"
                )
        cps = []
        for rev in revisions:
            m = rx.match(rev)
            if not m:
                raise ValueError(f"from_hub: revision {rev!r} does not match {revision_format!r}")
            step = int(m.group(1))
            tokens = step * tokens_per_step if tokens_per_step is not None else None
            cps.append(Checkpoint(step, tokens, f"hub:{repo_id}@{rev}"))
        series = cls(cps, source=f"hub:{repo_id}")

        def fetch(cp: Checkpoint) -> str:
            from huggingface_hub import snapshot_download

            repo, rev = cp.locator[4:].rsplit("@", 1)
            try:
                return snapshot_download(repo, revision=rev, cache_dir=cache_dir,
                                         local_files_only=local_files_only,
                                         allow_patterns=list(allow_patterns))
            except Exception as exc:
                raise CheckpointNotFoundError(
                    f"checkpoint at step {cp.step}: revision {rev!r} of {repo!r} is not available "
                    f"({type(exc).__name__}: {exc}). Check the revision name, network access, or "
                    "pre-download it with `huggingface-cli download --revision`."
                ) from exc

        series._fetch = fetch
        return series

    @staticmethod
    def _list_hub_revisions(repo_id: str, cache_dir, local_files_only: bool) -> list[str]:
        if not local_files_only:
            from huggingface_hub import HfApi

            refs = HfApi().list_repo_refs(repo_id)
            return [b.name for b in refs.branches]
        from huggingface_hub import scan_cache_dir

        try:
            info = scan_cache_dir(cache_dir)
        except Exception as exc:
            raise CheckpointNotFoundError(
                f"hub repo {repo_id!r}: offline and the hub cache {cache_dir or '(default)'} "
                f"cannot be read ({exc})"
            ) from exc
        for repo in info.repos:
            if repo.repo_id == repo_id:
                return sorted(repo.refs)
        raise CheckpointNotFoundError(
            f"hub repo {repo_id!r} is not in the local hub cache {cache_dir or '(default)'} and the "
            "hub is offline; download it first or pass local_files_only=False"
        )

    @classmethod
    def from_revision_folder(cls, folder: str | os.PathLike, revision_format: str = "step{step}",
                             tokens_per_step: int | None = None) -> "CheckpointSeries":
        """A series from a folder with one sub-folder per revision (``<folder>/step1000/...``).

        This mirrors a hub repo's revision layout after ``snapshot_download`` of each branch
        into its own folder (the layout ``huggingface-cli download --local-dir X/step1000``
        produces).

        Raises:
            CheckpointNotFoundError: No sub-folder matches ``revision_format``.
        """
        root = Path(folder)
        rx = re.compile("^" + re.escape(revision_format).replace(re.escape("{step}"), r"(\d+)") + "$")
        cps = []
        if root.is_dir():
            for sub in sorted(root.iterdir()):
                m = rx.match(sub.name)
                if sub.is_dir() and m:
                    step = int(m.group(1))
                    cps.append(Checkpoint(step, step * tokens_per_step if tokens_per_step else None, str(sub)))
        if not cps:
            raise CheckpointNotFoundError(f"{root}: no sub-folder matches {revision_format!r}")
        return cls(cps, root=root, source=f"revisions:{root}")
