"""What each kind of cell computes. Every function is a pure function of (spec, cell key, weights).

See :mod:`experiments.runner` for the grid. Rows are tidy: one per (condition, item) or
(condition, document), with ``step, tokens_seen, operator, role, control_index, head_set`` added.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import pandas as pd

from ablate.model.errors import AblateError
from ablate.model.heads import HeadSet
from ablate.intervene.operators import Condition, make_operator

#: how many characters of held-out text make one loss-reduction document
LR_DOC_CHARS = 2400
MEAN_REFERENCE_TOKENS = 64


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


def condition_block(runner, step: int, op: str, seed: int) -> tuple[list[Condition], pd.DataFrame]:
    """``[clean, target, induction?, random_0..R-1]`` and a frame describing each condition."""
    sets = runner.heads_for(step)
    pos = runner.plan.spec.icl.positions
    conds = [Condition("clean", ())]
    meta = [("clean", -1, "")]
    order = sorted(sets, key=lambda rk: ({"target": 0, "induction": 1, "random": 2}[rk[0]], rk[1]))
    for role, ci in order:
        hs = sets[(role, ci)]
        if len(hs) == 0:
            continue
        conds.append(Condition(f"{role}{'' if ci < 0 else ci}", (make_operator(op, hs, "last" if op == "patch" else pos, seed=seed),)))
        meta.append((role, ci, str(hs)))
    frame = pd.DataFrame(meta, columns=["role", "control_index", "head_set"])
    frame["condition_index"] = range(len(frame))
    return conds, frame


def _reference_batch(handle, spec) -> dict:
    docs = heldout_documents(max(4, spec.icl.lr_documents))
    b = handle.encode(list(docs[:8]), max_length=MEAN_REFERENCE_TOKENS)
    return b


def _decorate(df: pd.DataFrame, runner, step: int, op: str, meta: pd.DataFrame) -> pd.DataFrame:
    df = df.rename(columns={"condition": "condition_name"}).merge(meta, on="condition_index", how="left")
    df.insert(0, "step", step)
    df.insert(1, "tokens_seen", runner.plan.tokens_seen.get(step))
    df.insert(2, "operator", op)
    return df


def run_cell(runner, handle, k: dict, key: str) -> pd.DataFrame:
    kind = k["kind"]
    spec = runner.plan.spec
    step = int(k["step"])
    if kind == "heads":
        from experiments.heads import select_head_sets

        fixed = None
        final = runner.plan.steps[-1]
        if spec.heads.select == "sih" and spec.heads.at == "final" and step != final:
            fixed = runner.heads_for(final)[("target", -1)]
        return select_head_sets(handle, spec, step, runner.plan.tokens_seen.get(step), fixed_target=fixed)
    if kind == "patch":
        return _patch_cell(runner, handle, k, step)
    op = k["op"]
    conds, meta = condition_block(runner, step, op, cell_seed(spec.seed, f"op={op}/step={step}"))
    reference = _reference_batch(handle, spec) if op == "mean" else None
    if kind == "lr":
        from ablate.icl.loss_reduction import loss_reduction

        docs = heldout_documents(spec.icl.lr_documents)
        df = loss_reduction(handle, list(docs), conds, reference=reference)
        df["task"] = "lr_docs"
        out = _decorate(df, runner, step, op, meta)
        out.attrs["forward_rows"] = len(docs) * len(conds)
        return out
    if kind == "icl":
        from ablate.icl.metrics import evaluate_items
        from ablate.icl.tasks import make_items

        items = make_items(k["task"], spec.icl.shots, spec.icl.items, seed=spec.seed,
                           controls=list(spec.icl.controls))
        df = evaluate_items(handle, items, conds, reference=reference)
        out = _decorate(df, runner, step, op, meta)
        out.attrs["forward_rows"] = len(items) * len(conds)
        return out
    raise AblateError(f"unknown cell kind {kind!r} in key {key!r}")


def _patch_cell(runner, handle, k: dict, step: int) -> pd.DataFrame:
    """Clean prompts (clean run) + shuffled-label prompts under [corrupted, each set patched]."""
    from ablate.icl.metrics import evaluate_items
    from ablate.icl.tasks import make_items

    spec = runner.plan.spec
    shots = [s for s in spec.icl.shots if s >= 1]
    items = make_items(k["task"], shots, spec.icl.items, seed=spec.seed, controls=["clean", "shuffled"])
    clean = [it for it in items if it.control == "clean"]
    shuffled = [it for it in items if it.control == "shuffled"]
    conds, meta = condition_block(runner, step, "patch", 0)
    ref = evaluate_items(handle, clean, [None])
    pat = evaluate_items(handle, shuffled, conds, patch_from=clean)
    out = pd.concat([_decorate(ref, runner, step, "patch", meta), _decorate(pat, runner, step, "patch", meta)],
                    ignore_index=True)
    out.attrs["forward_rows"] = len(clean) * (1 + len(conds))
    return out
