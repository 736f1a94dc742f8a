"""The one runner: a spec expands to a grid of cells over checkpoints; each cell is idempotent.

``ablate scan`` (a spec with only ``[scores]``), ``ablate icl`` (only ``[levels]``) and ``ablate run``
(the ablation protocol) all build a :class:`Plan` and run it here, into one run folder:

* **one checkpoint loop** -- the grid is ordered by checkpoint; the model skeleton is built once and
  each next checkpoint's tensors are copied into it (:func:`checkpoints.sweep.load_weights_into`),
  read ahead in a background thread while the current checkpoint computes (:class:`WeightLoader`);
* **one resume mechanism and one manifest** -- finished cells are files in ``RUN/cells/``
  (:class:`experiments.store.RunStore`); a re-run computes exactly the missing ones;
* **one folder for every command** -- a run folder accumulates the parts of the specs run into it
  (:func:`merge_into_folder`): ``scan`` then ``icl`` then ``run`` into one folder compute each
  checkpoint's scores once, and are refused only when a part's settings differ from the ones the
  folder already holds;
* **one step convention** -- a single model is step 0;
* **one writer, content-keyed cells** -- :func:`run_spec` validates everything first
  (:mod:`experiments.validate`), then holds the folder's :class:`experiments.store.RunLock` for the
  whole run; each cell is keyed on its spec part and the content hashes of the checkpoints it reads
  (:meth:`Plan.fingerprint`; series.json hashes verified on load), so changed weights are recomputed.

Grid order (per checkpoint, see :mod:`experiments.cells` for the kinds): ``scores``, ``levels``,
``heads``, the clean ``lr`` and ``icl`` cells (``op=none``), each operator's ``lr`` and ``icl`` cells,
``patch``. With ``heads.at = "final"`` the final checkpoint's ``scores`` and ``heads`` cells come
first. Tables assembled at the end (from every finished cell of the folder): ``head_scores``,
``icl_items`` + ``icl_summary``, ``raw_icl``, ``raw_lr``, ``head_sets``, ``results``, ``raw_patch`` +
``patching``.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from ablate.model.errors import AblateError
from experiments.cells import CLEAN, CellContext, CellKey, dependencies, run_cell
from experiments.spec import Spec, SpecError, resolve_tasks, spec_from_dict
from experiments.store import NEW_HELP, MANIFEST, RunLock, RunMismatchError, RunStore, check_folder


# ---- the plan ----------------------------------------------------------------------------------

@dataclass
class Plan:
    """What a spec expands to: the checkpoints, the tasks and the cell grid (no files touched)."""

    spec: Spec
    steps: list[int]
    tokens_seen: dict[int, int | None]
    locators: dict[int, str]
    tasks: list[str]
    grid: list[CellKey]
    series_root: str | None = None
    #: step -> content hash of the checkpoint's weights (verified against series.json)
    hashes: dict[int, str] = field(default_factory=dict)
    #: where the cells run (:mod:`ablate.model.devices`): a torch device ("cuda" on a Ray worker is the
    #: GPU Ray gave it) and the dtype name, resolved before the plan runs (fp32 on CPU, bf16 on GPU)
    device: str = "cpu"
    dtype: str = "float32"
    #: run the traces on NDIF (a hub model; :func:`ablate.model.handle.load_remote_model`)
    remote: bool | str = False

    def load(self, step: int):
        """The model of checkpoint ``step`` on this plan's device, in its dtype (or on NDIF)."""
        from ablate.model.handle import load_model, load_remote_model

        if self.remote:
            return load_remote_model(self.locators[step], revision=self.spec.series.revision, remote=self.remote)
        return load_model(self.locators[step], revision=self.spec.series.revision, device=self.device,
                          dtype=self.dtype)

    @property
    def keys(self) -> list[str]:
        """The grid as the stable strings the store and the manifest use."""
        return [str(k) for k in self.grid]

    def input_steps(self, key: CellKey) -> list[int]:
        """The checkpoints a cell's rows depend on (:func:`experiments.cells.input_steps`)."""
        from experiments.cells import input_steps

        return input_steps(key, self.spec, self.steps[-1])

    def fingerprint(self, key: CellKey) -> str:
        """What a cell's rows are a function of: its spec part, the seed, the model source and the
        content hash of every checkpoint it reads (:meth:`input_steps`). Stored with the cell's rows;
        a cell whose fingerprint changed is recomputed."""
        d = _jsonable(self.spec.to_dict())
        part = "scores" if key.kind == "scores" else "levels" if key.kind == "levels" else "ablation"
        secs = {sec: d.get(sec) for sec in _part_sections(part)}
        body = {"kind": key.kind, "seed": d["seed"], "sections": secs,
                "source": {k: d["series"].get(k) for k in ("model", "revision")},
                "checkpoints": {str(s): self.hashes.get(s) for s in self.input_steps(key)}}
        if self.dtype != "float32":  # half-precision rows are other rows (fp32 keeps the old fingerprints)
            body["dtype"] = self.dtype
        if self.remote:  # computed on NDIF's copy of the hub model
            body["remote"] = str(self.remote)
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Checkpoints:
    steps: list[int]
    tokens_seen: dict[int, int | None]
    locators: dict[int, str]
    root: str | None
    hashes: dict[int, str] = field(default_factory=dict)


def model_hash(locator: str, revision: str | None) -> str:
    """Content hash of a single model: its weight files (folder) or its ``.gguf`` file; a hub name
    without a local copy is identified by name and revision."""
    from checkpoints.series import CheckpointError, cached_hash, weights_files

    p = Path(locator).expanduser()
    try:
        if p.is_file():
            return cached_hash(p.parent, files=[p])
        if p.is_dir():
            files = sorted(p.glob("*.gguf")) if not list(p.glob("*.safetensors")) else None
            return cached_hash(p, files=files) if files else cached_hash(p, files=weights_files(p))
    except (CheckpointError, OSError):
        pass  # no weight files: the model loader reports it with its own message
    return f"name:{locator}@{revision or 'main'}"


def resolve_checkpoints(spec: Spec) -> Checkpoints:
    """The checkpoints the spec names (a single model is step 0), their weights' hashes verified
    against series.json. Raises an AblateError early, naming the checkpoint."""
    s = spec.series
    if s.model is not None:
        return Checkpoints([0], {0: None}, {0: s.model}, None, {0: model_hash(s.model, s.revision)})
    from checkpoints.series import CheckpointError, CheckpointSeries

    root = Path(s.path)
    if not root.exists():
        raise SpecError(f"{spec.source}: key series.path: folder {root} does not exist "
                        "(train one with `ablate train --preset tiny --out DIR`, or pass --series DIR)")
    try:
        series = CheckpointSeries.from_local(root)
    except Exception as e:
        raise SpecError(f"{spec.source}: key series.path: {root} is not a checkpoint series: {e}") from e
    if len(series) == 0:
        raise SpecError(f"{spec.source}: key series.path: {root} holds no checkpoints")
    if s.steps == "all":
        sel = series
    elif s.steps == "final":
        sel = series.select([series.steps[-1]])
    elif isinstance(s.steps, dict):
        sel = series.log_spaced(int(s.steps["log_spaced"]))
    else:
        missing = [x for x in s.steps if x not in series.steps]
        if missing:
            raise SpecError(f"{spec.source}: key series.steps: step(s) {missing} not in the series "
                            f"{root} (available: {series.steps})")
        sel = series.select(s.steps)
    try:
        hashes = sel.verified_hashes()
    except CheckpointError as e:
        raise AblateError(f"{spec.source}: series {root}: {e}") from e
    return Checkpoints(list(sel.steps), {cp.step: cp.tokens_seen for cp in sel},
                       {cp.step: str(series.local_path(cp)) for cp in sel}, str(root), hashes)


def step_cells(spec: Spec, step: int, tasks: list[str]) -> list[CellKey]:
    """The cells of one checkpoint, in run order."""
    out = []
    if spec.needs_scores:
        out.append(CellKey("scores", step))
    if "levels" in spec.parts:
        out.append(CellKey("levels", step))
    if spec.ablation:
        out.append(CellKey("heads", step))
        for op in (CLEAN, *spec.operators.all):
            out.append(CellKey("lr", step, op=op))
            out += [CellKey("icl", step, op=op, task=t) for t in tasks]
        if spec.operators.patch:
            out += [CellKey("patch", step, task=t) for t in tasks]
        if spec.paths is not None:
            out += [CellKey("paths", step, task=t) for t in tasks]
    return out


def make_plan(spec: Spec) -> Plan:
    """Resolve the series, steps and tasks of ``spec`` and list its cells. Raises SpecError early."""
    from experiments.validate import check_spec

    check_spec(spec)
    cps = resolve_checkpoints(spec)
    try:
        tasks = resolve_tasks(spec.icl.tasks) if spec.ablation else []
    except AblateError as e:
        raise SpecError(f"{spec.source}: key icl.tasks: {e}") from e
    grid: list[CellKey] = []
    final = cps.steps[-1]
    if spec.ablation and spec.heads.select == "sih" and spec.heads.at == "final":
        grid += [CellKey("scores", final), CellKey("heads", final)]  # the final checkpoint's SIHs are needed first
    for st in cps.steps:
        grid += [k for k in step_cells(spec, st, tasks) if k not in grid]
    return Plan(spec, cps.steps, cps.tokens_seen, cps.locators, tasks, grid, cps.root, cps.hashes)


# ---- one folder, many specs --------------------------------------------------------------------

def _part_sections(part: str) -> tuple[str, ...]:
    return {"scores": ("scores",), "levels": ("levels",),
            "ablation": ("scores", "heads", "controls", "operators", "icl")}[part]


def _jsonable(x):
    return json.loads(json.dumps(x, sort_keys=True, default=list))


def merge_into_folder(old: dict, spec: Spec, steps: list[int] | None = None) -> Spec:
    """The spec of a folder that held ``old`` (a manifest's spec) and now also runs ``spec``.

    Same series and seed, and every part both run (scores / levels / ablation) with the same
    settings; the steps become the union. Raises RunMismatchError naming what differs.
    """
    new = _jsonable(spec.to_dict())
    old = _jsonable(old)
    where = "this run folder"
    diffs = []
    for k in ("path", "model", "revision"):
        if old.get("series", {}).get(k) != new["series"][k]:
            diffs.append(f"series.{k}: {old.get('series', {}).get(k)!r} there, {new['series'][k]!r} now")
    if old.get("seed") != new["seed"]:
        diffs.append(f"seed: {old.get('seed')!r} there, {new['seed']!r} now")
    old_parts = set(old.get("parts") or ())
    scored_old = "scores" in old_parts or "ablation" in old_parts
    for part in spec.parts:
        for sec in _part_sections(part):
            if sec == "scores" and not (spec.needs_scores and scored_old):
                continue
            if sec != "scores" and part not in old_parts:
                continue
            a, b = old.get(sec) or {}, new.get(sec) or {}
            for k in sorted(set(a) | set(b)):
                if a.get(k) != b.get(k):
                    diffs.append(f"{sec}.{k}: {a.get(k)!r} there, {b.get(k)!r} now")
    if diffs:
        raise RunMismatchError(
            f"{where} already holds results of other settings ({'; '.join(diffs)}); use the same settings "
            f"to add to it, pick another --out folder, or {NEW_HELP.format(root=where)}")
    merged = dict(old)
    for part in spec.parts:
        for sec in _part_sections(part):
            if sec != "scores" or spec.needs_scores:
                merged[sec] = new[sec]
    if "ablation" in spec.parts:
        merged["name"], merged["description"] = new["name"], new["description"]
    merged["parts"] = [p for p in ("scores", "levels", "ablation") if p in old_parts | set(spec.parts)]
    if old.get("series", {}).get("steps") != new["series"]["steps"]:  # the steps of every part run into it
        merged["series"] = dict(new["series"], steps=sorted(steps) if steps else new["series"]["steps"])
    return spec_from_dict(merged, source=spec.source)


def open_store(plan: Plan, out: str | Path, *, new: bool = False,
               lock: RunLock | None = None) -> tuple[RunStore, list[CellKey]]:
    """Open (create, resume or extend) the run folder; returns the store and the folder's whole grid.

    Runs under the folder's ``lock`` (taken here when not given; the store keeps it as ``store.lock``
    and the caller releases it): reading and extending the manifest, and ``new`` (moving an old run
    aside to ``OUT.old-<time>``), happen with no other writer.
    """
    spec = plan.spec
    if lock is None:
        check_folder(out, new=new)
        lock = RunLock(out).acquire()
    mf = Path(out) / MANIFEST
    if new and mf.exists():
        lock.move_aside()
    cps = {str(s): h for s, h in plan.hashes.items()}
    extra = {"steps": plan.steps, "tasks": plan.tasks, "series_root": plan.series_root, "checkpoints": cps}
    if mf.exists():
        store = RunStore(out)
        old = store.manifest()
        steps = sorted(set(old.get("steps", [])) | set(plan.steps))
        try:
            merged = merge_into_folder(old.get("spec", {}), spec, steps)
        except SpecError as e:  # a folder written by an older version of the toolkit
            raise RunMismatchError(f"{out} holds a run this version cannot extend ({e}); pick another --out "
                                   f"folder or {NEW_HELP.format(root=out)}") from e
        except RunMismatchError as e:
            raise RunMismatchError(str(e).replace("this run folder", str(out))) from None
        grid = list(old.get("grid", [])) + [k for k in plan.keys if k not in set(old.get("grid", []))]
        tasks = list(dict.fromkeys(list(old.get("tasks", [])) + plan.tasks))
        extra = {"steps": steps, "tasks": tasks, "series_root": plan.series_root,
                 "checkpoints": {**(old.get("checkpoints") or {}), **cps}}
        if merged.hash() != old.get("spec_hash") or grid != old.get("grid") or extra["checkpoints"] != old.get("checkpoints"):
            store.extend_manifest(merged.to_dict(), merged.hash(), grid, extra)
        store = RunStore.open(out, merged.to_dict(), merged.hash(), grid, extra=extra)
        store.lock = lock
        return store, [CellKey.parse(k) for k in grid]
    store = RunStore.open(out, spec.to_dict(), spec.hash(), plan.keys, new=new, extra=extra)
    store.lock = lock
    return store, list(plan.grid)


# ---- the loop ----------------------------------------------------------------------------------

@dataclass
class RunSummary:
    cells_done: int = 0
    cells_skipped: int = 0
    cells_failed: int = 0
    rows_written: int = 0
    seconds: float = 0.0
    #: sequences run through the model, one per (condition, prompt or document); batched passes
    #: carry many of them, so this counts work, not calls
    forward_rows: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    #: cells re-sent because the Ray worker running them died (--executor ray)
    cells_retried: int = 0

    def line(self) -> str:
        rate = self.cells_done / (self.seconds / 60) if self.seconds > 0 else float("nan")
        fwd = self.forward_rows / self.seconds if self.seconds > 0 else float("nan")
        retried = f" ({self.cells_retried} re-sent after a worker died)" if self.cells_retried else ""
        return (f"cells: {self.cells_done} run{retried}, {self.cells_skipped} already done, {self.cells_failed} failed; "
                f"rows written: {self.rows_written}; time {self.seconds:.1f} s ({rate:.1f} cells/min, "
                f"{fwd:.1f} sequence forwards/s)")


class WeightLoader:
    """The model of each checkpoint in turn: one skeleton, tensors swapped in, the next ones read ahead.

    ``order`` is the sequence of steps the loop will visit; after switching to a step, the state
    dict of the next different step is read in a background thread.
    """

    def __init__(self, plan: Plan, order: list[int], preloaded: tuple[int, object] | None = None) -> None:
        self.plan, self.order = plan, order
        self._handle = None
        self._step: int | None = None
        if preloaded is not None:  # the model run_spec loaded to validate the spec against
            self._step, self._handle = preloaded
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self._ahead: dict[int, Future] = {}

    def _read(self, step: int) -> dict:
        from checkpoints.sweep import read_state_dict

        return read_state_dict(self.plan.locators[step], step)

    def handle(self, step: int):
        if self._step == step:
            return self._handle
        if self._handle is None or self.plan.spec.series.model is not None:
            self._ahead.pop(step, None)
            self._handle = self.plan.load(step)
        else:  # reuse the skeleton: load only the tensors of the next checkpoint
            from checkpoints.sweep import load_weights_into

            fut = self._ahead.pop(step, None)
            sd = fut.result() if fut is not None else self._read(step)
            load_weights_into(self._handle.hf, sd, step)
            self._handle.locator = self.plan.locators[step]
        self._step = step
        self._prefetch_after(step)
        return self._handle

    def _prefetch_after(self, step: int) -> None:
        if self.plan.spec.series.model is not None:
            return
        later = self.order[self.order.index(step) + 1:] if step in self.order else []
        nxt = next((s for s in later if s != step), None)
        if nxt is not None and nxt not in self._ahead:
            self._ahead[nxt] = self._pool.submit(self._read, nxt)

    def close(self) -> None:
        for f in self._ahead.values():
            f.cancel()
        self._pool.shutdown(wait=True)


def make_context(plan: Plan, key: CellKey, handle, inputs: dict, *, progress: bool = False) -> CellContext:
    """A cell's context from its model and the inputs of its dependencies (:meth:`Runner.inputs`)."""
    return CellContext(plan.spec, key.step, plan.tokens_seen.get(key.step), handle, progress=progress, **inputs)


class Runner:
    """Runs the missing cells of a plan into a store, one checkpoint after the other."""

    def __init__(self, plan: Plan, store: RunStore, *, folder_grid: list[CellKey] | None = None,
                 progress: bool = True, on_cell_done: Callable[[str], None] | None = None,
                 preloaded: tuple[int, object] | None = None, executor=None) -> None:
        self.plan, self.store, self.progress = plan, store, progress
        self.preloaded = preloaded
        #: None: the serial loop here; else an object with ``execute(runner, todo, summary, bar)``
        self.executor = executor
        self.folder_grid = list(plan.grid) if folder_grid is None else folder_grid
        self.on_cell_done = on_cell_done
        self._rows: dict[CellKey, pd.DataFrame] = {}

    def rows(self, key: CellKey) -> pd.DataFrame:
        """The rows of a finished cell (cached for the run)."""
        if key not in self._rows:
            if not self.store.is_done(str(key)):
                raise AblateError(f"cell {key} needs {key} first, which has not finished (see `ablate status`)")
            self._rows[key] = self.store.read_cell(str(key)).drop(columns="cell")
        return self._rows[key]

    def context(self, key: CellKey, handle) -> CellContext:
        """The :class:`CellContext` of ``key``: the inputs its dependencies computed."""
        return make_context(self.plan, key, handle, self.inputs(key), progress=self.progress)

    def inputs(self, key: CellKey) -> dict:
        """What ``key``'s context takes from the cells it depends on (``scores``, ``head_sets``,
        ``final_targets``), read from the store; raises AblateError when one has not finished."""
        from experiments.heads import tested_sets

        spec = self.plan.spec
        kw = {}
        for dep in dependencies(key, spec, self.plan.steps[-1]):
            if not self.store.is_done(str(dep)):
                raise AblateError(f"cell {key} needs cell {dep}, which has not finished (see `ablate status`)")
            if dep.kind == "scores":
                kw["scores"] = self.rows(dep)
            elif dep.kind == "heads" and dep.step != key.step:
                kw["final_targets"] = tuple(s.heads for s in tested_sets(self.rows(dep)) if s.role == "target")
            else:
                kw["head_sets"] = tested_sets(self.rows(dep))
        return kw

    def run(self) -> RunSummary:
        from tqdm.auto import tqdm

        summary = RunSummary()
        t0 = time.perf_counter()
        todo = todo_cells(self.plan, self.store)
        for k in todo:  # a cell computed from other inputs (e.g. retrained weights) is never reused
            if self.store.is_done(str(k)):
                self.store.discard_cell(str(k))
        summary.cells_skipped = len(self.plan.grid) - len(todo)
        bar = tqdm(total=len(self.plan.grid), initial=summary.cells_skipped, disable=not self.progress,
                   desc="cells", unit="cell", dynamic_ncols=True)
        try:
            if self.executor is None:
                self._run_serial(todo, summary, bar)
            else:  # e.g. experiments.ray_executor.RayExecutor: cells fan out, this process commits them
                self.executor.execute(self, todo, summary, bar)
        finally:
            bar.close()
        self.assemble()
        summary.seconds = time.perf_counter() - t0
        return summary

    def _run_serial(self, todo: list[CellKey], summary: RunSummary, bar) -> None:
        loader = WeightLoader(self.plan, [k.step for k in todo], self.preloaded)
        self.preloaded = None
        try:
            for key in todo:
                bar.set_postfix_str(str(key), refresh=True)
                self._run_one(key, loader, summary, bar)
                self.cell_finished(key, bar)
        finally:
            loader.close()

    def cell_finished(self, key: CellKey, bar) -> None:
        bar.update(1)
        if self.on_cell_done:
            self.on_cell_done(str(key))

    def _run_one(self, key: CellKey, loader: WeightLoader, summary: RunSummary, bar) -> None:
        try:
            ctx = self.context(key, loader.handle(key.step))
            rows = run_cell(ctx, key)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # a failing cell records its error and the run goes on
            self.fail(key, e, summary, bar)
            return
        self.commit(key, rows, int(rows.attrs.get("forward_rows", 0)), summary)

    # ---- the one commit path (serial and Ray) ---------------------------------------------
    def commit(self, key: CellKey, rows: pd.DataFrame, forward_rows: int, summary: RunSummary) -> None:
        """Write a finished cell's rows atomically with its input fingerprint (this process only)."""
        self.store.commit_cell(str(key), rows, inputs=self.plan.fingerprint(key))
        self._rows.pop(key, None)
        summary.cells_done += 1
        summary.rows_written += len(rows)
        summary.forward_rows += forward_rows

    def fail(self, key: CellKey, error: BaseException | str, summary: RunSummary, bar,
             traceback_text: str | None = None) -> None:
        """Record a failed cell (``RUN/cells/<key>.error.json``); the run goes on."""
        self.store.record_error(str(key), error, traceback_text=traceback_text)
        msg = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        summary.cells_failed += 1
        summary.failed[str(key)] = msg
        bar.write(f"cell {key} failed: {msg}")

    # ---- tables --------------------------------------------------------------------------
    def _table(self, kind: str, name: str) -> pd.DataFrame:
        """Finished cells of ``kind`` (folder grid order), without the bookkeeping ``cell`` column."""
        keys = [k for k in self.folder_grid if k.kind == kind and self.store.is_done(str(k))]
        frames = [self.store.read_cell(str(k)).drop(columns="cell") for k in keys]
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        self.store.write_table(df, name)
        return df

    def assemble(self) -> None:
        """Combine the folder's finished cells into its tables (see the module docstring)."""
        from experiments.tidy import patching_table, results_table

        kinds = {k.kind for k in self.folder_grid}
        g = [str(k) for k in self.folder_grid]
        if "scores" in kinds:
            self._table("scores", "head_scores")
        if "levels" in kinds:
            from ablate.icl.series import summarize

            items = self._table("levels", "icl_items")
            if len(items):
                self.store.write_table(summarize(items), "icl_summary")
        if "heads" not in kinds:
            return
        primary = self.store.manifest()["spec"]["operators"]["primary"]  # the folder's protocol
        icl = self.store.assemble([k for k in g if k.startswith("icl/")], "raw_icl")
        lr = self.store.assemble([k for k in g if k.startswith("lr/")], "raw_lr")
        self.store.assemble([k for k in g if k.startswith("heads/")], "head_sets")
        self.store.write_table(results_table(icl, lr, primary), "results")
        if "patch" in kinds:
            raw = self.store.assemble([k for k in g if k.startswith("patch/")], "raw_patch")
            self.store.write_table(patching_table(raw), "patching")
        if "paths" in kinds:
            self.store.assemble([k for k in g if k.startswith("paths/")], "paths")


def todo_cells(plan: Plan, store: RunStore | None) -> list[CellKey]:
    """The plan's cells without a finished file computed from their current inputs."""
    if store is None:
        return list(plan.grid)
    return [k for k in plan.grid if not store.is_current(str(k), plan.fingerprint(k))]


def _validation_model(plan: Plan, out: Path, new: bool, here: bool = True):
    """The model of the first checkpoint that has work to do, checked against the spec
    (:func:`experiments.validate.check_model`); None when every cell is done."""
    from experiments.validate import check_model

    existing = RunStore(out) if (out / MANIFEST).is_file() and not new else None
    todo = todo_cells(plan, existing)
    if not todo:
        return None
    step = todo[0].step
    from dataclasses import replace

    try:  # on a Ray driver the model is read on the CPU (the workers load it on their devices)
        handle = (plan if here else replace(plan, device="cpu", dtype="float32")).load(step)
    except AblateError:
        raise
    except Exception as e:  # a damaged weight file, a file that is not a model
        raise AblateError(f"{plan.spec.source}: cannot load the model of step {step} ({plan.locators[step]}): "
                          f"{type(e).__name__}: {e}; re-create or re-download it, or drop this step") from e
    check_model(plan.spec, handle, plan.tasks)
    return step, handle


def configure(plan: Plan, *, device: str = "cpu", dtype: str | None = None, remote: bool | str = False,
              executor=None) -> Plan:
    """The plan with its device and dtype resolved (:mod:`ablate.model.devices`): here for the serial
    loop, from the cluster's resources for a Ray executor (``executor.resolve_device``)."""
    from dataclasses import replace

    from ablate.model.devices import resolve_device, resolve_dtype_name

    if remote:
        if plan.spec.needs_scores:
            from ablate.model.handle import NDIFError

            raise NDIFError(f"{plan.spec.source}: --remote runs interventions on NDIF, but this spec scores heads "
                            "(scores / heads.select = \"sih\"), which reads attention patterns locally; set "
                            "heads.select = \"explicit\" with the heads to test, or run without --remote")
        return replace(plan, device="cpu", dtype="float32", remote=remote)
    dev = executor.resolve_device(device) if executor is not None else resolve_device(device)
    return replace(plan, device=dev, dtype=resolve_dtype_name(dtype, dev))


def run_spec(spec: Spec, out: str | Path, *, new: bool = False, progress: bool = True,
             on_cell_done: Callable[[str], None] | None = None, executor=None, device: str = "cpu",
             dtype: str | None = None, remote: bool | str = False) -> RunSummary:
    """Validate ``spec`` (against the model too), lock the run folder ``out``, open (create, resume or
    extend) it and run every missing cell; the lock is held until the tables are written.

    ``executor``: None runs the cells here, one after the other; a
    :class:`experiments.ray_executor.RayExecutor` fans them out to Ray workers while this process
    (the driver) holds the lock and commits every cell. ``device`` / ``dtype``: see
    :func:`configure`; ``remote``: run the traces on NDIF.
    """
    out = Path(out)
    plan = make_plan(spec)  # all spec / series errors surface before anything is written
    check_folder(out, new=new)  # never write into (or move aside) a folder that is not a run folder
    try:
        if executor is not None:
            executor.start()  # Ray missing or its cluster unreachable: one message, nothing written
        plan = configure(plan, device=device, dtype=dtype, remote=remote, executor=executor)
        preloaded = _validation_model(plan, out, new, here=executor is None)
        if executor is not None:
            preloaded = None  # the workers load their own copies
        with RunLock(out) as lock:
            if lock.took_over:
                import sys

                print(f"note: took over the stale lock of {out} left by process {lock.took_over.get('pid')} "
                      f"(started {lock.took_over.get('started')}), which is no longer running", file=sys.stderr)
            store, folder_grid = open_store(plan, out, new=new, lock=lock)
            if getattr(lock, "moved_to", None) is not None:
                import sys

                print(f"note: the old run in {out} was moved to {lock.moved_to}", file=sys.stderr)
            return Runner(plan, store, folder_grid=folder_grid, progress=progress, on_cell_done=on_cell_done,
                          preloaded=preloaded, executor=executor).run()
    finally:
        if executor is not None:
            executor.shutdown()
