"""``ablate run SPEC --executor ray``: the cell grid fanned out to Ray workers.

One cell = one Ray actor task. Each worker is a :class:`CellWorker` actor that keeps one model
skeleton and swaps checkpoints into it (:class:`experiments.runner.WeightLoader`); the driver sends
the cells of one checkpoint to the worker that took that checkpoint, so a worker reads each
checkpoint's weights once. Data safety is the serial runner's (README "Your data is safe"):

* the **driver** (the ``ablate run`` process) validates the spec, holds the run folder's
  :class:`experiments.store.RunLock` for the whole run, reads every cell's inputs (the rows of the
  cells it depends on) and **commits every cell** through :meth:`experiments.runner.Runner.commit`,
  the serial runner's own atomic commit (temp file, fsync, ``os.replace``, input fingerprint in the
  Parquet metadata);
* a **worker writes nothing**: it returns a cell's rows (or its error) to the driver. A worker
  killed at any moment leaves nothing half-done; the driver sees the actor die, starts a new one
  in its place and re-sends that worker's unfinished cells (at most ``max_retries`` times per cell,
  then the cell is recorded as failed). A cell is committed once, by one process, so nothing is
  doubled;
* a killed **driver** loses only the cells in flight (its actors die with it, Ray's ownership rule);
  re-running the command resumes from the committed cells, exactly as the serial runner does.

Devices: ``--device cuda`` (or ``auto`` on a cluster with GPUs) gives each worker one GPU
(``num_gpus=1``); Ray sets ``CUDA_VISIBLE_DEVICES``, so the worker's model goes to ``cuda``.
"""

from __future__ import annotations

import os
import time
import traceback
from collections import Counter
from typing import TYPE_CHECKING

from ablate.model.errors import AblateError

if TYPE_CHECKING:
    from experiments.runner import Plan, Runner, RunSummary

#: the Ray release the extra pins (setup.cfg ``[options.extras_require] ray``)
RAY_VERSION = "2.60.0"
INSTALL = "pip install 'sih-ablate[ray]'"


def require_ray():
    """The ``ray`` module, or one clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise AblateError(f"--executor ray needs Ray, which is not installed here: {INSTALL} (Ray {RAY_VERSION}), "
                          "or run with --executor local (the default)") from None
    return ray


def check_address(address: str, timeout: float = 5.0) -> None:
    """One TCP connect to the head's ``HOST:PORT`` (``ray.init`` itself retries an unreachable head
    for minutes): an unreachable cluster is one message within ``timeout`` seconds."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise AblateError(f"--address {address!r}: give HOST:PORT of the Ray head (e.g. 10.0.0.5:6379), or 'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise AblateError(f"--address {address}: no Ray head answers there within {timeout:g} s ({e.strerror or e}); "
                          "start it with `ray start --head --port PORT` on that machine, or drop --address to run "
                          "on this machine") from None


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


class CellWorker:
    """A Ray actor (wrapped with ``ray.remote`` by :class:`RayExecutor`): one model skeleton, cells
    computed on it, rows returned to the driver. It writes nothing."""

    def __init__(self, plan: "Plan", threads: int) -> None:
        import torch

        from experiments.runner import WeightLoader

        torch.set_num_threads(max(1, threads))
        self.plan = plan
        self.loader = WeightLoader(plan, [])  # no read-ahead: the driver decides the next checkpoint
        self._step: int | None = None
        #: checkpoints switched to (each one a read of its weights into the skeleton)
        self.loads = 0

    def pid(self) -> int:
        return os.getpid()

    def run(self, key_text: str, inputs: dict) -> dict:
        from experiments.cells import CellKey, run_cell
        from experiments.runner import make_context

        key = CellKey.parse(key_text)
        try:
            if key.step != self._step:
                self.loads += 1
                self._step = key.step
            handle = self.loader.handle(key.step)
            rows = run_cell(make_context(self.plan, key, handle, inputs), key)
        except Exception as e:  # the cell's own failure: recorded by the driver, not retried
            return {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(),
                    "pid": os.getpid()}
        return {"ok": True, "rows": rows, "forward_rows": int(rows.attrs.get("forward_rows", 0)), "pid": os.getpid(),
                "loads": self.loads}


class RayExecutor:
    """Runs a :class:`experiments.runner.Runner`'s missing cells on Ray workers (see the module docstring).

    Args:
        address: ``None`` starts a local Ray instance for this run (``num_cpus = workers *
            cpus_per_worker``); ``"auto"`` joins the cluster this machine belongs to; ``HOST:PORT``
            joins that cluster's head (``ray start --head --port PORT`` there).
        workers: number of worker actors (default: the cluster's GPUs on GPU, else its CPUs divided
            by ``cpus_per_worker``; 2 for a local instance).
        cpus_per_worker: Ray CPUs each worker reserves (and its torch threads, unless ``threads``).
        threads: torch threads per worker.
        max_retries: how many times a cell is re-sent after the worker running it died.
        depth: cells queued per worker (>1 hides the driver round trip behind the running cell).
    """

    def __init__(self, address: str | None = None, workers: int | None = None, *, cpus_per_worker: float = 1,
                 threads: int | None = None, max_retries: int = 2, depth: int = 2) -> None:
        if workers is not None and workers < 1:
            raise AblateError(f"--workers {workers}: give at least 1 worker")
        self.address, self.workers = address, workers
        self.cpus_per_worker, self.threads = cpus_per_worker, threads
        self.max_retries, self.depth = max_retries, max(1, depth)
        self._owns = False
        self._ray = None
        self.num_gpus = 0
        self.actors: list = []
        self.pids: list[int | None] = []
        self._loads: dict[tuple[int, int], int] = {}  # (worker, generation) -> checkpoints it loaded
        self._gen: list[int] = []
        self.retried = 0
        #: seconds from start() to the first worker ready (Ray start, actor start, imports)
        self.startup_s: float | None = None
        self._t_start = 0.0

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        ray = require_ray()
        self._ray = ray
        self._t_start = time.perf_counter()
        if ray.is_initialized():
            return
        kw = dict(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        if self.address and self.address != "auto":
            check_address(self.address)
        try:
            if self.address:
                ray.init(address=self.address, **kw)
            else:
                ray.init(num_cpus=max(1, int((self.workers or 2) * self.cpus_per_worker)), **kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
            raise AblateError(f"--executor ray: cannot start or reach {where} ({type(e).__name__}: {e}); start the "
                              "head with `ray start --head --port 6379` and pass --address HOST:6379, or drop "
                              "--address to run on this machine") from None
        self._owns = True

    def shutdown(self) -> None:
        ray = self._ray
        if ray is None:
            return
        for a in self.actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:
                pass
        self.actors = []
        if self._owns and ray.is_initialized():
            ray.shutdown()
        self._owns = False

    def resolve_device(self, device: str | None) -> str:
        """The workers' device: ``cpu``; ``cuda`` when the cluster has GPUs (``auto`` picks it then)."""
        from ablate.model.devices import DeviceError

        d = (device or "auto").strip().lower()
        gpus = int(self._ray.cluster_resources().get("GPU", 0)) if self._ray is not None else 0
        if d == "cpu":
            self.num_gpus = 0
            return "cpu"
        if d == "auto":
            self.num_gpus = 1 if gpus else 0
            return "cuda" if gpus else "cpu"
        if d == "cuda" or d.startswith("cuda:"):
            if not gpus:
                raise DeviceError(f"--device {device}: the Ray cluster has no GPUs (resources: "
                                  f"{self._ray.cluster_resources()}); use --device cpu or auto")
            self.num_gpus = 1
            return "cuda"  # Ray gives each worker one GPU; inside the worker it is cuda (cuda:0)
        raise DeviceError(f"--device {device!r}: not a device; use auto, cpu, cuda or cuda:N")

    def n_workers(self) -> int:
        if self.workers:
            return self.workers
        res = self._ray.cluster_resources()
        if self.num_gpus:
            return max(1, int(res.get("GPU", 1)))
        return max(1, int(res.get("CPU", 1) // max(self.cpus_per_worker, 1e-9)))

    def _new_actor(self, plan: "Plan"):
        ray = self._ray
        cls = ray.remote(CellWorker).options(num_cpus=self.cpus_per_worker, num_gpus=self.num_gpus, max_restarts=0)
        return cls.remote(plan, int(self.threads or max(1, round(self.cpus_per_worker))))

    def _replace(self, w: int, plan: "Plan") -> None:
        try:
            self._ray.kill(self.actors[w], no_restart=True)
        except Exception:
            pass
        self.actors[w] = self._new_actor(plan)
        self._gen[w] += 1
        self.pids[w] = None

    def busy_workers(self) -> list[int]:
        """Indices of the workers with cells in flight (during :meth:`execute`)."""
        return [w for w, k in enumerate(getattr(self, "_load", [])) if k > 0]

    def checkpoint_loads(self) -> int:
        """Checkpoints read by all workers of the last :meth:`execute` (a worker reads each of its
        checkpoints once; a replaced worker reads its checkpoint again)."""
        return sum(self._loads.values())

    def worker_pids(self) -> list[int | None]:
        """Process ids of the workers (as they last reported them)."""
        return list(self.pids)

    # ---- the driver loop -----------------------------------------------------------------
    def execute(self, runner: "Runner", todo: list, summary: "RunSummary", bar) -> None:
        ray = self._ray
        from ray.exceptions import RayError, RayTaskError

        from experiments.cells import dependencies

        plan = runner.plan
        spec, final = plan.spec, plan.steps[-1]
        n = self.n_workers()
        self.actors = [self._new_actor(plan) for _ in range(n)]
        self._gen = [0] * n
        self.pids = ray.get([a.pid.remote() for a in self.actors])  # workers up (imports done)
        self._loads = {}
        self.startup_s = time.perf_counter() - self._t_start
        order = {k: i for i, k in enumerate(todo)}
        pending = list(todo)
        failed: set = set()
        owner: dict[int, int] = {}  # checkpoint step -> the worker that loads it
        inflight: dict = {}  # ObjectRef -> (worker, generation, key)
        load = self._load = [0] * n
        tries: Counter = Counter()

        def dep_state(key) -> str:
            st = "done"
            for dep in dependencies(key, spec, final):
                if dep in failed:
                    return "failed"
                if not runner.store.is_done(str(dep)):
                    st = "waiting"
            return st

        def pick(w: int):
            """The next cell of the checkpoint ``w`` works on; a new checkpoint only when ``w`` has none
            left (so a worker never swaps back and forth between two checkpoints)."""
            mine = [k for k in pending if owner.get(k.step) == w]
            if mine:
                return next((k for k in mine if dep_state(k) != "waiting"), None)
            return next((k for k in pending if k.step not in owner and dep_state(k) != "waiting"), None)

        def finish_failed(key, error, tb=None) -> None:
            runner.fail(key, error, summary, bar, traceback_text=tb)
            failed.add(key)
            runner.cell_finished(key, bar)

        while pending or inflight:
            for w in range(n):
                while load[w] < self.depth:
                    key = pick(w)
                    if key is None:
                        break
                    pending.remove(key)
                    owner.setdefault(key.step, w)
                    try:  # the same message as the serial runner when a dependency failed
                        inputs = runner.inputs(key)
                    except Exception as e:
                        finish_failed(key, e, traceback.format_exc())
                        continue
                    ref = self.actors[w].run.remote(str(key), inputs)
                    inflight[ref] = (w, self._gen[w], key)
                    load[w] += 1
            if not inflight:
                for key in list(pending):  # nothing running and nothing can start: should not happen
                    pending.remove(key)
                    finish_failed(key, AblateError(f"cell {key} waits for cells that never ran"))
                break
            bar.set_postfix_str(f"{n} ray workers, {len(inflight)} cells in flight", refresh=False)
            (ref,), _ = ray.wait(list(inflight), num_returns=1)
            w, gen, key = inflight.pop(ref)
            load[w] -= 1
            try:
                res = ray.get(ref)
            except RayTaskError as e:  # the task itself raised outside the cell (e.g. its inputs)
                finish_failed(key, f"{type(e).__name__}: {e}")
                continue
            except RayError as e:  # the worker died (killed, out of memory, node lost): re-send its cells
                if gen == self._gen[w]:
                    self._replace(w, plan)
                tries[key] += 1
                if tries[key] > self.max_retries:
                    finish_failed(key, AblateError(
                        f"cell {key}: the Ray worker running it died {tries[key]} times ({type(e).__name__}); "
                        "it may need more memory than a worker has (see `ablate status`)"))
                    continue
                self.retried += 1
                summary.cells_retried += 1
                pending.append(key)
                pending.sort(key=order.__getitem__)
                bar.write(f"cell {key}: its Ray worker died ({type(e).__name__}); re-sending it to a new worker")
                continue
            self.pids[w] = res.get("pid", self.pids[w])
            if "loads" in res:
                self._loads[(w, gen)] = res["loads"]
            if res["ok"]:
                runner.commit(key, res["rows"], res["forward_rows"], summary)
                runner.cell_finished(key, bar)
            else:
                finish_failed(key, res["error"], res.get("traceback"))
