"""``--executor ray`` on a local Ray cluster started here (127.0.0.1, 2 CPUs, 2 workers):

* the tables equal the serial run's exactly;
* a worker killed with SIGKILL mid-run is survived: its cells are re-sent to a new worker, the tables
  still equal the serial run's, no row is doubled;
* the driver killed with SIGKILL mid-run, then re-run, resumes from the committed cells and ends with
  the serial tables.

Skipped when Ray is not installed (``pip install 'sih-ablate[ray]'``).
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

import importlib.util

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="Ray is not installed: pip install 'sih-ablate[ray]' to run the Ray tests")

from experiments.ray_executor import RayExecutor  # noqa: E402  (imports ray only when used)
from experiments.runner import run_spec  # noqa: E402
from experiments.spec import spec_from_dict  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("results", "raw_icl", "raw_lr", "head_sets")


def _spec(series) -> dict:
    # per step: scores (the induction set reads them), heads, (clean, mean, zero) x (lr + 2 icl) = 11 cells
    return {"name": "tiny_ray", "seed": 3,
            "series": {"path": str(series), "steps": [0, 30]},
            "heads": {"select": "explicit", "explicit": ["L1H0,L0H1"], "k": 2, "induction": True},
            "controls": {"random_sets": 2},
            "operators": {"primary": "mean", "robustness": ["zero"]},
            "icl": {"tasks": ["binary_fruit_month", "pd_category_letter"], "shots": [0, 2], "items": 4,
                    "lr_documents": 3}}


N_CELLS = 2 * 11


def _write_toml(path: Path, d: dict) -> Path:
    import json

    lines = [f"{k} = {json.dumps(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines += [f"{kk} = {json.dumps(vv)}" for kk, vv in v.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """A Ray head on 127.0.0.1 with 2 CPUs, started (and stopped) by this test: its process group is ours."""
    tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's socket paths must be short
    port = _free_port()
    import secrets

    # Ray 2.5x clusters use token authentication: this cluster gets its own token, given to the head, to
    # this process and to the drivers it starts (nothing is read from or written to ~/.ray)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}
    saved = {k: os.environ.get(k) for k in auth}
    os.environ.update(auth)
    import ray  # after the auth settings: Ray reads RAY_AUTH_MODE when it is first imported

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                             "--port", str(port), "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false",
                             "--temp-dir", tmp, "--disable-usage-stats"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:  # the head's port answers first (ray.init itself would retry for minutes)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None, "`ray start --head` exited"
                assert time.time() < deadline, "the Ray head did not come up within 60 s"
                time.sleep(0.5)
        ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        assert ray.cluster_resources().get("CPU") == 2
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        # `ray start --block` stops the processes it started (its workers exit when their raylet does)
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)  # anything left in the group this test created
        except ProcessLookupError:
            pass
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def serial(tiny_series, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "run"
    s = run_spec(spec_from_dict(_spec(tiny_series), "t.toml"), out, progress=False)
    assert s.cells_done == N_CELLS and s.cells_failed == 0, s.failed
    return out


def _executor() -> RayExecutor:
    # one torch thread per worker (the serial run has 2: the tables are equal all the same)
    return RayExecutor(workers=2, threads=1)


def _assert_same_tables(got: Path, ref: Path) -> None:
    for t in TABLES:
        a, b = pd.read_parquet(got / f"{t}.parquet"), pd.read_parquet(ref / f"{t}.parquet")
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=t)
    cells = list((got / "cells").glob("*.parquet"))
    assert len(cells) == N_CELLS
    assert not list((got / "cells").glob("*.error.json"))


def test_ray_run_equals_serial(cluster, tiny_series, serial, tmp_path):
    ex = _executor()
    out = tmp_path / "ray"
    s = run_spec(spec_from_dict(_spec(tiny_series), "t.toml"), out, progress=False, executor=ex)
    assert s.cells_done == N_CELLS and s.cells_failed == 0 and s.cells_retried == 0, s.failed
    # both workers computed cells (each reported its pid), and each is its own process
    assert len(set(ex.worker_pids())) == 2 and os.getpid() not in ex.worker_pids()
    # cells of one checkpoint stay on one worker: each of the 2 checkpoints was read once
    assert ex.checkpoint_loads() == 2
    _assert_same_tables(out, serial)
    # the driver alone wrote the folder: every cell file carries the serial fingerprint
    import pyarrow.parquet as pq

    for f in (out / "cells").glob("*.parquet"):
        ref = serial / "cells" / f.name
        assert pq.read_schema(f).metadata[b"ablate.inputs"] == pq.read_schema(ref).metadata[b"ablate.inputs"]


def test_worker_killed_mid_run_is_survived(cluster, tiny_series, serial, tmp_path):
    ex = _executor()
    killed: list[int] = []

    def on_cell_done(key: str) -> None:
        done = len(list((tmp_path / "ray" / "cells").glob("*.parquet")))
        if not killed and done >= 4:
            busy = ex.busy_workers()
            assert busy, "no worker had a cell in flight"
            pid = ex.worker_pids()[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    s = run_spec(spec_from_dict(_spec(tiny_series), "t.toml"), tmp_path / "ray", progress=False, executor=ex,
                 on_cell_done=on_cell_done)
    assert killed, "the run ended before a worker was killed"
    assert s.cells_retried >= 1, "no cell was re-sent after the worker died"
    assert s.cells_done == N_CELLS and s.cells_failed == 0, s.failed
    assert killed[0] not in ex.worker_pids()  # a new process took the dead worker's place
    _assert_same_tables(tmp_path / "ray", serial)
    # no doubled rows: every cell's rows appear once in the assembled table
    raw = pd.read_parquet(tmp_path / "ray" / "raw_icl.parquet")
    ref = pd.read_parquet(serial / "raw_icl.parquet")
    assert raw.groupby("cell").size().equals(ref.groupby("cell").size())


def test_driver_killed_then_rerun_resumes(cluster, tiny_series, serial, tmp_path):
    spec_path = _write_toml(tmp_path / "spec.toml", _spec(tiny_series))
    out = tmp_path / "ray"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "experiments.cli", "run", str(spec_path), "--out", str(out),
                          "--executor", "ray", "--address", cluster, "--workers", "2", "--no-progress"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    deadline = time.time() + 180
    n = 0
    while time.time() < deadline:
        n = len(list((out / "cells").glob("*.parquet"))) if (out / "cells").exists() else 0
        if n >= 5 or p.poll() is not None:
            break
        time.sleep(0.02)
    assert p.poll() is None, f"the driver ended before it could be killed: {p.stderr.read().decode()[-2000:]}"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    done_before = len(list((out / "cells").glob("*.parquet")))
    assert 5 <= done_before < N_CELLS
    # every committed cell is whole (atomic commit by the driver)
    for f in (out / "cells").glob("*.parquet"):
        pd.read_parquet(f)
    s = run_spec(spec_from_dict(_spec(tiny_series), "t.toml"), out, progress=False, executor=_executor())
    assert s.cells_skipped == done_before and s.cells_done == N_CELLS - done_before and s.cells_failed == 0
    _assert_same_tables(out, serial)
