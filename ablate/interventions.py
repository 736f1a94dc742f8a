"""Head interventions written into the *input* of the attention output projection, via nnsight.

A head's output is the slice ``h*d_head:(h+1)*d_head`` of the o_proj input (PAPER.md section 1).
Every operator replaces that slice at chosen positions; they differ only in the replacement:

=================  ==========================================================================
``ZeroAblate``     0
``MeanAblate``     the head's mean activation over a reference batch (position-averaged, or
                   per position)
``ResampleAblate`` the head's activation on another input (row drawn with a seed; never itself)
``Patch``          the head's activation on the *source* (clean) input, row by row, written into
                   the run on the (corrupted) input
=================  ==========================================================================

Positions: ``"all"``, ``"last"`` (last real token of each row, padding-aware) or a tuple of
explicit indices (negative counts from the end).

**Batched conditions.** :func:`run_conditions` evaluates K conditions (e.g. a target head set and R
random control sets) in *one* traced forward pass over ``K x B`` rows: row block k carries condition
k, expressed as a per-row boolean head mask and a replacement tensor for each touched layer. The
result is identical to running each condition alone (tested), at the cost of one larger batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Sequence, Union

import torch

from ablate.errors import InterventionError, PositionError
from ablate.heads import HeadSet
from ablate.model import ModelHandle, check_finite, prepare_inputs

PositionSpec = Union[str, tuple[int, ...]]
Batch = dict[str, torch.Tensor]


def _norm_positions(p: Any) -> PositionSpec:
    if isinstance(p, str):
        if p not in ("all", "last"):
            raise PositionError(f"positions must be 'all', 'last' or a list of ints, got {p!r}")
        return p
    try:
        return tuple(int(x) for x in p)
    except TypeError as e:
        raise PositionError(f"positions must be 'all', 'last' or a list of ints, got {p!r}") from e


@dataclass(frozen=True)
class Intervention:
    """Base class: a head set and the positions to act on. Serialisable via :meth:`to_dict`."""

    heads: HeadSet
    positions: PositionSpec = "all"
    kind: ClassVar[str] = "base"

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", HeadSet.parse(self.heads))
        object.__setattr__(self, "positions", _norm_positions(self.positions))

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "heads": str(self.heads),
             "positions": self.positions if isinstance(self.positions, str) else list(self.positions)}
        for k, v in self.__dict__.items():
            if k not in ("heads", "positions"):
                d[k] = v
        return d

    @staticmethod
    def from_dict(d: dict) -> "Intervention":
        d = dict(d)
        kind = d.pop("kind", None)
        if kind not in OPERATORS:
            raise InterventionError(f"unknown intervention kind {kind!r}; known: {sorted(OPERATORS)}")
        return OPERATORS[kind](**d)

    def __str__(self) -> str:
        pos = self.positions if isinstance(self.positions, str) else ",".join(map(str, self.positions))
        return f"{self.kind}[{self.heads}]@{pos}"


@dataclass(frozen=True)
class ZeroAblate(Intervention):
    """Replace the head's output with zeros."""

    kind: ClassVar[str] = "zero"


@dataclass(frozen=True)
class MeanAblate(Intervention):
    """Replace the head's output with its mean over a reference batch.

    ``per_position=False``: mean over all real tokens of the reference (``[d_head]`` per head).
    ``per_position=True``: mean over reference rows at each position (``[T, d_head]``; the reference
    must have the run's length) -- for ``positions='last'``, the mean over the reference rows' last tokens.
    """

    per_position: bool = False
    kind: ClassVar[str] = "mean"


@dataclass(frozen=True)
class ResampleAblate(Intervention):
    """Replace the head's output with its output on another input row (drawn with ``seed``).

    Source rows come from ``source`` given to :func:`run_conditions`, or the run's own batch (then
    row i never receives itself).
    """

    seed: int = 0
    kind: ClassVar[str] = "resample"


@dataclass(frozen=True)
class Patch(Intervention):
    """Write the head's output on the clean ``source`` batch (row by row) into the corrupted run."""

    kind: ClassVar[str] = "patch"


OPERATORS: dict[str, type[Intervention]] = {c.kind: c for c in (ZeroAblate, MeanAblate, ResampleAblate, Patch)}


@dataclass(frozen=True)
class Condition:
    """A named tuple of interventions applied together (empty = the clean run)."""

    name: str
    interventions: tuple[Intervention, ...] = field(default_factory=tuple)

    @staticmethod
    def coerce(c: Any) -> "Condition":
        if isinstance(c, Condition):
            return c
        if c is None:
            return Condition("clean", ())
        if isinstance(c, Intervention):
            return Condition(str(c), (c,))
        c = tuple(c)
        return Condition("+".join(map(str, c)) or "clean", c)


# ---------------------------------------------------------------------------------------------
# capturing head outputs


def _envoy(handle: ModelHandle, path: str):
    obj = handle.nn
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def capture_head_outputs(handle: ModelHandle, batch: Batch, layers: Iterable[int]) -> dict[int, torch.Tensor]:
    """Per-head outputs ``{layer: [batch, seq, n_heads, d_head]}`` (the o_proj input, split by head)."""
    layers = sorted(set(int(l) for l in layers))
    a = handle.adapter
    saved = {}
    with torch.inference_mode():
        with handle.nn.trace(prepare_inputs(batch)):
            for l in layers:
                saved[l] = _envoy(handle, a.module_path("o_proj", l)).input.save()
    B, T = batch["input_ids"].shape
    return {l: v.detach().reshape(B, T, a.n_heads, a.head_dim).clone() for l, v in saved.items()}


# ---------------------------------------------------------------------------------------------
# positions


def last_positions(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row ``[batch]`` (works for left and right padding)."""
    T = mask.shape[1]
    idx = torch.arange(T, device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), idx, torch.full_like(idx, -1)).max(dim=1).values


def position_mask(spec: PositionSpec, mask: torch.Tensor) -> torch.Tensor:
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


def _replacement_for(iv: Intervention, layer: int, heads: list[int], batch: Batch,
                     pos: torch.Tensor, acts: dict[str, dict], dh: int) -> torch.Tensor:
    """Replacement values ``[B, T, len(heads), dh]`` for one intervention at one layer."""
    B, T = batch["input_ids"].shape
    hidx = torch.tensor(heads)
    if isinstance(iv, ZeroAblate):
        return torch.zeros(B, T, len(heads), dh)
    if isinstance(iv, MeanAblate):
        ref_act, ref_mask = acts["reference"]["acts"][layer][:, :, hidx], acts["reference"]["mask"]
        if not iv.per_position:
            m = ref_mask.bool()
            mu = ref_act[m].mean(0)  # [h, dh]
            return mu.expand(B, T, len(heads), dh)
        if iv.positions == "last":
            last = last_positions(ref_mask)
            mu = ref_act[torch.arange(ref_act.shape[0]), last].mean(0)
            return mu.expand(B, T, len(heads), dh)
        if ref_act.shape[1] != T:
            raise InterventionError(
                f"per-position mean ablation needs a reference batch of the run's length {T}, "
                f"got {ref_act.shape[1]}; pad the reference to the same length or use per_position=False"
            )
        w = ref_mask.float()[:, :, None, None]
        mu = (ref_act * w).sum(0) / w.sum(0).clamp(min=1)
        return mu.expand(B, T, len(heads), dh)
    if isinstance(iv, (ResampleAblate, Patch)):
        key = "source" if "source" in acts else "self"
        if isinstance(iv, Patch) and "source" not in acts:
            raise InterventionError("Patch needs a clean `source` batch: run_conditions(..., source=clean_batch)")
        src, src_mask = acts[key]["acts"][layer][:, :, hidx], acts[key]["mask"]
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
            out = torch.zeros(B, T, len(heads), dh)
            s_last = last_positions(src_mask)[rows]
            out[torch.arange(B), last_positions(batch["attention_mask"])] = src[rows, s_last]
            return out
        if Ts != T:
            raise InterventionError(
                f"{iv.kind} at positions={iv.positions!r} needs source sequences of the run's length {T}, "
                f"got {Ts}; pad them to the same length or use positions='last'"
            )
        return src[rows]
    raise InterventionError(f"unsupported intervention {iv!r}")


def build_masks(handle: ModelHandle, batch: Batch, conditions: Sequence[Condition],
                acts: dict[str, dict]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per touched layer: (mask ``[K*B, T, H]`` bool, replacement ``[K*B, T, H, dh]``)."""
    a = handle.adapter
    B, T = batch["input_ids"].shape
    K = len(conditions)
    out: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for k, cond in enumerate(conditions):
        for iv in cond.interventions:
            pos = position_mask(iv.positions, batch["attention_mask"])  # [B, T]
            for layer in iv.heads.layers():
                heads = list(iv.heads.heads_in_layer(layer))
                if layer not in out:
                    out[layer] = (torch.zeros(K * B, T, a.n_heads, dtype=torch.bool),
                                  torch.zeros(K * B, T, a.n_heads, a.head_dim))
                M, R = out[layer]
                rep = _replacement_for(iv, layer, heads, batch, pos, acts, a.head_dim)
                rows = slice(k * B, (k + 1) * B)
                hidx = torch.tensor(heads)
                sel = pos[:, :, None].expand(B, T, len(heads))
                Mk = M[rows][:, :, hidx]
                Rk = R[rows][:, :, hidx]
                Rk = torch.where(sel[..., None], rep.to(Rk.dtype), Rk)
                Mk = Mk | sel
                M[rows, :, hidx] = Mk
                R[rows, :, hidx] = Rk
    return out


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


def token_losses(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy ``[rows, seq-1]``: loss of predicting token t+1 from position t."""
    lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return -lp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def run_conditions(handle: ModelHandle, batch: Batch, conditions: Sequence[Any], *,
                   reference: Batch | None = None, source: Batch | None = None,
                   reduce: str | Reducer = "logits", max_rows: int | None = None,
                   check_nan: bool = True) -> torch.Tensor:
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

    Returns:
        A tensor whose first two dims are (condition, item).
    """
    conds = [Condition.coerce(c) for c in conditions]
    if not conds:
        raise InterventionError("run_conditions needs at least one condition (use None for the clean run)")
    batch = {"input_ids": batch["input_ids"],
             "attention_mask": batch.get("attention_mask", torch.ones_like(batch["input_ids"]))}
    B, T = batch["input_ids"].shape
    _validate(handle, conds, T)
    a = handle.adapter
    K = len(conds)

    # Clean activations needed by mean / resample / patch operators: one capture pass each.
    need: dict[str, set[int]] = {}
    for c in conds:
        for iv in c.interventions:
            key = None
            if isinstance(iv, MeanAblate):
                key = "reference"
                if reference is None:
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
        b = srcs[key]
        b = {"input_ids": b["input_ids"], "attention_mask": b.get("attention_mask", torch.ones_like(b["input_ids"]))}
        acts[key] = {"acts": capture_head_outputs(handle, b, layers), "mask": b["attention_mask"]}

    masks = build_masks(handle, batch, conds, acts)
    layers = sorted(masks)
    ids = batch["input_ids"].repeat(K, 1)
    am = batch["attention_mask"].repeat(K, 1)
    V = a.vocab_size
    if max_rows is None:
        # ~64 MB of logits per pass: bigger chunks only add memory traffic on a CPU
        max_rows = max(1, min(K * B, int(2**24 // max(1, T * V))))
    outs = []
    for start in range(0, K * B, max_rows):
        rows = slice(start, min(K * B, start + max_rows))
        chunk = prepare_inputs({"input_ids": ids[rows], "attention_mask": am[rows]})
        n = rows.stop - rows.start
        with torch.inference_mode():
            with handle.nn.trace(chunk):
                for l in layers:
                    M, R = masks[l]
                    x = _envoy(handle, a.module_path("o_proj", l)).input
                    xv = x.view(n, T, a.n_heads, a.head_dim)
                    new = torch.where(M[rows, :, :, None], R[rows].to(xv.dtype), xv)
                    x[:] = new.reshape(x.shape)
                logits = handle.nn.output.logits.save()
        red = _reduce(reduce, logits, chunk, rows)
        if check_nan and red.is_floating_point():
            # NaN/inf anywhere upstream reaches the reduced output, so checking it is enough (and cheap)
            check_finite(red, f"model outputs under conditions {[c.name for c in conds]}")
        outs.append(red)
    out = outs[0] if len(outs) == 1 else torch.cat(outs, 0)
    return out.view(K, B, *out.shape[1:])


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
