"""The batched intervention engine: K conditions in one traced forward pass, via nnsight.

Operators (what is written into a head's slice of the o_proj input) are declared in
:mod:`ablate.intervene.operators`. :func:`run_conditions` evaluates K conditions (e.g. a target head
set and R random control sets) in *one* traced forward pass over ``K x B`` rows: row block k
carries condition k, expressed as a list of :class:`HeadWrite` edits per touched layer (which heads,
which positions, what value: zeros, one mean vector, or rows gathered from captured activations)
applied in place to the touched heads' slices of the o_proj input, chunk by chunk. The result is
identical to running each condition alone (tested), at the cost of one larger batch.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Sequence, Union

import torch
from jaxtyping import Bool, Float, Int, Shaped
from torch import Tensor

from ablate.model.errors import InterventionError, PositionError
from ablate.model.adapters import module_at
from ablate.model.heads import HeadSet
from ablate.model.handle import ModelHandle, check_finite, prepare_inputs
from ablate.intervene.operators import (OPERATORS, Condition, Intervention, MeanAblate, Patch, PositionSpec,
                                        ResampleAblate, ZeroAblate)

Batch = dict[str, torch.Tensor]


# ---------------------------------------------------------------------------------------------
# capturing head outputs


def _envoy(handle: ModelHandle, path: str):
    return module_at(handle.nn, path)


def capture_head_outputs(handle: ModelHandle, batch: Batch, layers: Iterable[int]
                         ) -> dict[int, Float[Tensor, "batch seq n_heads d_head"]]:
    """Per-head outputs ``{layer: [batch, seq, n_heads, d_head]}`` (the o_proj input, split by head)."""
    layers = sorted(set(int(l) for l in layers))
    a = handle.adapter
    saved = {}
    with torch.inference_mode():
        with handle.nn.trace(prepare_inputs(batch), **handle.trace_kwargs()) as tracer:
            for l in layers:
                saved[l] = _envoy(handle, a.module_path("o_proj", l)).input.save()
            if not handle.remote:
                tracer.stop()  # the blocks above the last captured layer and the unembedding never run
    B, T = batch["input_ids"].shape
    return {l: v.detach().reshape(B, T, a.n_heads, a.head_dim).clone() for l, v in saved.items()}


@dataclass(frozen=True)
class Prefix:
    """The clean residual stream entering block ``layer`` (``hidden = [B, T, d_model]``, the output of
    block ``layer - 1`` on the run's batch). Given to :func:`run_conditions`, blocks ``0..layer-1``
    are skipped (nnsight ``Envoy.skip``) and ``hidden`` enters block ``layer``: exact for
    conditions that touch only layers >= ``layer``, and it saves those blocks' compute."""

    layer: int
    hidden: Float[Tensor, "batch seq d_model"]


def capture_residual(handle: ModelHandle, batch: Batch, layers: Iterable[int]) -> dict[int, Prefix]:
    """One clean pass: the :class:`Prefix` of every layer in ``layers`` (layer 0 needs none)."""
    want = sorted({int(l) for l in layers if int(l) > 0})
    a = handle.adapter
    saved = {}
    with torch.inference_mode():
        with handle.nn.trace(prepare_inputs(batch), **handle.trace_kwargs()) as tracer:
            for l in want:
                saved[l] = _envoy(handle, a.module_path("block", l - 1)).output.save()
            if want and not handle.remote:
                tracer.stop()
    out = {}
    for l, v in saved.items():
        if not isinstance(v, torch.Tensor):  # pragma: no cover - transformers 5 blocks return tensors
            raise InterventionError(f"block {l - 1} of {a.family} returns {type(v).__name__}, not a tensor; "
                                    "the shared-prefix sweep needs tensor block outputs")
        out[l] = Prefix(l, v.detach().clone())
    return out


# ---------------------------------------------------------------------------------------------
# positions


def last_positions(mask: Shaped[Tensor, "batch seq"]) -> Int[Tensor, "batch"]:
    """Index of the last real token of each row ``[batch]`` (works for left and right padding)."""
    T = mask.shape[1]
    idx = torch.arange(T, device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), idx, torch.full_like(idx, -1)).max(dim=1).values


def position_mask(spec: PositionSpec, mask: Shaped[Tensor, "batch seq"]) -> Bool[Tensor, "batch seq"]:
    """Boolean ``[batch, seq]`` of the positions an intervention acts on."""
    B, T = mask.shape
    out = torch.zeros((B, T), dtype=torch.bool, device=mask.device)
    if spec == "all":
        # every slot, padding included: padded slots are masked out of attention, so this changes no
        # real token and matches editing the weights (the oracle used in the tests).
        return torch.ones((B, T), dtype=torch.bool, device=mask.device)
    if spec == "last":
        out[torch.arange(B), last_positions(mask)] = True
        return out
    for p in spec:
        if p >= T or p < -T:
            raise PositionError(
                f"position {p} is outside the sequence of length {T} (valid: {-T}..{T - 1}); "
                "use positions='last' for the final token of every row"
            )
        out[:, p % T] = True
    return out


# ---------------------------------------------------------------------------------------------
# the batched runner


def _index(ix: Sequence[int]) -> slice | torch.Tensor:
    """Sorted unique indices as a slice when they are one contiguous run (a view), else a tensor."""
    ix = sorted(set(int(i) for i in ix))
    if ix == list(range(ix[0], ix[-1] + 1)):
        return slice(ix[0], ix[-1] + 1)
    return torch.tensor(ix)


def _as_tensor(ix: slice | torch.Tensor, n: int) -> torch.Tensor:
    return torch.arange(n)[ix] if isinstance(ix, slice) else ix


@dataclass
class HeadWrite:
    """One intervention's write into one layer's o_proj input, for one condition's row block.

    The run's rows ``cond*B .. cond*B+B-1`` get, at heads ``heads`` and positions ``pos``:

    * ``kind="zero"``: 0 (no replacement tensor at all);
    * ``kind="const"``: ``value`` broadcast over the rows -- ``[h, dh]`` (position-averaged mean) or
      ``[p, h, dh]`` (per-position mean at the selected positions);
    * ``kind="rows"``: row-specific values gathered from captured activations ``value``
      (``[Bs, Ts, H, dh]``, all heads of the layer, shared by reference) at source rows ``src_rows``
      (``[B]``) and, for ``pos="last"``, source positions ``src_pos`` (``[B]``). Gathered per chunk,
      for the chunk's rows and the touched heads only.

    ``pos`` is ``"last"`` (each row's last real token) or an index along the sequence (a slice for
    ``"all"`` and contiguous explicit positions). Writes of one condition are applied in the order
    of its interventions, so where two overlap the later one wins (as a sequence of edits would).
    """

    cond: int
    heads: slice | torch.Tensor
    pos: str | slice | torch.Tensor
    kind: str
    value: torch.Tensor | None = None
    src_rows: torch.Tensor | None = None
    src_pos: torch.Tensor | None = None

    def values(self, i0: int, i1: int, n_heads: int, T: int) -> torch.Tensor | None:
        """Replacement for items ``i0:i1`` of the block: ``None`` (zeros) or a broadcastable tensor."""
        if self.kind == "zero":
            return None
        if self.kind == "const":
            return self.value
        hidx = _as_tensor(self.heads, n_heads)
        rows = self.src_rows[i0:i1]
        if self.pos == "last":
            return self.value[rows[:, None], self.src_pos[i0:i1, None], hidx[None, :]]  # [r, h, dh]
        pidx = _as_tensor(self.pos, T)
        return self.value[rows[:, None, None], pidx[None, :, None], hidx[None, None, :]]  # [r, p, h, dh]

    def apply(self, xv: torch.Tensor, r0: int, r1: int, i0: int, last: torch.Tensor) -> None:
        """Write into rows ``r0:r1`` of ``xv`` ``[rows, T, H, dh]`` (items ``i0:`` of the block) in place."""
        n, T, H, _ = xv.shape
        val = self.values(i0, i0 + (r1 - r0), H, T)
        val = 0 if val is None else val.to(xv.dtype)
        if self.pos == "last":
            hidx = _as_tensor(self.heads, H)
            xv[torch.arange(r0, r1)[:, None], last[i0:i0 + (r1 - r0), None], hidx[None, :]] = val
        elif isinstance(self.pos, torch.Tensor) and isinstance(self.heads, torch.Tensor):
            xv[r0:r1, self.pos[:, None], self.heads[None, :]] = val
        else:
            xv[r0:r1, self.pos, self.heads] = val  # a view when both are slices


def _write_for(iv: Intervention, k: int, layer: int, batch: Batch, acts: dict[str, dict],
               means: dict, last: torch.Tensor) -> HeadWrite:
    """The :class:`HeadWrite` of intervention ``iv`` (in condition ``k``) at one layer."""
    B, T = batch["input_ids"].shape
    heads = list(iv.heads.heads_in_layer(layer))
    hsel = _index(heads)
    if iv.positions in ("all", "last"):
        pos = slice(None) if iv.positions == "all" else "last"
    else:
        pos = _index([p % T for p in iv.positions])
    if isinstance(iv, ZeroAblate):
        return HeadWrite(k, hsel, pos, "zero")
    if isinstance(iv, MeanAblate):
        mode = "tokens" if not iv.per_position else ("last" if iv.positions == "last" else "position")
        mkey = (layer, mode, tuple(heads))
        if mkey not in means:
            # the touched heads only, reduced exactly as always (a reduction over more columns can
            # round differently in the last bit); shared by the conditions that ablate the same heads
            ref_act = acts["reference"]["acts"][layer][:, :, torch.tensor(heads)]
            ref_mask = acts["reference"]["mask"]
            if mode == "tokens":
                mu = ref_act[ref_mask.bool()].mean(0)  # [h, dh] over all real tokens
            elif mode == "last":
                mu = ref_act[torch.arange(ref_act.shape[0]), last_positions(ref_mask)].mean(0)
            else:
                if ref_act.shape[1] != T:
                    raise InterventionError(
                        f"per-position mean ablation needs a reference batch of the run's length {T}, "
                        f"got {ref_act.shape[1]}; pad the reference to the same length or use per_position=False"
                    )
                w = ref_mask.float()[:, :, None, None]
                mu = (ref_act * w).sum(0) / w.sum(0).clamp(min=1)  # [T, h, dh]
            means[mkey] = mu
        mu = means[mkey]
        return HeadWrite(k, hsel, pos, "const", mu[pos] if mode == "position" else mu)
    if isinstance(iv, (ResampleAblate, Patch)):
        key = "source" if "source" in acts else "self"
        if isinstance(iv, Patch) and "source" not in acts:
            raise InterventionError("Patch needs a clean `source` batch: run_conditions(..., source=clean_batch)")
        src, src_mask = acts[key]["acts"][layer], acts[key]["mask"]
        Bs, Ts = src.shape[:2]
        if isinstance(iv, Patch):
            if Bs != B:
                raise InterventionError(f"Patch source has {Bs} rows but the run has {B}; they must align row by row")
            rows = torch.arange(B)
        else:
            g = torch.Generator().manual_seed(int(iv.seed) + 7919 * layer)
            if key == "self":
                if B < 2:
                    raise InterventionError("resample ablation from the run's own batch needs >= 2 rows; pass source=")
                rows = (torch.arange(B) + torch.randint(1, B, (B,), generator=g)) % B
            else:
                rows = torch.randint(0, Bs, (B,), generator=g)
        if iv.positions == "last":
            return HeadWrite(k, hsel, pos, "rows", src, rows, last_positions(src_mask)[rows])
        if Ts != T:
            raise InterventionError(
                f"{iv.kind} at positions={iv.positions!r} needs source sequences of the run's length {T}, "
                f"got {Ts}; pad them to the same length or use positions='last'"
            )
        return HeadWrite(k, hsel, pos, "rows", src, rows)
    raise InterventionError(f"unsupported intervention {iv!r}")


def plan_writes(batch: Batch, conditions: Sequence[Condition], acts: dict[str, dict]) -> dict[int, list[HeadWrite]]:
    """Per touched layer, the :class:`HeadWrite` list of all conditions (condition order, then
    intervention order). Nothing of size ``K*B`` is built: zero writes carry no tensor, means carry
    one ``[h, dh]`` (or ``[p, h, dh]``) vector per condition, and resample/patch values are gathered
    per chunk from the captured activations."""
    last = last_positions(batch["attention_mask"])
    means: dict = {}
    out: dict[int, list[HeadWrite]] = {}
    for k, cond in enumerate(conditions):
        for iv in cond.interventions:
            for layer in iv.heads.layers():
                out.setdefault(layer, []).append(_write_for(iv, k, layer, batch, acts, means, last))
    return out


def _chunk_writes(plan: dict[int, list[HeadWrite]], B: int, rows: slice) -> list[tuple[int, list[HeadWrite]]]:
    """``[(layer, writes)]`` (layers ascending) of the conditions whose row blocks meet ``rows``."""
    k0, k1 = rows.start // B, (rows.stop - 1) // B
    out = []
    for layer in sorted(plan):
        ws = plan[layer]  # sorted by condition: bisect, so a K-condition sweep stays linear in K
        ws = ws[bisect.bisect_left(ws, k0, key=_cond_of):bisect.bisect_right(ws, k1, key=_cond_of)]
        if ws:
            out.append((layer, ws))
    return out


def _cond_of(w: HeadWrite) -> int:
    return w.cond


def _apply_writes(xv: torch.Tensor, writes: list[HeadWrite], rows: slice, B: int, last: torch.Tensor) -> None:
    """Apply ``writes`` to the chunk ``xv`` ``[n, T, H, dh]`` holding run rows ``rows``, in place."""
    for w in writes:
        lo, hi = max(rows.start, w.cond * B), min(rows.stop, (w.cond + 1) * B)
        w.apply(xv, lo - rows.start, hi - rows.start, lo - w.cond * B, last)


def _validate(handle: ModelHandle, conditions: Sequence[Condition], T: int) -> None:
    a = handle.adapter
    for c in conditions:
        for iv in c.interventions:
            iv.heads.validate(a.n_layers, a.n_heads)
            if not isinstance(iv.positions, str):
                for p in iv.positions:
                    if p >= T or p < -T:
                        raise PositionError(
                            f"{iv}: position {p} is outside the sequence of length {T} "
                            f"(valid: {-T}..{T - 1})"
                        )


Reducer = Callable[[torch.Tensor, slice], torch.Tensor]


def token_losses(logits: Float[Tensor, "rows seq vocab"], input_ids: Int[Tensor, "rows seq"]
                 ) -> Float[Tensor, "rows seq-1"]:
    """Next-token cross-entropy ``[rows, seq-1]``: loss of predicting token t+1 from position t."""
    lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return -lp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def run_conditions(handle: ModelHandle, batch: Batch, conditions: Sequence[Any], *,
                   reference: Batch | None = None, source: Batch | None = None,
                   reduce: str | Reducer = "logits", max_rows: int | None = None,
                   check_nan: bool = True, prefix: Prefix | None = None,
                   captured: dict[str, dict] | None = None,
                   gather: torch.Tensor | None = None) -> torch.Tensor:
    """Run K conditions on one batch in batched traced forward passes; stack results ``[K, B, ...]``.

    Args:
        handle: the model.
        batch: ``{"input_ids": [B, T], "attention_mask": [B, T]}`` (left or right padding).
        conditions: each a :class:`Condition`, an :class:`Intervention`, a list of them, or ``None``
            for the clean run.
        reference: batch for :class:`MeanAblate` means (required when a condition uses it).
        source: batch for :class:`Patch` (required; row-aligned with ``batch``) and
            :class:`ResampleAblate` (optional; default is the run's own batch).
        reduce: ``"logits"`` -> ``[K, B, T, V]``; ``"last_logits"`` -> ``[K, B, V]`` at each row's last
            real token; ``"token_loss"`` -> ``[K, B, T-1]`` next-token losses; or a callable
            ``f(logits_chunk, rows_slice) -> tensor`` applied per chunk of rows (rows index into the
            repeated ``K*B`` batch; row r is condition ``r // B``, item ``r % B``).
        max_rows: rows per forward pass (default: as many as keep a chunk's logits near 64 MB).
        prefix: a :class:`Prefix` of this batch (from :func:`capture_residual`): blocks below
            ``prefix.layer`` are skipped and its clean hidden state enters that block. Every
            condition must touch only layers >= ``prefix.layer``.
        captured: activations already captured for mean / resample / patch operators (as built
            by :func:`capture_operator_inputs`), so a sweep of many calls captures them once.
        gather: ``[B, P]`` positions (into the padded batch) of the logits the caller reads: the
            final hidden state is gathered there before the unembedding, so the logits handed to
            ``reduce`` are ``[rows, P, V]`` and the vocabulary projection runs on ``P`` positions,
            not ``T`` (exact: the unembedding is position-wise). Only with a callable ``reduce``.

    Returns:
        A tensor whose first two dims are (condition, item).
    """
    conds = [Condition.coerce(c) for c in conditions]
    if not conds:
        raise InterventionError("run_conditions needs at least one condition (use None for the clean run)")
    if gather is not None:
        if not callable(reduce):
            raise InterventionError(f"gather= hands reduce gathered logits [rows, P, V]; reduce={reduce!r} "
                                    "expects full logits: pass a callable reduce, or no gather")
        if gather.dim() != 2 or gather.shape[0] != batch["input_ids"].shape[0]:
            raise InterventionError(f"gather has shape {tuple(gather.shape)}; it must be [B, P] with B = "
                                    f"{batch['input_ids'].shape[0]} rows of the batch")
    batch = {"input_ids": batch["input_ids"],
             "attention_mask": batch.get("attention_mask", torch.ones_like(batch["input_ids"]))}
    B, T = batch["input_ids"].shape
    _validate(handle, conds, T)
    a = handle.adapter
    K = len(conds)

    if prefix is not None:
        low = [c.name for c in conds for iv in c.interventions if min(iv.heads.layers()) < prefix.layer]
        if low:
            raise InterventionError(f"conditions {low} touch layers below the shared prefix's layer "
                                    f"{prefix.layer}; their effect would be skipped")
        if tuple(prefix.hidden.shape[:2]) != (B, T):
            raise InterventionError(f"prefix hidden state has shape {tuple(prefix.hidden.shape)}; the batch is "
                                    f"[{B}, {T}] (capture it with capture_residual on the same batch)")
    acts = captured if captured is not None else capture_operator_inputs(
        handle, batch, conds, reference=reference, source=source)

    plan = plan_writes(batch, conds, acts)
    last = last_positions(batch["attention_mask"])
    if reduce == "last_logits" and gather is None:  # unembed only each row's last real token
        gather, reduce = last[:, None], _first_gathered
    ids = batch["input_ids"].repeat(K, 1)
    am = batch["attention_mask"].repeat(K, 1)
    if max_rows is None:
        if handle.remote:  # NDIF: every condition of the batch in one request
            max_rows = K * B
        else:  # the batching rule of ablate.model.devices (CPU: ~64 MB of logits per pass)
            from ablate.model.devices import max_rows as rows_for

            max_rows = rows_for(handle, T, K * B)
    outs = []
    for start in range(0, K * B, max_rows):
        rows = slice(start, min(K * B, start + max_rows))
        chunk = prepare_inputs({"input_ids": ids[rows], "attention_mask": am[rows]})
        n = rows.stop - rows.start
        todo = _chunk_writes(plan, B, rows)  # only the layers this chunk's conditions touch
        with torch.inference_mode():
            with handle.nn.trace(chunk, **handle.trace_kwargs()):
                if prefix is not None and prefix.layer > 0:
                    h0 = prefix.hidden[torch.arange(rows.start, rows.stop) % B]
                    for i in range(prefix.layer):  # skipped: only block layer-1's output is read
                        _envoy(handle, a.module_path("block", i)).skip(h0)
                for l, writes in todo:
                    x = _envoy(handle, a.module_path("o_proj", l)).input
                    _apply_writes(x.view(n, T, a.n_heads, a.head_dim), writes, rows, B, last)
                if gather is not None:  # unembed only the positions the caller reads
                    u = _envoy(handle, a.unembed_path())
                    g = gather[torch.arange(rows.start, rows.stop) % B].to(handle.device)
                    u.input = u.input[torch.arange(n, device=handle.device)[:, None], g]
                logits = handle.nn.output.logits.save()
        red = _reduce(reduce, logits, chunk, rows)
        if check_nan and red.is_floating_point() and not _sum_is_finite(red):
            # NaN/inf anywhere upstream reaches the reduced output, so checking it is enough (and cheap)
            check_finite(red, f"model outputs under conditions {[c.name for c in conds]}")
        outs.append(red)
    out = outs[0] if len(outs) == 1 else torch.cat(outs, 0)
    return out.view(K, B, *out.shape[1:])



def capture_operator_inputs(handle: ModelHandle, batch: Batch, conditions: Sequence[Any], *,
                            reference: Batch | None = None, source: Batch | None = None,
                            reuse: dict[str, dict] | None = None) -> dict[str, dict]:
    """The clean head outputs that mean / resample / patch operators of ``conditions`` read (one
    capture pass per source batch, only the layers they touch).

    ``reuse``: captures from an earlier call with the same conditions whose source does not change
    between batches (``"reference"``, the mean-ablation batch) are taken from it, not run again.
    """
    conds = [Condition.coerce(c) for c in conditions]
    reuse = {k: v for k, v in (reuse or {}).items() if k == "reference"}
    need: dict[str, set[int]] = {}
    for c in conds:
        for iv in c.interventions:
            key = None
            if isinstance(iv, MeanAblate):
                key = "reference"
                if reference is None and "reference" not in reuse:
                    raise InterventionError("MeanAblate needs a `reference` batch: run_conditions(..., reference=ref_batch)")
            elif isinstance(iv, Patch):
                key = "source"
                if source is None:
                    raise InterventionError("Patch needs a clean `source` batch: run_conditions(..., source=clean_batch)")
            elif isinstance(iv, ResampleAblate):
                key = "source" if source is not None else "self"
            if key:
                need.setdefault(key, set()).update(iv.heads.layers())
    acts: dict[str, dict] = {}
    srcs = {"reference": reference, "source": source, "self": batch}
    for key, layers in need.items():
        if key in reuse:
            acts[key] = reuse[key]
            continue
        b = srcs[key]
        b = {"input_ids": b["input_ids"], "attention_mask": b.get("attention_mask", torch.ones_like(b["input_ids"]))}
        acts[key] = {"acts": capture_head_outputs(handle, b, layers), "mask": b["attention_mask"]}
    return acts


def _first_gathered(logits: torch.Tensor, rows: slice) -> torch.Tensor:
    return logits[:, 0]


def _sum_is_finite(t: torch.Tensor) -> bool:
    """True when no element is NaN/inf, by one streaming sum (a NaN or inf anywhere makes it
    non-finite) instead of a full boolean tensor: ~25x cheaper on a chunk of logits. A False can
    also be a finite overflow (fp16), so the caller then runs the exact element-wise check."""
    return bool(torch.isfinite(t.sum()))


def _reduce(reduce: str | Reducer, logits: torch.Tensor, chunk: Batch, rows: slice) -> torch.Tensor:
    if callable(reduce):
        return reduce(logits, rows)
    if reduce == "logits":
        return logits
    if reduce == "last_logits":
        last = last_positions(chunk["attention_mask"])
        return logits[torch.arange(logits.shape[0]), last]
    if reduce == "token_loss":
        return token_losses(logits, chunk["input_ids"])
    raise InterventionError(f"unknown reduce={reduce!r}; use 'logits', 'last_logits', 'token_loss' or a callable")


def run_intervention(handle: ModelHandle, batch: Batch, condition: Any = None, **kwargs) -> torch.Tensor:
    """One condition (or the clean run); returns ``[B, ...]`` (see :func:`run_conditions`)."""
    return run_conditions(handle, batch, [condition], **kwargs)[0]
