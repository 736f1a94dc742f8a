"""The resumable experiment runner: a spec expands to a grid of cells; each cell is idempotent.

Cells (keys are stable strings; the order below is the run order)::

    heads/step=S                    select the target (SIH) set, the induction comparison set and the
                                    R matched random sets at checkpoint S -> RUN/cells, one row per set
    lr/step=S/op=O                  loss reduction on held-out documents under every condition
    icl/step=S/op=O/task=T          the few-shot items of task T (all shots, all controls) under every
                                    condition
    patch/step=S/task=T             (operators.patch) task T's shuffled-label prompts (shots >= 1), each
                                    set's heads patched from the clean prompt at the query token

A condition block is ``[clean, target, induction?, random_0 .. random_{R-1}]``, all run in the same
batched forward passes (:func:`ablate.intervene.engine.run_conditions`). A cell is a pure function of
(spec, cell key) -- every random choice is seeded from the spec's seed and the key -- so a killed run
that is re-run ends with exactly the tables of an uninterrupted one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


from ablate.model.errors import AblateError
from ablate.model.heads import HeadSet
from experiments.spec import Spec, SpecError
from experiments.store import RunStore


@dataclass
class Plan:
    """What a spec expands to: the checkpoints, the tasks and the cell grid (no files touched)."""

    spec: Spec
    steps: list[int]
    tokens_seen: dict[int, int | None]
    locators: dict[int, str]
    tasks: list[str]
    grid: list[str]
    series_root: str | None = None


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

    def line(self) -> str:
        rate = self.cells_done / (self.seconds / 60) if self.seconds > 0 else float("nan")
        fwd = self.forward_rows / self.seconds if self.seconds > 0 else float("nan")
        return (f"cells: {self.cells_done} run, {self.cells_skipped} already done, {self.cells_failed} failed; "
                f"rows written: {self.rows_written}; time {self.seconds:.1f} s ({rate:.1f} cells/min, "
                f"{fwd:.1f} sequence forwards/s)")


def _resolve_tasks(spec: Spec) -> list[str]:
    from ablate.icl.tasks import TASKS, get_task

    tasks = spec.icl.tasks
    if tasks == "default":
        return list(TASKS)
    if isinstance(tasks, str):
        tasks = [tasks]
    out = []
    for t in tasks:
        try:
            out.append(get_task(t).name)
        except AblateError as e:
            raise SpecError(f"{spec.source}: key icl.tasks: {e}") from e
    return out


def make_plan(spec: Spec) -> Plan:
    """Resolve the series, steps and tasks of ``spec`` and list its cells. Raises SpecError early."""
    s = spec.series
    series_root = None
    if s.model is not None:
        steps, toks, locs = [0], {0: None}, {0: s.model}
    else:
        from checkpoints.series import CheckpointSeries

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
        steps = list(sel.steps)
        toks = {cp.step: cp.tokens_seen for cp in sel}
        locs = {cp.step: str(series.local_path(cp)) for cp in sel}
        series_root = str(root)
    tasks = _resolve_tasks(spec)
    grid = []
    if spec.heads.at == "final" and spec.heads.select == "sih":
        grid.append(f"heads/step={steps[-1]}")  # the final checkpoint's SIHs are needed first
    for st in steps:
        if f"heads/step={st}" not in grid:
            grid.append(f"heads/step={st}")
        for op in spec.operators.all:
            grid.append(f"lr/step={st}/op={op}")
            for t in tasks:
                grid.append(f"icl/step={st}/op={op}/task={t}")
        if spec.operators.patch:
            for t in tasks:
                grid.append(f"patch/step={st}/task={t}")
    return Plan(spec, steps, toks, locs, tasks, grid, series_root)


def parse_key(key: str) -> dict[str, str]:
    kind, *parts = key.split("/")
    d = {"kind": kind}
    for p in parts:
        k, v = p.split("=", 1)
        d[k] = v
    return d


class Runner:
    """Runs the missing cells of a plan into a store. Loads each checkpoint once for all its cells."""

    def __init__(self, plan: Plan, store: RunStore, *, progress: bool = True,
                 on_cell_done: Callable[[str], None] | None = None) -> None:
        self.plan, self.store, self.progress = plan, store, progress
        self.on_cell_done = on_cell_done
        self._handle = None
        self._handle_step = None
        self._heads_cache: dict[int, dict] = {}

    # ---- model ---------------------------------------------------------------------------
    def handle(self, step: int):
        if self._handle_step != step:
            from ablate.model.handle import load_model

            if self._handle is None or self.plan.spec.series.model is not None:
                self._handle = load_model(self.plan.locators[step], revision=self.plan.spec.series.revision)
            else:  # reuse the skeleton: load only the tensors of the next checkpoint
                from checkpoints.sweep import load_weights_into, read_state_dict

                load_weights_into(self._handle.hf, read_state_dict(self.plan.locators[step], step), step)
                self._handle.locator = self.plan.locators[step]
            self._handle_step = step
        return self._handle

    # ---- the loop ------------------------------------------------------------------------
    def run(self) -> RunSummary:
        from tqdm.auto import tqdm

        from experiments import cells

        summary = RunSummary()
        t0 = time.perf_counter()
        todo = [k for k in self.plan.grid if not self.store.is_done(k)]
        summary.cells_skipped = len(self.plan.grid) - len(todo)
        bar = tqdm(total=len(self.plan.grid), initial=summary.cells_skipped, disable=not self.progress,
                   desc="cells", unit="cell", dynamic_ncols=True)
        for key in todo:
            k = parse_key(key)
            step = int(k["step"])
            bar.set_postfix_str(key, refresh=True)
            try:
                h = self.handle(step)
                rows = cells.run_cell(self, h, k, key)
                self.store.commit_cell(key, rows)
                summary.cells_done += 1
                summary.rows_written += len(rows)
                summary.forward_rows += int(rows.attrs.get("forward_rows", 0))
            except KeyboardInterrupt:
                raise
            except Exception as e:  # a failing cell records its error and the run goes on
                self.store.record_error(key, e)
                summary.cells_failed += 1
                summary.failed[key] = f"{type(e).__name__}: {e}"
                bar.write(f"cell {key} failed: {type(e).__name__}: {e}")
            bar.update(1)
            if self.on_cell_done:
                self.on_cell_done(key)
        bar.close()
        self.assemble()
        summary.seconds = time.perf_counter() - t0
        return summary

    def assemble(self) -> None:
        """Combine finished cells into RUN/raw_icl, raw_lr, head_sets and the tidy RUN/results."""
        from experiments.tidy import patching_table, results_table

        g = self.plan.grid
        icl = self.store.assemble([k for k in g if k.startswith("icl/")], "raw_icl")
        lr = self.store.assemble([k for k in g if k.startswith("lr/")], "raw_lr")
        self.store.assemble([k for k in g if k.startswith("heads/")], "head_sets")
        self.store.write_table(results_table(icl, lr, self.plan.spec.operators.primary), "results")
        if self.plan.spec.operators.patch:
            raw = self.store.assemble([k for k in g if k.startswith("patch/")], "raw_patch")
            self.store.write_table(patching_table(raw), "patching")

    def heads_for(self, step: int) -> dict:
        """The head sets of checkpoint ``step`` (from its finished heads cell)."""
        if step not in self._heads_cache:
            df = self.store.read_cell(f"heads/step={step}")
            self._heads_cache[step] = {
                (r.role, int(r.control_index)): HeadSet.parse(r.head_set) for r in df.itertuples()
            }
        return self._heads_cache[step]


def run_spec(spec: Spec, out: str | Path, *, new: bool = False, progress: bool = True,
             on_cell_done: Callable[[str], None] | None = None) -> RunSummary:
    """Validate ``spec``, open (or resume) the run folder ``out`` and run every missing cell."""
    plan = make_plan(spec)  # all spec / series errors surface before anything is written
    store = RunStore.open(out, spec.to_dict(), spec.hash(), plan.grid, new=new,
                          extra={"steps": plan.steps, "tasks": plan.tasks, "series_root": plan.series_root})
    return Runner(plan, store, progress=progress, on_cell_done=on_cell_done).run()
