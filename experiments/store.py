"""The result store: one folder per run.

Layout::

    RUN/manifest.json        spec, spec hash, package versions, git commit, seed, machine, cell grid
    RUN/cells/<key>.parquet  rows of one finished cell (written to a temp file, then os.replace'd)
    RUN/cells/<key>.error.json   the error of a failed cell (removed when it later succeeds)
    RUN/results.parquet      all cells' rows, assembled in cell-key order (+ results.csv)

A cell's file appears atomically or not at all, so a run killed at any moment (kill -9 included)
loses at most the cells in flight, and a re-run computes exactly the missing ones.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd

from ablate.model.errors import AblateError
from experiments.run_files import atomic_write_bytes, atomic_write_parquet


class RunMismatchError(AblateError):
    """RUN already holds a run of a different spec."""


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
        """Open ``root`` for this spec: create it, or resume it if the spec hash matches.

        Raises:
            RunMismatchError: ``root`` holds a run of a different spec and ``new`` is false.
        """
        st = cls(root)
        mf = st.root / "manifest.json"
        if mf.exists():
            old = json.loads(mf.read_text())
            if old.get("spec_hash") != spec_hash:
                if not new:
                    raise RunMismatchError(
                        f"{st.root} already holds a run of a different spec (hash {old.get('spec_hash')} "
                        f"vs {spec_hash}); pick another --out folder, or pass --new to discard the old "
                        "results and start a new run there"
                    )
                shutil.rmtree(st.root)
        elif new and st.root.exists():
            shutil.rmtree(st.root)
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
        mf = self.root / "manifest.json"
        if not mf.exists():
            raise AblateError(f"{self.root} is not a run folder (no manifest.json); start one with `ablate run SPEC --out {self.root}`")
        return json.loads(mf.read_text())

    # ---- cells -------------------------------------------------------------------------
    def cell_path(self, key: str) -> Path:
        return self.cells_dir / f"{cell_filename(key)}.parquet"

    def error_path(self, key: str) -> Path:
        return self.cells_dir / f"{cell_filename(key)}.error.json"

    def is_done(self, key: str) -> bool:
        return self.cell_path(key).exists()

    def commit_cell(self, key: str, rows: pd.DataFrame) -> None:
        rows = rows.copy()
        rows.insert(0, "cell", key)
        atomic_write_parquet(rows, self.cell_path(key))
        ep = self.error_path(key)
        if ep.exists():
            ep.unlink()

    def record_error(self, key: str, exc: BaseException) -> None:
        payload = {"cell": key, "error": f"{type(exc).__name__}: {exc}",
                   "traceback": traceback.format_exc(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
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
