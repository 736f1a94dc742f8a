"""Exact ablation sweeps that share the clean prefix of the forward pass.

Ablating a head of layer l cannot change anything computed before layer l. So a sweep over many
head sets runs the clean model once, keeps the residual stream entering every layer
(:func:`~ablate.intervene.engine.capture_residual`), and for the sets of layer l recomputes only
layers l..L-1 from that clean state (the blocks below are skipped through nnsight's
``Envoy.skip``). The numbers are those of the per-set loop (tested to 1e-5); the work falls from
``N * L`` block evaluations to ``L + sum over sets of (L - l)``, i.e. towards ``2L / (L + 1)`` times
less for a sweep over every head of every layer (1.6x at L = 4, 1.94x at L = 30).

Example::

    from ablate.intervene.sweep import head_sweep, single_heads
    sets = single_heads(handle)                       # every head alone
    losses = head_sweep(handle, batch, sets, "zero", reduce="token_loss")   # [n_sets, B, T-1]
"""

from __future__ import annotations

from typing import Sequence

import torch

from ablate.intervene.engine import Batch, capture_operator_inputs, capture_residual, run_conditions
from ablate.intervene.operators import Condition, make_operator
from ablate.model.errors import InterventionError
from ablate.model.handle import ModelHandle
from ablate.model.heads import HeadSet


def single_heads(handle: ModelHandle) -> list[HeadSet]:
    """Every head of the model as its own set, in (layer, head) order."""
    a = handle.adapter
    return [HeadSet([(l, h)]) for l in range(a.n_layers) for h in range(a.n_heads)]


def head_sweep(handle: ModelHandle, batch: Batch, head_sets: Sequence[HeadSet | str], operator: str = "zero", *,
               positions="all", reference: Batch | None = None, source: Batch | None = None,
               reduce: str = "logits", seed: int = 0, max_rows: int | None = None,
               share_prefix: bool = True) -> torch.Tensor:
    """The model's output with each of ``head_sets`` ablated (or patched), ``[n_sets, B, ...]``.

    Args:
        handle: the model.
        batch: ``{"input_ids", "attention_mask"}``.
        head_sets: the sets to intervene on, one condition each (a set may span layers; it is
            recomputed from its lowest layer).
        operator: a name of :data:`~ablate.intervene.operators.OPERATORS`.
        positions, seed: as for the operator.
        reference, source: as for :func:`~ablate.intervene.engine.run_conditions` (captured once).
        reduce: ``"logits"``, ``"last_logits"`` or ``"token_loss"`` (a callable reducer's row indices
            would refer to one layer's group, so only named reductions are accepted here).
        max_rows: rows per forward pass (default: at least the batch, and as many as keep a pass's
            logits near 16 MB; measured on 2 CPU threads, a 4-layer Llama with an 8k vocabulary:
            all-heads sweep 1.29 s with 4-row passes, 1.41 s with 8, 1.84 s with 16).
        share_prefix: False runs the same conditions without skipping the clean prefix (the
            reference the benchmark and the tests compare against).

    Returns:
        Results in the order of ``head_sets``.
    """
    if callable(reduce):
        raise InterventionError("head_sweep takes reduce='logits', 'last_logits' or 'token_loss'")
    sets = [HeadSet.parse(s) for s in head_sets]
    if not sets:
        raise InterventionError("head_sweep needs at least one head set")
    empty = [i for i, s in enumerate(sets) if len(s) == 0]
    if empty:
        raise InterventionError(f"head_sweep: head set(s) at index {empty} are empty")
    batch = {"input_ids": batch["input_ids"],
             "attention_mask": batch.get("attention_mask", torch.ones_like(batch["input_ids"]))}
    conds = [Condition(str(s), (make_operator(operator, s, positions, seed=seed),)) for s in sets]
    B, T = batch["input_ids"].shape
    if max_rows is None:
        max_rows = max(B, int(2**22 // max(1, T * handle.adapter.vocab_size)))
    captured = capture_operator_inputs(handle, batch, conds, reference=reference, source=source)
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(sets):
        groups.setdefault(min(s.layers()) if share_prefix else 0, []).append(i)
    prefixes = capture_residual(handle, batch, groups) if share_prefix else {}
    out: list[torch.Tensor | None] = [None] * len(sets)
    for layer in sorted(groups):
        idx = groups[layer]
        res = run_conditions(handle, batch, [conds[i] for i in idx], reference=reference, source=source,
                             reduce=reduce, max_rows=max_rows, prefix=prefixes.get(layer), captured=captured)
        for j, i in enumerate(idx):
            out[i] = res[j]
    return torch.stack(out)
