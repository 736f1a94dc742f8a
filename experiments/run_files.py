"""Crash-safe files of a run folder (the store of :mod:`experiments.runner`).

A file is written to a temporary name in the same folder, flushed to disk and moved into place with
``os.replace``: readers see the old file or the whole new one, never a partial file, whatever
moment the process is killed at.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd



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


#: the Parquet schema-metadata key of a cell's input fingerprint (spec part + checkpoint hashes)
INPUTS_KEY = b"ablate.inputs"


def atomic_write_parquet(df: pd.DataFrame, path: Path, *, inputs: str | None = None) -> None:
    """Write ``df`` to ``path`` as Parquet atomically (temp file, fsync, ``os.replace``).

    ``inputs`` (a cell's input fingerprint) is stored in the file's schema metadata, so the rows and
    the fingerprint they were computed from appear together or not at all.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if inputs is None:
        df.to_parquet(tmp, index=False)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), INPUTS_KEY: inputs.encode()})
        pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def parquet_inputs(path: Path) -> str | None:
    """The input fingerprint stored by :func:`atomic_write_parquet` (None: absent, or no such file)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, ValueError):
        return None
    v = meta.get(INPUTS_KEY)
    return v.decode() if v is not None else None
