"""``ablate bench ray``: serial vs Ray cells/min on one small spec, side by side, and what Ray adds.

Three runs of the same spec into fresh folders: ``--executor local``, and ``--executor ray`` with 1
and with ``workers`` workers (a local Ray instance started for each, ``num_cpus = workers``, one
torch thread per worker). Printed per run: wall time, cells/min over the cell loop, Ray's start-up
(instance + workers importing the toolkit), and the tables' equality with the serial run. Ray's
per-cell overhead is measured directly: the round trip of ``cells`` actor calls that carry a cell's
inputs and return its rows (the real rows of the serial run), without computing anything.

The machine's load average is printed before and after: on a shared machine the numbers move with it.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

BENCH_SPEC = {
    "name": "bench_ray", "seed": 3,
    "series": {"path": "PLACEHOLDER", "steps": [0, 10, 30]},
    "heads": {"select": "explicit", "explicit": ["L1H0,L0H1"], "k": 2, "induction": True},
    "controls": {"random_sets": 2},
    "operators": {"primary": "mean", "robustness": ["zero"]},
    "icl": {"tasks": ["binary_fruit_month", "pd_category_letter"], "shots": [0, 2], "items": 4, "lr_documents": 3},
}


def _load() -> str:
    try:
        a, b, c = os.getloadavg()
        return f"{a:.2f} {b:.2f} {c:.2f}"
    except OSError:
        return "n/a"


class _Echo:
    """A Ray actor that returns what a cell would return, computing nothing."""

    def __init__(self, rows) -> None:
        self.rows = rows

    def run(self, key: str, inputs: dict) -> dict:
        return {"ok": True, "rows": self.rows, "forward_rows": 0, "pid": os.getpid()}


def run(series: str | None = None, workers: int = 2, print_fn: Callable[[str], None] = print, **_ignored) -> dict:
    import pandas as pd

    from experiments.ray_executor import RayExecutor, require_ray
    from experiments.runner import run_spec
    from experiments.spec import spec_from_dict

    ray = require_ray()
    tmp = Path(tempfile.mkdtemp(prefix="bench_ray"))
    try:
        if series is None:
            import subprocess
            import sys

            series = str(tmp / "tiny")
            print_fn("training the tiny series for the benchmark ...")
            subprocess.run([sys.executable, "-m", "experiments.commands.train", "--preset", "tiny", "--out", series,
                            "--no-progress"], check=True, capture_output=True)
        d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BENCH_SPEC.items()}
        d["series"]["path"] = str(series)
        spec = spec_from_dict(d, "bench_ray")
        print_fn(f"spec: {len(d['series']['steps'])} checkpoints of {series}; load average before: {_load()}")
        rows = []
        t = time.perf_counter()
        s = run_spec(spec, tmp / "serial", progress=False)
        wall = time.perf_counter() - t
        n = s.cells_done
        rows.append(("local (serial)", wall, s.seconds, None, n / (s.seconds / 60)))
        ref = pd.read_parquet(tmp / "serial" / "results.parquet")
        same = {}
        for w in sorted({1, workers}):
            ex = RayExecutor(workers=w, threads=1)
            t = time.perf_counter()
            s = run_spec(spec, tmp / f"ray{w}", progress=False, executor=ex)
            wall = time.perf_counter() - t
            rows.append((f"ray, {w} worker{'s' if w > 1 else ''}", wall, s.seconds, ex.startup_s, n / (s.seconds / 60)))
            same[w] = pd.read_parquet(tmp / f"ray{w}" / "results.parquet").equals(ref)
        print_fn(f"{'executor':<18}{'wall s':>8}{'runner s':>10}{'ray start s':>13}{'cells/min':>11}  tables")
        for name, wall, secs, start, rate in rows:
            eq = "" if start is None else ("= serial" if same[int(name.split(', ')[1].split()[0])] else "DIFFER")
            print_fn(f"{name:<18}{wall:>8.1f}{secs:>10.1f}{('' if start is None else f'{start:.1f}'):>13}{rate:>11.1f}  {eq}")
        # steady state: cells/min once the workers are up
        for name, wall, secs, start, rate in rows[1:]:
            print_fn(f"  {name}: {n / ((secs - start) / 60):.1f} cells/min after the workers are up "
                     f"({secs - start:.1f} s for {n} cells)")
        # per-cell overhead: round trips that carry a cell's inputs and its rows
        from experiments.cells import CellKey
        from experiments.runner import make_plan
        from experiments.store import RunStore
        from experiments.heads import tested_sets

        store = RunStore(tmp / "serial")
        key = next(k for k in make_plan(spec).grid if k.kind == "icl" and not k.clean)
        cell_rows = store.read_cell(str(key)).drop(columns="cell")
        inputs = {"head_sets": tested_sets(store.read_cell(str(CellKey("heads", key.step))).drop(columns="cell"))}
        ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        try:
            echo = ray.remote(_Echo).options(num_cpus=1).remote(cell_rows)
            ray.get(echo.run.remote(str(key), inputs))
            times = []
            for _ in range(3):
                t = time.perf_counter()
                ray.get([echo.run.remote(str(key), inputs) for _ in range(n)])
                times.append((time.perf_counter() - t) / n)
        finally:
            ray.shutdown()
        per_cell_ms = statistics.median(times) * 1e3
        print_fn(f"Ray's per-cell overhead (one actor call carrying a cell's inputs and its {len(cell_rows)} rows, "
                 f"{n} calls, median of 3): {per_cell_ms:.2f} ms per cell")
        print_fn(f"load average after: {_load()} (os.cpu_count() = {os.cpu_count()}, "
                 f"this process may use {len(os.sched_getaffinity(0))} core(s))")
        return {"rows": rows, "per_cell_ms": per_cell_ms, "same": same}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
