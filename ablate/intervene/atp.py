"""Attribution patching (AtP): every head's ablation or patching effect from one forward and one
backward pass, as a screen before exact verification.

For head h of layer l with output ``a`` (its slice of the o_proj input, docs/science.md §1) and
a metric M of the model's output, an intervention replaces ``a`` by ``a'`` at the chosen positions.
AtP estimates the effect to first order around the run without the intervention::

    effect_h = M(a') - M(a)  ~=  sum over positions p of (a'_p - a_p) . dM/da_p

with ``a'`` = 0 (zero ablation), the head's mean over a reference batch (mean ablation), or the
head's output on a clean prompt (patching a clean run into a corrupted one: ``a`` is then the
corrupted run's activation and the gradient is taken on the corrupted run).

**Sign convention.** ``effect = M(intervened) - M(not intervened)``, the same sign as the exact
effect from :func:`ablate.intervene.sweep.head_sweep`: a head that supports the metric has a
negative ablation effect; a head whose clean output restores the metric has a positive patching
effect.

**AtP* corrections (Kramar et al. 2024).** Their QK fix recomputes the attention softmax exactly
when a *query or key* is patched; here the nodes are head *outputs*, which enter the rest of the
network linearly through o_proj, so the fix has nothing to correct for the node itself (downstream
attention saturation remains a first-order error, measured in the benchmark). GradDrop needs one
extra backward pass per layer; it is not implemented. Effects of heads whose estimate is large are
meant to be verified exactly: :func:`screen_and_verify`.

Gradients are read through nnsight (``with metric.backward(): x.grad``).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from ablate.intervene.engine import Batch, _envoy, capture_head_outputs, last_positions, position_mask
from ablate.intervene.operators import PositionSpec
from ablate.model.errors import InterventionError
from ablate.model.handle import ModelHandle, prepare_inputs
from ablate.model.heads import HeadSet

#: a metric maps the output logits [B, T, V] and the batch to one number per row [B]
Metric = Callable[[torch.Tensor, Batch], torch.Tensor]
SCREENABLE = ("zero", "mean", "patch")


def last_token_logprob(token_ids: torch.Tensor) -> Metric:
    """Metric: log P(token_ids[b]) at row b's last real position (e.g. the gold label of a prompt)."""
    def metric(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        last = last_positions(batch["attention_mask"])
        lp = torch.log_softmax(logits[torch.arange(logits.shape[0]), last].float(), -1)
        return lp[torch.arange(lp.shape[0]), token_ids.to(lp.device)]
    return metric


def mean_token_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Metric: mean next-token loss of each row over its real tokens."""
    lp = torch.log_softmax(logits[:, :-1].float(), -1)
    nll = -lp.gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    m = batch["attention_mask"][:, 1:].to(nll.dtype) * batch["attention_mask"][:, :-1].to(nll.dtype)
    return (nll * m).sum(1) / m.sum(1).clamp(min=1)


@dataclass
class AtPResult:
    """Estimated per-head effects. ``effects[l, h]`` is the mean over rows; ``per_row[b, l, h]``."""

    effects: Float[Tensor, "layers heads"]
    per_row: Float[Tensor, "batch layers heads"]
    operator: str

    def frame(self) -> pd.DataFrame:
        L, H = self.effects.shape
        return pd.DataFrame([{"layer": l, "head": h, "operator": self.operator, "atp_effect": float(self.effects[l, h])}
                             for l in range(L) for h in range(H)])

    def top(self, k: int, by: str = "abs") -> list[HeadSet]:
        """The k heads with the largest estimated |effect| (``by="abs"``), or most negative (``"neg"``)."""
        v = self.effects.abs() if by == "abs" else -self.effects
        H = v.shape[1]
        order = v.flatten().argsort(descending=True)[:k]
        return [HeadSet([(int(i) // H, int(i) % H)]) for i in order]


def atp_effects(handle: ModelHandle, batch: Batch, metric: Metric, operator: str = "zero", *,
                positions: PositionSpec = "all", reference: Batch | None = None,
                source: Batch | None = None) -> AtPResult:
    """AtP estimate of every head's effect on ``metric`` (see the module docstring).

    Args:
        handle: the model.
        batch: the run (for ``operator="patch"``: the corrupted prompts).
        metric: ``f(logits, batch) -> [B]``; see :func:`last_token_logprob`, :func:`mean_token_loss`.
        operator: ``"zero"``, ``"mean"`` (needs ``reference``) or ``"patch"`` (needs ``source``, the
            clean prompts, row-aligned; equal lengths, or ``positions="last"`` to align each row's
            last real token as the patching code does).
        positions: where the intervention acts (``"all"``, ``"last"`` or explicit indices).

    Raises:
        InterventionError: unknown operator, missing reference/source, or paired prompts of
            unequal length at ``positions`` other than ``"last"``.
    """
    if operator not in SCREENABLE:
        raise InterventionError(f"AtP screens operators {SCREENABLE}, got {operator!r} (resampling draws a "
                                "random other row; screen it as mean ablation or verify it exactly)")
    a = handle.adapter
    L, H, dh = a.n_layers, a.n_heads, a.head_dim
    batch = {"input_ids": batch["input_ids"],
             "attention_mask": batch.get("attention_mask", torch.ones_like(batch["input_ids"]))}
    B, T = batch["input_ids"].shape
    pos = position_mask(positions, batch["attention_mask"])  # [B, T]
    layers = list(range(L))
    if operator == "mean":
        if reference is None:
            raise InterventionError("AtP with operator='mean' needs a `reference` batch")
        ref = capture_head_outputs(handle, reference, layers)
        rm = reference.get("attention_mask", torch.ones_like(reference["input_ids"])).bool()
        repl = {l: ref[l][rm].mean(0)[None, None] for l in layers}  # [1, 1, H, dh]
    elif operator == "patch":
        if source is None:
            raise InterventionError("AtP with operator='patch' needs the clean `source` batch")
        if source["input_ids"].shape[0] != B:
            raise InterventionError(f"AtP patch: source has {source['input_ids'].shape[0]} rows, the run {B}")
        src = capture_head_outputs(handle, source, layers)
        smask = source.get("attention_mask", torch.ones_like(source["input_ids"]))
        if positions == "last":
            sl, rl = last_positions(smask), last_positions(batch["attention_mask"])
            repl = {}
            for l in layers:
                full = torch.zeros(B, T, H, dh, dtype=src[l].dtype)
                full[torch.arange(B), rl] = src[l][torch.arange(B), sl]
                repl[l] = full
        else:
            if source["input_ids"].shape[1] != T:
                raise InterventionError(
                    f"AtP patch at positions={positions!r} needs clean and corrupted prompts of the same "
                    f"length (got {source['input_ids'].shape[1]} and {T} tokens); pad them to one length "
                    "or use positions='last'")
            repl = src
    else:
        repl = {l: None for l in layers}

    inp = prepare_inputs(batch)
    saved_x, saved_g, xs = {}, {}, {}
    with torch.enable_grad(), _frozen(handle.hf):
        with handle.nn.trace(inp):
            emb = _envoy(handle, a.spec.embed).output
            emb.requires_grad_(True)
            for l in layers:
                xs[l] = _envoy(handle, a.module_path("o_proj", l)).input
                saved_x[l] = xs[l].save()
            logits = handle.nn.output.logits
            total = metric(logits, batch).sum()  # rows are independent: d total / d a_b = d M_b / d a_b
            values = total.save()
            with total.backward():
                for l in reversed(layers):
                    saved_g[l] = xs[l].grad.save()
    if not torch.isfinite(values.detach()):
        raise InterventionError("AtP: the metric is not finite on the run")
    per_row = torch.zeros(B, L, H, dtype=torch.float32)
    w = pos[:, :, None, None].float()
    for l in layers:
        x = saved_x[l].detach().float().reshape(B, T, H, dh)
        g = saved_g[l].detach().float().reshape(B, T, H, dh)
        r = torch.zeros_like(x) if repl[l] is None else repl[l].float().expand(B, T, H, dh)
        per_row[:, l] = ((r - x) * g * w).sum(dim=(1, 3))
    return AtPResult(per_row.mean(0), per_row, operator)


@contextmanager
def _frozen(model: torch.nn.Module):
    """Parameters without gradients for the duration (only activation gradients are needed, and
    no ``.grad`` may be left on the user's model)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)


def screen_and_verify(handle: ModelHandle, batch: Batch, metric: Metric, operator: str = "zero", *, k: int = 8,
                      positions: PositionSpec = "all", reference: Batch | None = None,
                      source: Batch | None = None) -> pd.DataFrame:
    """Screen every head by AtP, then measure the top-k (by |estimate|) exactly.

    Returns a tidy frame (layer, head, atp_effect, exact_effect (NaN for unverified heads), rank).
    The exact effect is ``mean_b [M_b(intervened) - M_b(clean)]`` from the shared-prefix sweep.
    """
    from ablate.intervene.sweep import head_sweep

    res = atp_effects(handle, batch, metric, operator, positions=positions, reference=reference, source=source)
    df = res.frame()
    df["rank"] = df["atp_effect"].abs().rank(ascending=False, method="first").astype(int)
    top = res.top(k)
    base_batch = batch
    logits = head_sweep(handle, base_batch, top, operator, positions=positions, reference=reference,
                        source=source, reduce="logits")
    from ablate.intervene.engine import run_intervention

    clean = metric(run_intervention(handle, base_batch, None), base_batch)
    exact = {(next(iter(hs)).layer, next(iter(hs)).head): float((metric(logits[i], base_batch) - clean).mean()) for i, hs in enumerate(top)}
    df["exact_effect"] = [exact.get((r.layer, r.head), float("nan")) for r in df.itertuples()]
    return df.sort_values("rank").reset_index(drop=True)
