"""The cells of the one grid: typed keys, the context a cell sees, and what each kind computes.

Cell kinds (``str(CellKey)`` is the stable key of a cell in ``RUN/cells/`` and the manifest)::

    scores/step=S               head scores of checkpoint S (ablate.scores.scan.scan_model) -> head_scores
    levels/step=S               ICL levels of checkpoint S, no intervention (ablate icl) -> icl_items
    heads/step=S                the tested head sets of S (experiments.heads; reads scores/step=S)
    lr/step=S/op=none           loss reduction of the held-out documents, clean run (once per step)
    lr/step=S/op=O              ... under every head set ablated by operator O
    icl/step=S/op=none/task=T   the few-shot items of task T, clean run (once per step and task,
                                shared by every operator)
    icl/step=S/op=O/task=T      ... under every head set ablated by operator O
    patch/step=S/task=T         task T's shuffled-label prompts, each set patched from the clean prompt

A cell is a pure function of its :class:`CellContext` (the spec, the step, tokens seen, the model
handle and, for the cells that need them, the head sets or the scores of the same step) -- every
random choice is seeded from the spec's seed and the key -- so a killed run that is re-run ends with
exactly the tables of an uninterrupted one. Rows are tidy: one per (condition, item) or (condition,
document), with ``step, tokens_seen, operator, role, control_index, head_set`` added; clean rows
carry ``operator = "none"``, role ``clean``, condition index 0, and an ablated set keeps the index it
has in the block ``[clean, target.., induction?, random_0 ..]``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Literal, get_args

import pandas as pd

from ablate.intervene.operators import OPERATORS, Condition, make_operator
from ablate.model.errors import AblateError
from ablate.model.heads import HeadSet

if TYPE_CHECKING:
    from ablate.model.handle import ModelHandle
    from experiments.heads import TestedSet
    from experiments.spec import Spec

#: how many characters of held-out text make one loss-reduction document
LR_DOC_CHARS = 2400
MEAN_REFERENCE_TOKENS = 64
#: the operator name of the clean condition (no intervention)
CLEAN = "none"

Kind = Literal["scores", "levels", "heads", "lr", "icl", "patch", "paths"]
KINDS: tuple[str, ...] = get_args(Kind)


# ---- keys --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CellKey:
    """A cell's identity. ``str(key)`` is its stable string form; :meth:`parse` reads it back."""

    kind: Kind
    step: int
    op: str | None = None
    task: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise AblateError(f"unknown cell kind {self.kind!r}; known: {', '.join(KINDS)}")
        needs_op, needs_task = self.kind in ("lr", "icl"), self.kind in ("icl", "patch", "paths")
        if needs_op != (self.op is not None) or needs_task != (self.task is not None):
            raise AblateError(f"cell kind {self.kind!r} takes {'an operator' if needs_op else 'no operator'} and "
                              f"{'a task' if needs_task else 'no task'}, got op={self.op!r}, task={self.task!r}")
        if self.op is not None and self.op != CLEAN and self.op not in OPERATORS:
            raise AblateError(f"unknown operator {self.op!r} in a cell key; known: {CLEAN}, {', '.join(OPERATORS)}")

    def __str__(self) -> str:
        parts = [self.kind, f"step={self.step}"]
        if self.op is not None:
            parts.append(f"op={self.op}")
        if self.task is not None:
            parts.append(f"task={self.task}")
        return "/".join(parts)

    _RE = re.compile(r"^(?P<kind>[a-z]+)/step=(?P<step>-?\d+)(?:/op=(?P<op>[a-z_]+))?(?:/task=(?P<task>[\w.-]+))?$")

    @classmethod
    def parse(cls, text: str) -> "CellKey":
        m = cls._RE.match(text)
        if not m:
            raise AblateError(f"not a cell key: {text!r} (expected e.g. 'icl/step=10/op=mean/task=T')")
        return cls(m["kind"], int(m["step"]), m["op"], m["task"])

    @property
    def clean(self) -> bool:
        return self.op == CLEAN

    def at(self, kind: Kind) -> "CellKey":
        """The ``kind`` cell of the same step (``scores`` / ``heads`` / ``levels``)."""
        return CellKey(kind, self.step)


# ---- the context -------------------------------------------------------------------------------

@dataclass(frozen=True)
class CellContext:
    """Everything a cell may read: no runner, no store."""

    spec: "Spec"
    step: int
    tokens_seen: int | None
    handle: "ModelHandle"
    #: the head sets of this step (the rows of its heads cell), for lr / icl / patch cells
    head_sets: tuple["TestedSet", ...] = ()
    #: this step's scores rows (its scores cell), for the heads cell
    scores: pd.DataFrame | None = None
    #: the final checkpoint's targets, for the heads cell when ``heads.at = "final"``
    final_targets: tuple[HeadSet, ...] | None = None
    progress: bool = False


def cell_seed(seed: int, key: str) -> int:
    return int(hashlib.sha256(f"{seed}|{key}".encode()).hexdigest()[:8], 16)


@lru_cache(maxsize=4)
def heldout_documents(n: int, chars: int = LR_DOC_CHARS) -> tuple[str, ...]:
    """``n`` documents of natural English from the end of the KJV text, ``chars`` characters each.

    The built-in trainer keeps the last twentieth of its natural-text tokens out of training (its
    eval-loss split); with the default corpus (KJV, no Debian fortunes installed) these documents
    lie inside that tail. With another training corpus they are simply unseen-domain text.
    """
    from checkpoints import corpus

    text = corpus.kjv_text()
    paras = [p for p in text.split("\n\n") if p.strip()]
    docs, cur = [], ""
    for p in reversed(paras):
        cur = (p + " " + cur).strip()
        if len(cur) >= chars:
            docs.append(cur[-chars:])
            cur = ""
            if len(docs) == n:
                break
    return tuple(docs)


# ---- stages shared by the ablation cells -------------------------------------------------------

@dataclass(frozen=True)
class ConditionBlock:
    """The conditions of one cell and a frame describing each (role, control_index, head_set)."""

    conditions: list[Condition]
    meta: pd.DataFrame


_ROLE_ORDER = {"target": 0, "induction": 1, "random": 2}


def condition_block(ctx: CellContext, op: str, seed: int) -> ConditionBlock:
    """The conditions of operator ``op`` over the step's head sets.

    ``op = "none"``: the clean run alone (index 0). Otherwise every non-empty set ablated (or patched)
    by ``op``, numbered from 1 as in the block ``[clean, target.., induction?, random..]``, so a
    condition's index does not depend on whether the clean run shares its forward passes.
    """
    if op == CLEAN:
        return ConditionBlock([Condition("clean", ())],
                              pd.DataFrame({"role": ["clean"], "control_index": [-1], "head_set": [""],
                                            "condition_index": [0]}))
    pos = "last" if op == "patch" else ctx.spec.operators.positions
    sets = sorted(ctx.head_sets, key=lambda s: (_ROLE_ORDER[s.role], s.control_index))
    conds, meta = [], []
    for s in sets:
        if len(s.heads) == 0:
            continue
        conds.append(Condition(s.condition_name, (make_operator(op, s.heads, pos, seed=seed),)))
        meta.append((s.role, s.control_index, str(s.heads), len(conds)))
    return ConditionBlock(conds, pd.DataFrame(meta, columns=["role", "control_index", "head_set", "condition_index"]))


def _reference_batch(ctx: CellContext) -> dict:
    docs = heldout_documents(max(4, ctx.spec.icl.lr_documents))
    return ctx.handle.encode(list(docs[:8]), max_length=MEAN_REFERENCE_TOKENS)


def _decorate(df: pd.DataFrame, ctx: CellContext, op: str, block: ConditionBlock, offset: int) -> pd.DataFrame:
    df = df.rename(columns={"condition": "condition_name"})
    df["condition_index"] = df["condition_index"] + offset
    df = df.merge(block.meta, on="condition_index", how="left")
    df.insert(0, "step", ctx.step)
    df.insert(1, "tokens_seen", ctx.tokens_seen)
    df.insert(2, "operator", op)
    return df


def _ablation_inputs(ctx: CellContext, key: CellKey) -> tuple[ConditionBlock, dict | None, int]:
    block = condition_block(ctx, key.op, cell_seed(ctx.spec.seed, f"op={key.op}/step={key.step}"))
    reference = _reference_batch(ctx) if key.op == "mean" else None
    return block, reference, 0 if key.clean else 1


def _nothing_to_ablate() -> pd.DataFrame:
    """An ablation cell of a checkpoint where no head set is non-empty (nothing passed the selection
    rule and no induction set is asked for): finished, with no rows (the heads cell says why)."""
    out = pd.DataFrame()
    out.attrs["forward_rows"] = 0
    return out


# ---- the cell functions ------------------------------------------------------------------------

def scores_cell(ctx: CellContext, key: CellKey) -> pd.DataFrame:
    """Head scores of the checkpoint under ``spec.scores`` (columns of ``head_scores.parquet``)."""
    from ablate.scores.scan import COLUMNS, scan_model

    df = scan_model(ctx.handle, None, ctx.spec.scores, seed=ctx.spec.seed, progress=ctx.progress)
    df.insert(0, "tokens_seen", ctx.tokens_seen)
    df.insert(0, "step", ctx.step)
    df["tokens_seen"] = df["tokens_seen"].astype("Int64")
    return df[COLUMNS]


def levels_cell(ctx: CellContext, key: CellKey) -> pd.DataFrame:
    """ICL items of every task of ``spec.levels`` without intervention (rows of ``icl_items.parquet``)."""
    from ablate.icl.series import evaluate_model
    from experiments.spec import resolve_tasks

    lv = ctx.spec.levels
    df = evaluate_model(ctx.handle, tasks=resolve_tasks(lv.tasks), shots=lv.shots, n_items=lv.n_items,
                        controls=lv.controls, seed=ctx.spec.seed, part=lv.part, batch_size=lv.batch_size,
                        add_bos=lv.add_bos, step=ctx.step, tokens_seen=ctx.tokens_seen, progress=ctx.progress)
    return df


def heads_cell(ctx: CellContext, key: CellKey) -> pd.DataFrame:
    from experiments.heads import select_head_sets

    return select_head_sets(ctx)


def lr_cell(ctx: CellContext, key: CellKey) -> pd.DataFrame:
    from ablate.icl.loss_reduction import loss_reduction

    block, reference, offset = _ablation_inputs(ctx, key)
    if not block.conditions:
        return _nothing_to_ablate()
    docs = heldout_documents(ctx.spec.icl.lr_documents)
    df = loss_reduction(ctx.handle, list(docs), block.conditions, reference=reference)
    df["task"] = "lr_docs"
    out = _decorate(df, ctx, key.op, block, offset)
    out.attrs["forward_rows"] = len(docs) * len(block.conditions)
    return out


def icl_items(spec: "Spec", task: str):
    from ablate.icl.tasks import make_items

    return make_items(task, spec.icl.shots, spec.icl.items, seed=spec.seed, controls=list(spec.icl.controls))


def icl_cell(ctx: CellContext, key: CellKey) -> pd.DataFrame:
    from ablate.icl.metrics import evaluate_items

    block, reference, offset = _ablation_inputs(ctx, key)
    if not block.conditions:
        return _nothing_to_ablate()
    items = icl_items(ctx.spec, key.task)
    df = evaluate_items(ctx.handle, items, block.conditions, reference=reference)
    out = _decorate(df, ctx, key.op, block, offset)
    out.attrs["forward_rows"] = len(items) * len(block.conditions)
    return out


def patch_cell(ctx: CellContext, key: CellKey) -> pd.DataFrame:
    """Clean prompts (clean run) + shuffled-label prompts under [corrupted, each set patched]."""
    from ablate.icl.metrics import evaluate_items
    from ablate.icl.tasks import make_items

    spec = ctx.spec
    shots = [s for s in spec.icl.shots if s >= 1]
    items = make_items(key.task, shots, spec.icl.items, seed=spec.seed, controls=["clean", "shuffled"])
    clean = [it for it in items if it.control == "clean"]
    shuffled = [it for it in items if it.control == "shuffled"]
    block = condition_block(ctx, "patch", 0)
    full = ConditionBlock([Condition("clean", ())] + block.conditions,
                          pd.concat([condition_block(ctx, CLEAN, 0).meta, block.meta], ignore_index=True))
    ref = evaluate_items(ctx.handle, clean, [None])
    pat = evaluate_items(ctx.handle, shuffled, full.conditions, patch_from=clean)
    out = pd.concat([_decorate(ref, ctx, "patch", full, 0), _decorate(pat, ctx, "patch", full, 0)],
                    ignore_index=True)
    out.attrs["forward_rows"] = len(clean) * (1 + len(full.conditions))
    return out


def path_prompts(spec: "Spec", task: str):
    """The path cell's prompts: clean items at ``paths.shots`` (and their shuffled-label twins)."""
    from ablate.icl.tasks import make_items

    shots = spec.paths.shots or max(spec.icl.shots)
    items = make_items(task, [shots], spec.icl.items, seed=spec.seed, controls=["clean", "shuffled"])
    return [it for it in items if it.control == "clean"], [it for it in items if it.control == "shuffled"]


def paths_cell(ctx: CellContext, key: CellKey) -> pd.DataFrame:
    """Path patching of every tested head set on one task (rows of ``paths.parquet``).

    Each row of the batch is a clean prompt followed by the tokens all its candidate labels share
    (e.g. SmolLM2's " " before a digit), so the metric is read where the labels first differ: the
    gold's log-prob (or logit) there. One row per (head set, item, path) with ``effect`` =
    intervened - clean (negative: the path carries the label); ``total`` and ``nonlinear`` rows too.
    With ``sender = "patch"`` the sender's value is its output on the shuffled-label prompt of the same
    item; items whose two prompts tokenise to different lengths are left out (counted in
    ``rows.attrs["skipped"]``).
    """
    import torch

    from ablate.icl.metrics import prepare_prompt
    from ablate.intervene.paths import path_group, path_patch
    from ablate.model.handle import pad_batch

    ps = ctx.spec.paths
    tok = ctx.handle.tokenizer
    clean, shuffled = path_prompts(ctx.spec, key.task)
    ids, src, labels, kept = [], [], [], []
    for it, sh in zip(clean, shuffled):
        pp = prepare_prompt(tok, it.prompt, it.labels, it.gold)
        c = pp.cand_ids
        n = 0
        while all(len(x) > n + 1 for x in c) and len({x[n] for x in c}) == 1:
            n += 1  # the shared leading tokens of every label
        row = pp.prompt_ids + list(c[pp.gold][:n])
        if ps.sender == "patch":
            q = prepare_prompt(tok, sh.prompt, sh.labels, sh.gold)
            srow = q.prompt_ids + list(c[pp.gold][:n])
            if len(srow) != len(row):
                continue
            src.append(srow)
        ids.append(row)
        labels.append(c[pp.gold][n])
        kept.append(it)
    if not ids:
        raise AblateError(f"paths/{key.task}: no item has clean and shuffled prompts of equal token length; "
                          "use paths.sender = \"mean\"")
    both = pad_batch(ids + src, tok.pad_token_id, padding_side="left", device=ctx.handle.device)
    batch = {k: v[:len(ids)] for k, v in both.items()}
    corrupted = {k: v[len(ids):] for k, v in both.items()} if src else None
    reference = _reference_batch(ctx) if ps.sender == "mean" else None
    lab = torch.tensor(labels)
    frames = []
    for s in sorted(ctx.head_sets, key=lambda s: (_ROLE_ORDER[s.role], s.control_index)):
        if len(s.heads) == 0:
            continue
        res = path_patch(ctx.handle, batch, lab, s.heads, sender=ps.sender, corrupted=corrupted,
                         reference=reference, positions=ctx.spec.operators.positions, metric=ps.metric,
                         kinds=ps.kinds)
        cols = {**res.paths, "total": res.total, "nonlinear": res.nonlinear}
        for name, eff in cols.items():
            frames.append(pd.DataFrame({
                "role": s.role, "control_index": s.control_index, "head_set": str(s.heads),
                "shots": [it.shots for it in kept], "item": [it.item for it in kept],
                "path": name, "group": name if name in ("total", "nonlinear") else path_group(name),
                "effect": eff.double().numpy(), "clean": res.clean.double().numpy()}))
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "step", ctx.step)
    out.insert(1, "tokens_seen", ctx.tokens_seen)
    out.insert(2, "task", key.task)
    out.insert(3, "sender", ps.sender)
    out.insert(4, "metric", ps.metric)
    out.attrs["forward_rows"] = len(ids) * len({p for p in out["path"]}) * out["head_set"].nunique()
    out.attrs["skipped"] = len(clean) - len(kept)
    return out


#: kind -> cell function (ctx, key) -> rows
CELLS: dict[str, Callable[[CellContext, CellKey], pd.DataFrame]] = {
    "scores": scores_cell, "levels": levels_cell, "heads": heads_cell, "lr": lr_cell, "icl": icl_cell,
    "patch": patch_cell, "paths": paths_cell,
}


def dependencies(key: CellKey, spec: "Spec", final_step: int) -> list[CellKey]:
    """The cells whose rows ``key``'s context is built from (they come earlier in the grid)."""
    if key.kind == "heads":
        deps = [key.at("scores")] if spec.needs_scores else []
        if spec.heads.select == "sih" and spec.heads.at == "final" and key.step != final_step:
            deps.append(CellKey("heads", final_step))
        return deps
    if key.kind in ("lr", "icl", "patch", "paths") and not key.clean:
        return [key.at("heads")]
    return []


def input_steps(key: CellKey, spec: "Spec", final_step: int) -> list[int]:
    """The checkpoints whose weights ``key``'s rows depend on: its own, and those its dependencies read
    (the final checkpoint, when every step ablates the final SIHs). For content-keyed cells."""
    out = [key.step]
    for dep in dependencies(key, spec, final_step):
        out += [s for s in input_steps(dep, spec, final_step) if s not in out]
    return out


def run_cell(ctx: CellContext, key: CellKey) -> pd.DataFrame:
    """Compute one cell's rows."""
    return CELLS[key.kind](ctx, key)
