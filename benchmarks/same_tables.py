"""Behaviour preserved across the pipeline rewrite (issue 13): build the tables with the CLI, compare.

The three commands keep their options, so this one script runs on the code before and after::

    python benchmarks/same_tables.py build SERIES OUT_OLD     # with the old code (git checkout of main)
    python benchmarks/same_tables.py build SERIES OUT_NEW     # with the new code
    python benchmarks/same_tables.py compare OUT_OLD OUT_NEW  # every table equal, or the first difference

``build`` runs ``ablate scan``, ``ablate icl`` and ``ablate run`` (an explicit-head spec, so the tables do
not depend on the SIH selection; ``scores.n_random = 16`` where the new spec has that key, the number of
random sequences the old runner used for the induction set) into separate folders of OUT.
``compare`` drops bookkeeping columns that name files (``cell``), keeps one copy of the clean
condition in the raw tables (the new runner evaluates it once per step and task) and compares values
exactly (``check_exact``).

Recorded (2026-12-02, tiny preset series of 7 checkpoints; old = main at 233db87, new = branch
``pipeline``): all 7 tables identical -- scan/head_scores 392 rows, icl/icl_items 504, icl/icl_summary
126, run/results 1729, run/raw_icl 4368 (after keeping one clean copy), run/raw_lr 273, run/head_sets 28.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

TABLES = {"scan": ["head_scores"], "icl": ["icl_items", "icl_summary"],
          "run": ["results", "raw_icl", "raw_lr", "head_sets"]}

SPEC = """name = "same_tables"
seed = 3
[series]
path = "{series}"
steps = "all"
[heads]
select = "explicit"
explicit = ["L1H0,L0H1"]
k = 2
induction = true
[controls]
random_sets = 2
[operators]
primary = "mean"
robustness = ["zero", "resample"]
[icl]
tasks = ["binary_fruit_month", "pd_category_letter"]
shots = [0, 2]
items = 4
lr_documents = 3
"""


def _ablate(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "experiments.cli", *args], check=True)


def build(series: str, out: str) -> None:
    out_p = Path(out)
    out_p.mkdir(parents=True, exist_ok=True)
    _ablate("scan", "--series", series, "--out", str(out_p / "scan"), "--n-sentences", "40", "--seed", "1")
    _ablate("icl", "--series", series, "--out", str(out_p / "icl"), "--tasks", "binary_fruit_month,pd_order_letter",
            "--shots", "0,2,4", "--n-items", "4", "--no-progress")
    spec = SPEC.format(series=series)
    from experiments import spec as spec_module

    if "scores" in spec_module._SECTIONS:  # the new spec: scores are a section of their own
        spec += "[scores]\nn_random = 16\n"
    (out_p / "spec.toml").write_text(spec)
    _ablate("run", str(out_p / "spec.toml"), "--out", str(out_p / "run"), "--no-progress")


def _normalise(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Drop the ``cell`` column (file names); raw rows: the clean condition once, as operator "none"
    (the old runner evaluated it once per operator and kept the primary's copy), rows in key order."""
    df = df.drop(columns=[c for c in ("cell",) if c in df.columns])
    if name in ("raw_icl", "raw_lr"):
        clean = df["role"] == "clean"
        df = df[~clean | df["operator"].isin(["mean", "none"])].copy()
        df.loc[df["role"] == "clean", "operator"] = "none"
        keys = [c for c in ("step", "operator", "condition_index", "task", "shots", "item", "control", "doc")
                if c in df.columns]
        df = df.sort_values(keys, kind="stable").reset_index(drop=True)
    return df


def compare(a: str, b: str) -> int:
    bad = 0
    for folder, names in TABLES.items():
        for n in names:
            pa, pb = Path(a) / folder / f"{n}.parquet", Path(b) / folder / f"{n}.parquet"
            x, y = _normalise(pd.read_parquet(pa), n), _normalise(pd.read_parquet(pb), n)
            try:
                pd.testing.assert_frame_equal(x, y, check_exact=True)
                print(f"same   {folder}/{n}: {len(x)} rows x {x.shape[1]} columns")
            except AssertionError as e:
                bad += 1
                print(f"DIFFER {folder}/{n}: {str(e)[:800]}")
    print(json.dumps({"tables_differing": bad}))
    return bad


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:]
    if cmd == "build":
        build(*rest)
    elif cmd == "compare":
        sys.exit(1 if compare(*rest) else 0)
    else:
        sys.exit(__doc__)
