"""Path patching (docs/science.md §7, "Path patching: where a head's output goes"), via nnsight.

The *sender* is a head set ``S``; its output (the heads' slices of the o_proj input) is replaced
by a *sender value*: its output on a row-aligned corrupted batch (``sender="patch"``) or its mean
over the real tokens of a reference batch (``sender="mean"``). The effect on a metric (the label
log-prob at each row's last real token, or the label logit) is split over paths:

* ``direct``: the sender's change reaches the final residual stream with every later component
  (non-sender heads' outputs, every MLP at or after the first sender layer) frozen at its clean
  value; the final norm is recomputed (the method's convention: it is part of the unembedding).
* ``mlp:L{m}``: MLP ``m``'s output is set to what it computes when its input carries the sender's
  *direct* change only (the "sender-only" run), and everything downstream of it recomputes.
* ``q:L{m}H{h}``, ``k:L{m}G{g}``, ``v:L{m}G{g}``: the same, for one later head's query
  projection (head ``h``) or one key/value head's key or value projection (``g`` is the KV-head
  index: with grouped-query attention one key/value head serves ``n_heads // n_kv_heads`` query
  heads; without it ``g == h``).

Each receiver path is "sender -> receiver -> anything -> logits" (Wang et al. 2022's step 3: the
receiver's patched value propagates freely), so every path of the computational graph is counted
at its *first* receiver exactly once: where the model is linear in the sender's output, the direct
path plus all receiver paths equals the total effect (tested on an attention-only toy). Where it is
not, ``total - sum(paths)`` is the interaction, reported as ``nonlinear``.

:func:`path_patch` runs: one clean capture, one sender-only run (which is also the direct path),
the total-effect run and the receiver runs batched ``K x B`` rows at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ablate.intervene.engine import Batch, capture_head_outputs, last_positions, position_mask
from ablate.model.adapters import module_at
from ablate.model.errors import InterventionError
from ablate.model.handle import ModelHandle, prepare_inputs
from ablate.model.heads import HeadSet

#: per family: (MLP path, projection layout, projection module(s)) relative to a block
_PROJ: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "gpt2": ("mlp", "fused_gpt2", ("attn.c_attn",)),
    "gpt_neox": ("mlp", "fused_neox", ("attention.query_key_value",)),
    "llama": ("mlp", "separate", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    "mistral": ("mlp", "separate", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    "qwen2": ("mlp", "separate", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    "olmo2": ("mlp", "separate", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
}

SENDERS = ("patch", "mean")
METRICS = ("logprob", "logit")
RECEIVER_KINDS = ("mlp", "q", "k", "v")


@dataclass(frozen=True)
class Receiver:
    """One path's receiver: ``kind`` in :data:`RECEIVER_KINDS`, its layer and head (query head for
    ``q``, KV head for ``k``/``v``, ``None`` for ``mlp``)."""

    kind: str
    layer: int
    head: int | None = None

    @property
    def name(self) -> str:
        if self.kind == "mlp":
            return f"mlp:L{self.layer}"
        return f"{self.kind}:L{self.layer}{'H' if self.kind == 'q' else 'G'}{self.head}"


@dataclass
class PathResult:
    """Per-row effects ``[B]`` (metric under the intervention minus the clean metric).

    ``paths`` maps a path name (``"direct"`` then the receivers' names, in forward order) to its
    effect; ``total`` is the full patching effect; ``clean`` the clean metric."""

    sender: str
    heads: str
    clean: Float[Tensor, "batch"]
    total: Float[Tensor, "batch"]
    paths: dict[str, Float[Tensor, "batch"]] = field(default_factory=dict)

    @property
    def nonlinear(self) -> Float[Tensor, "batch"]:
        """``total - sum(paths)``: the part no single path carries (0 where the model is linear)."""
        return self.total - torch.stack(list(self.paths.values())).sum(0)

    def means(self) -> dict[str, float]:
        """Mean over rows of every path, ``total`` and ``nonlinear``."""
        out = {k: float(v.mean()) for k, v in self.paths.items()}
        out["total"] = float(self.total.mean())
        out["nonlinear"] = float(self.nonlinear.mean())
        return out


def _layout(handle: ModelHandle) -> tuple[str, str, tuple[str, ...]]:
    fam = handle.adapter.family
    if fam not in _PROJ:
        raise InterventionError(f"path patching has no projection layout for family {fam!r}; "
                                f"known: {', '.join(sorted(_PROJ))} (add one to ablate.intervene.paths._PROJ)")
    return _PROJ[fam]


def receivers(handle: ModelHandle, heads: HeadSet | str, *, kinds: Sequence[str] = RECEIVER_KINDS,
              max_layer: int | None = None) -> list[Receiver]:
    """Every receiver of ``heads`` in forward order: MLPs at layers >= the first sender layer,
    query heads not in the sender at layers after it, and KV heads (key and value) at those layers.
    A KV head is a receiver when at least one of its query heads is not a sender."""
    hs = HeadSet.parse(heads)
    a = handle.adapter
    bad = [k for k in kinds if k not in RECEIVER_KINDS]
    if bad:
        raise InterventionError(f"unknown receiver kinds {bad}; use some of {', '.join(RECEIVER_KINDS)}")
    l0 = min(hs.layers())
    top = a.n_layers - 1 if max_layer is None else min(max_layer, a.n_layers - 1)
    group = a.n_heads // a.n_kv_heads
    out = []
    for m in range(l0, top + 1):
        if m > l0:
            senders = set(hs.heads_in_layer(m))
            free = [h for h in range(a.n_heads) if h not in senders]
            if "q" in kinds:
                out += [Receiver("q", m, h) for h in free]
            kv = sorted({h // group for h in free})
            for kind in ("k", "v"):
                if kind in kinds:
                    out += [Receiver(kind, m, g) for g in kv]
        if "mlp" in kinds:
            out.append(Receiver("mlp", m))
    return out


def _proj_cols(layout: str, kind: str, head: int, a) -> tuple[int, slice]:
    """(which projection module, which output columns) hold ``kind`` of ``head``."""
    dh, d_q = a.head_dim, a.n_heads * a.head_dim
    if layout == "separate":
        return {"q": 0, "k": 1, "v": 2}[kind], slice(head * dh, (head + 1) * dh)
    if layout == "fused_gpt2":
        off = {"q": 0, "k": d_q, "v": 2 * d_q}[kind]
        return 0, slice(off + head * dh, off + (head + 1) * dh)
    off = head * 3 * dh + {"q": 0, "k": dh, "v": 2 * dh}[kind]  # neox: [H, 3, dh] per head
    return 0, slice(off, off + dh)


def _metric(logits: Tensor, last: Tensor, labels: Tensor, metric: str) -> Tensor:
    x = logits[torch.arange(logits.shape[0]), last].float()
    if metric == "logprob":
        x = torch.log_softmax(x, -1)
    return x.gather(-1, labels[:, None]).squeeze(-1)


def path_patch(handle: ModelHandle, batch: Batch, labels: Int[Tensor, "batch"], heads: HeadSet | str, *,
               sender: str = "patch", corrupted: Batch | None = None, reference: Batch | None = None,
               positions: str = "all", metric: str = "logprob", kinds: Sequence[str] = RECEIVER_KINDS,
               max_rows: int | None = None) -> PathResult:
    """The effect of ``heads``' output on ``metric`` of ``labels`` through each path separately.

    Args:
        batch: the clean run ``{"input_ids", "attention_mask"}`` ``[B, T]``.
        labels: the token whose log-prob (or logit) is measured at each row's last real token.
        heads: the sender head set.
        sender: ``"patch"`` (values from ``corrupted``, row-aligned, same length) or ``"mean"``
            (mean over the real tokens of ``reference``).
        positions: ``"all"`` or ``"last"``: where the sender's output is replaced.
        metric: ``"logprob"`` (label log-prob) or ``"logit"`` (label logit; linear in the residual
            when the final norm is).
        kinds: receiver kinds to split out (the rest stay inside ``nonlinear``).
        max_rows: rows per receiver forward pass (default: ~64 MB of logits per chunk).

    Raises:
        InterventionError: unknown sender/metric, missing or misaligned corrupted/reference batch.
    """
    if sender not in SENDERS:
        raise InterventionError(f"unknown sender {sender!r}; use one of {', '.join(SENDERS)}")
    if metric not in METRICS:
        raise InterventionError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    if positions not in ("all", "last"):
        raise InterventionError(f"path patching positions must be 'all' or 'last', got {positions!r}")
    hs = HeadSet.parse(heads)
    a = handle.adapter
    hs.validate(a.n_layers, a.n_heads)
    batch = {"input_ids": batch["input_ids"],
             "attention_mask": batch.get("attention_mask", torch.ones_like(batch["input_ids"]))}
    B, T = batch["input_ids"].shape
    labels = torch.as_tensor(labels).long().reshape(-1)
    if labels.shape[0] != B:
        raise InterventionError(f"{labels.shape[0]} labels for {B} rows; give one label token per row")
    mlp_rel, layout, proj_rel = _layout(handle)
    s_layers = hs.layers()
    l0 = min(s_layers)
    mask = batch["attention_mask"]
    last = last_positions(mask)
    pmask = position_mask(positions, mask)  # [B, T]

    # sender values [B, T, h, dh] per sender layer
    if sender == "patch":
        if corrupted is None:
            raise InterventionError("sender='patch' needs a row-aligned `corrupted` batch")
        if tuple(corrupted["input_ids"].shape) != (B, T):
            raise InterventionError(f"corrupted batch has shape {tuple(corrupted['input_ids'].shape)}; "
                                    f"the clean batch is [{B}, {T}] (they must align row by row)")
        cor = capture_head_outputs(handle, corrupted, s_layers)
        cmask = corrupted.get("attention_mask", torch.ones_like(corrupted["input_ids"]))
        if positions == "last":  # the corrupted row's last token goes to the clean row's last token
            cl = last_positions(cmask)
            for l in s_layers:
                v = cor[l].clone()
                v[torch.arange(B), last] = cor[l][torch.arange(B), cl]
                cor[l] = v
        send = {l: cor[l][:, :, list(hs.heads_in_layer(l))] for l in s_layers}
    else:
        if reference is None:
            raise InterventionError("sender='mean' needs a `reference` batch")
        ref = capture_head_outputs(handle, reference, s_layers)
        rmask = reference.get("attention_mask", torch.ones_like(reference["input_ids"])).bool()
        send = {l: ref[l][rmask][:, list(hs.heads_in_layer(l))].mean(0).expand(B, T, -1, -1) for l in s_layers}

    layers_after = list(range(l0, a.n_layers))
    o_path = {m: a.module_path("o_proj", m) for m in layers_after}
    mlp_path = {m: f"{a.spec.layers}.{m}.{mlp_rel}" for m in layers_after}
    proj_path = {m: [f"{a.spec.layers}.{m}.{p}" for p in proj_rel] for m in layers_after}
    H, dh = a.n_heads, a.head_dim

    def env(p):
        return module_at(handle.nn, p)

    inputs = prepare_inputs(batch)
    # 1. clean run: o_proj inputs and MLP outputs from the first sender layer on
    c_z, c_mlp = {}, {}
    with torch.inference_mode():
        with handle.nn.trace(inputs):
            for m in layers_after:
                c_z[m] = env(o_path[m]).input.save()
                c_mlp[m] = env(mlp_path[m]).output.save()
            c_logits = handle.nn.output.logits.save()
    clean = _metric(c_logits, last, labels, metric)

    def patched_z(m: int, z: Tensor) -> Tensor:
        """``z`` ``[B, T, H*dh]`` with the sender heads of layer ``m`` replaced at ``pmask``."""
        hl = list(hs.heads_in_layer(m))
        if not hl:
            return z
        zz = z.detach().clone().view(B, T, H, dh)
        cur = zz[:, :, hl]
        zz[:, :, hl] = torch.where(pmask[:, :, None, None], send[m].to(zz.dtype), cur)
        return zz.view(B, T, H * dh)

    # 2. total effect: the sender replaced (its slices only), everything downstream free
    with torch.inference_mode():
        with handle.nn.trace(inputs):
            for m in s_layers:
                xv = env(o_path[m]).input.view(B, T, H, dh)
                hl = list(hs.heads_in_layer(m))
                xv[:, :, hl] = torch.where(pmask[:, :, None, None], send[m].to(xv.dtype), xv[:, :, hl])
            t_logits = handle.nn.output.logits.save()
    total = _metric(t_logits, last, labels, metric) - clean

    # 3. sender-only run: every later component frozen at its clean value; capture what the
    # receivers compute from the sender's direct change. Its logits are the direct path.
    recv = receivers(handle, hs, kinds=kinds)
    need_proj = {r.layer for r in recv if r.kind != "mlp"}
    a_proj: dict[int, list] = {}
    a_mlp: dict[int, object] = {}
    with torch.inference_mode():
        with handle.nn.trace(inputs):
            for m in layers_after:
                if m in need_proj:
                    a_proj[m] = [env(p).output.clone().save() for p in proj_path[m]]
                env(o_path[m]).input[:] = patched_z(m, c_z[m])
                a_mlp[m] = env(mlp_path[m]).output.clone().save()
                env(mlp_path[m]).output[:] = c_mlp[m]
            d_logits = handle.nn.output.logits.save()
    paths: dict[str, Tensor] = {"direct": _metric(d_logits, last, labels, metric) - clean}

    # 4. receiver runs, K receivers x B rows per chunk, clean inputs, receiver set to its
    # sender-only value, everything else free
    K = len(recv)
    if K:
        if max_rows is None:
            max_rows = max(B, int(2**24 // max(1, T * a.vocab_size)))
        per = max(1, max_rows // B)
        effects = []
        for k0 in range(0, K, per):
            chunk = recv[k0:k0 + per]
            n = len(chunk)
            ids = {"input_ids": batch["input_ids"].repeat(n, 1), "attention_mask": mask.repeat(n, 1)}
            by_layer: dict[int, list[tuple[int, Receiver]]] = {}
            for i, r in enumerate(chunk):
                by_layer.setdefault(r.layer, []).append((i, r))
            with torch.inference_mode():
                with handle.nn.trace(prepare_inputs(ids)):
                    for m in sorted(by_layer):
                        items = by_layer[m]
                        proj_items = [(i, r) for i, r in items if r.kind != "mlp"]
                        if proj_items:
                            outs = [env(p).output for p in proj_path[m]]
                            for i, r in proj_items:
                                j, cols = _proj_cols(layout, r.kind, r.head, a)
                                outs[j][i * B:(i + 1) * B, :, cols] = a_proj[m][j][:, :, cols]
                        for i, r in items:
                            if r.kind == "mlp":
                                env(mlp_path[m]).output[i * B:(i + 1) * B] = a_mlp[m]
                    r_logits = handle.nn.output.logits.save()
            lastn = last.repeat(n)
            effects.append((_metric(r_logits, lastn, labels.repeat(n), metric) - clean.repeat(n)).view(n, B))
        eff = torch.cat(effects, 0)
        for k, r in enumerate(recv):
            paths[r.name] = eff[k]
    return PathResult(sender=sender, heads=str(hs), clean=clean, total=total, paths=paths)


def path_group(name: str) -> str:
    """The coarse group of a path name: ``direct``, ``mlp``, ``q``, ``k`` or ``v`` (for figures)."""
    return name if name == "direct" else name.split(":", 1)[0]
