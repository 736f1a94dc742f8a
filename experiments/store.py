"""The result store: one folder per run.

Layout::

    RUN/manifest.json        spec, spec hash, package versions, git commit, seed, machine, cell grid
    RUN/cells/<key>.parquet  rows of one finished cell (written to a temp file, then os.replace'd)
    RUN/cells/<key>.error.json   the error of a failed cell (removed when it later succeeds)
    RUN/results.parquet      all cells' rows, assembled in cell-key order (+ results.csv)

A cell's file appears atomically or not at all, so a run killed at any moment (kill -9 included)
loses at most the cells in flight, and a re-run computes exactly the missing ones.

Safety of the user's data (README "Your data is safe"):

* **one writer** -- :class:`RunLock` holds an OS-level lock (``filelock``, ``RUN/.ablate.lock``)
  for the whole run and records the holder (pid, host, start time, command) in
  ``RUN/.ablate.lock.json``; a second writer is refused at once with that information. The OS drops
  the lock when its holder dies, so a dead holder's info file is recognised as stale and taken over;
* **only its own folders** -- the toolkit writes into a folder that is new, empty or already a run
  folder (it has ``manifest.json``), and ``--new`` moves an old run aside to ``RUN.old-<time>``
  (:meth:`RunLock.move_aside`) instead of deleting anything;
* **content-keyed cells** -- every cell file carries the fingerprint of its inputs (its spec part and
  the content hashes of the checkpoints it reads) in its Parquet metadata; a cell whose inputs
  changed is recomputed, never reused.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd

from ablate.model.errors import AblateError, RunFolderError, RunLockedError
from experiments.run_files import atomic_write_bytes, atomic_write_parquet, parquet_inputs


class RunMismatchError(AblateError):
    """RUN already holds a run of a different spec."""


MANIFEST = "manifest.json"
LOCK_NAME = ".ablate.lock"
LOCK_INFO = ".ablate.lock.json"
#: what --new does, said once (error messages and README)
NEW_HELP = "pass --new to move the old run aside to {root}.old-<time> (nothing is deleted) and start a new run there"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(root: Path) -> list[str]:
    """Names in ``root`` other than the toolkit's lock files and temp files."""
    return sorted(p.name for p in root.iterdir()
                  if p.name not in (LOCK_NAME, LOCK_INFO) and not (p.name.startswith(".") and ".tmp" in p.name))


def check_folder(root: str | Path, *, new: bool = False) -> None:
    """Refuse a folder the toolkit does not own (read-only check, before anything is written).

    A run may go into a folder that does not exist, is empty, or holds a run (``manifest.json``).
    A folder with other files (a checkpoint series, your own files) is never written into, and never
    moved aside by ``--new``.
    """
    root = Path(root)
    if not root.exists():
        return
    if not root.is_dir():
        raise RunFolderError(f"--out {root} is a file, not a folder; give a folder path for the run")
    if (root / MANIFEST).is_file():
        return
    try:  # a live run of this toolkit is still setting the folder up: its lock refuses us with its pid
        holder = json.loads((root / LOCK_INFO).read_text())
        if isinstance(holder, dict) and _pid_alive(int(holder.get("pid", -1))):
            return
    except (OSError, ValueError, TypeError):
        pass
    names = _leftovers(root)
    if names:
        what = "a checkpoint series" if "series.json" in names or any(n.startswith("step_") for n in names) else "files this toolkit did not write"
        shown = ", ".join(names[:5]) + (f", ... ({len(names)} entries)" if len(names) > 5 else "")
        raise RunFolderError(
            f"{root} is not a run folder of this toolkit (no {MANIFEST}) and holds {what} ({shown}); "
            f"nothing was written or moved{' (--new only moves run folders aside)' if new else ''}. "
            "Give an empty or new --out folder")


class RunLock:
    """The one-writer lock of a run folder (see the module docstring). Use as a context manager."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lock = None
        self.created = False
        #: the info of a dead holder whose lock was taken over (None: none)
        self.took_over: dict | None = None
        #: where :meth:`move_aside` moved the old run (None: not moved)
        self.moved_to: Path | None = None

    @property
    def info_path(self) -> Path:
        return self.root / LOCK_INFO

    def holder(self) -> dict | None:
        try:
            return json.loads(self.info_path.read_text())
        except (OSError, ValueError):
            return None

    def _grab(self):
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.root / LOCK_NAME), timeout=0)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            h = self.holder() or {}
            who = (f"process {h.get('pid', '?')} on {h.get('host', '?')} (started {h.get('started', '?')}, "
                   f"command: {h.get('command', '?')})")
            raise RunLockedError(
                f"{self.root} is being written by {who}; one run folder has one writer at a time. Wait for it "
                f"to finish (`ablate status {self.root}`), stop it (kill {h.get('pid', 'PID')}), or pick "
                "another --out folder") from None
        except OSError as e:
            raise RunFolderError(f"cannot lock the run folder {self.root}: {e}; give a writable --out folder") from e
        return lock

    def acquire(self) -> "RunLock":
        try:
            self.created = not self.root.exists()
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunFolderError(f"cannot create the run folder {self.root}: {e.strerror or e}; give a writable "
                                 "--out folder") from e
        self._lock = self._grab()
        prev = self.holder()
        if prev and prev.get("pid") != os.getpid():
            self.took_over = prev  # the OS lock was free: its holder is gone (stale info)
        self._write_info()
        return self

    def _write_info(self) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "?"}
        try:
            atomic_write_bytes(self.info_path, json.dumps(info, indent=1).encode())
        except OSError as e:
            self.release()
            raise RunFolderError(f"cannot write into the run folder {self.root}: {e.strerror or e}; give a "
                                 "writable --out folder") from e

    def release(self) -> None:
        if self._lock is None:
            return
        try:
            self.info_path.unlink(missing_ok=True)
        except OSError:
            pass
        self._lock.release()
        self._lock = None

    def move_aside(self) -> Path:
        """Move the locked run folder to ``ROOT.old-<time>`` and lock a fresh, empty ``ROOT``."""
        if not (self.root / MANIFEST).is_file():
            raise RunFolderError(f"{self.root} is not a run folder (no {MANIFEST}); --new moves only run folders aside")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.root.with_name(f"{self.root.name}.old-{stamp}")
        i = 1
        while target.exists():
            target = self.root.with_name(f"{self.root.name}.old-{stamp}-{i}")
            i += 1
        old = self._lock
        os.rename(self.root, target)
        try:
            (target / LOCK_INFO).unlink(missing_ok=True)
        except OSError:
            pass
        self.root.mkdir(parents=True)
        self._lock = self._grab()
        old.release()
        self._write_info()
        self.moved_to = target
        return target

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def cell_filename(key: str) -> str:
    safe = "".join(c if c.isalnum() or c in "=-_." else "_" for c in key.replace("/", "__"))
    return safe


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in ("sih-ablate", "torch", "transformers", "nnsight", "numpy", "pandas", "scipy",
              "statsmodels", "spacy", "tokenizers", "pyarrow"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = "absent"
    return out


def git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if r.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=5)
        return r.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except Exception:
        return None


@dataclass
class CellStatus:
    done: list[str]
    pending: list[str]
    failed: dict[str, str]


class RunStore:
    """A run folder. Create with :meth:`open` (which checks the spec hash against an existing run)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.cells_dir = self.root / "cells"

    # ---- lifecycle ---------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path, spec_dict: dict, spec_hash: str, grid: list[str], *,
             new: bool = False, extra: dict | None = None) -> "RunStore":
        """Open ``root`` for this spec: create it, or resume it if the spec hash matches. Call it holding
        the folder's :class:`RunLock`; ``--new`` is :meth:`RunLock.move_aside`, done before (``new``
        only shapes the messages here).

        Raises:
            RunMismatchError: ``root`` holds a run of a different spec.
            RunFolderError: ``root`` holds files but no manifest (not the toolkit's).
        """
        st = cls(root)
        mf = st.root / MANIFEST
        if mf.exists():
            old = json.loads(mf.read_text())
            if old.get("spec_hash") != spec_hash:
                raise RunMismatchError(
                    f"{st.root} already holds a run of a different spec (hash {old.get('spec_hash')} "
                    f"vs {spec_hash}); pick another --out folder, or {NEW_HELP.format(root=st.root)}")
        else:
            check_folder(st.root, new=new)
        st.cells_dir.mkdir(parents=True, exist_ok=True)
        if not mf.exists():
            manifest = {
                "spec": spec_dict, "spec_hash": spec_hash, "seed": spec_dict.get("seed"),
                "versions": package_versions(), "git_commit": git_commit(),
                "machine": {"platform": platform.platform(), "python": platform.python_version(),
                            "cpus": os.cpu_count(), "processor": platform.processor()},
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "grid": grid, **(extra or {}),
            }
            atomic_write_bytes(mf, json.dumps(manifest, indent=2, default=str).encode())
        return st

    def extend_manifest(self, spec_dict: dict, spec_hash: str, grid: list[str], extra: dict | None = None) -> None:
        """Record a wider spec and grid for this folder (issue 13 hook, used by
        :func:`experiments.runner.open_store` when ``scan``, ``icl`` and ``run`` add their parts to one
        folder; the caller has checked that the parts already there keep their settings)."""
        m = self.manifest()
        m.update({"spec": spec_dict, "spec_hash": spec_hash, "seed": spec_dict.get("seed"), "grid": grid,
                  **(extra or {})})
        atomic_write_bytes(self.root / "manifest.json", json.dumps(m, indent=2, default=str).encode())

    def manifest(self) -> dict:
        mf = self.root / MANIFEST
        if not mf.exists():
            raise AblateError(f"{self.root} is not a run folder (no {MANIFEST}); start one with `ablate run SPEC --out {self.root}`")
        try:
            return json.loads(mf.read_text())
        except ValueError as e:
            raise AblateError(f"{mf} is not valid JSON ({e}); the run folder is damaged: re-run into a new --out folder") from e

    # ---- cells -------------------------------------------------------------------------
    def cell_path(self, key: str) -> Path:
        return self.cells_dir / f"{cell_filename(key)}.parquet"

    def error_path(self, key: str) -> Path:
        return self.cells_dir / f"{cell_filename(key)}.error.json"

    def is_done(self, key: str) -> bool:
        return self.cell_path(key).exists()

    def inputs(self, key: str) -> str | None:
        """The input fingerprint a finished cell was computed from (None: not done, or written before
        cells carried one)."""
        return parquet_inputs(self.cell_path(key))

    def is_current(self, key: str, inputs: str | None) -> bool:
        """Done, and computed from these inputs (``inputs=None``: done at all)."""
        if not self.is_done(key):
            return False
        return inputs is None or self.inputs(key) == inputs

    def discard_cell(self, key: str) -> None:
        """Remove a stale cell's file (written by this toolkit; it is recomputed)."""
        self.cell_path(key).unlink(missing_ok=True)

    def commit_cell(self, key: str, rows: pd.DataFrame, inputs: str | None = None) -> None:
        rows = rows.copy()
        rows.insert(0, "cell", key)
        atomic_write_parquet(rows, self.cell_path(key), inputs=inputs)
        ep = self.error_path(key)
        if ep.exists():
            ep.unlink()

    def record_error(self, key: str, exc: BaseException | str, traceback_text: str | None = None) -> None:
        """Record a failed cell; ``exc`` is the exception, or its ``"Type: message"`` line when it was
        raised in another process (a Ray worker, which sends ``traceback_text`` with it)."""
        error = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        payload = {"cell": key, "error": error,
                   "traceback": traceback_text if traceback_text is not None else traceback.format_exc(),
                   "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_bytes(self.error_path(key), json.dumps(payload, indent=2).encode())

    def read_cell(self, key: str) -> pd.DataFrame:
        return pd.read_parquet(self.cell_path(key))

    def status(self, grid: Iterable[str] | None = None) -> CellStatus:
        grid = list(grid if grid is not None else self.manifest()["grid"])
        done, pending, failed = [], [], {}
        for k in grid:
            if self.is_done(k):
                done.append(k)
            elif self.error_path(k).exists():
                failed[k] = json.loads(self.error_path(k).read_text())["error"]
            else:
                pending.append(k)
        return CellStatus(done, pending, failed)

    def assemble(self, keys: Iterable[str], name: str = "results") -> pd.DataFrame:
        """Concatenate the finished cells among ``keys`` (in that order) into RUN/<name>.parquet + CSV."""
        frames = [self.read_cell(k) for k in keys if self.is_done(k)]
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        self.write_table(df, name)
        return df

    def write_table(self, df: pd.DataFrame, name: str) -> None:
        """Write RUN/<name>.parquet and its CSV export, each atomically."""
        atomic_write_parquet(df, self.root / f"{name}.parquet")
        atomic_write_bytes(self.root / f"{name}.csv", df.to_csv(index=False).encode())
