"""A slow, literal, per-position relation index: the oracle for :mod:`ablate.scores.relation_index`.

Written straight from docs/science.md §2 with Python loops, one (triplet, layer, head, j) at a
time, one unpadded forward pass per triplet, and the OV circuit applied unfactored
(``((x W_V^h) W_O^h) W_U``). It shares no code with the vectorised implementation except the
model's own modules (the norm applied to x when ``OVConfig.x == "normed"``, the final norm when
asked) and the adapter's weight accessors. Use it only on tiny models and few triplets.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import numpy as np
import torch

from ablate.scores.relation_index import FAKE_TAIL_POSITION, OVConfig
from ablate.triplets.relations import Triplet

__all__ = ["relation_index_literal", "a_literal"]


def _softmax(z: torch.Tensor) -> torch.Tensor:
    z = z - z.max()
    e = z.exp()
    return e / e.sum()


def _weights(handle: Any, layer: int, head: int, ov: OVConfig, cache: dict) -> dict:
    key = (layer, head, ov)
    if key not in cache:
        ad, dt = handle.adapter, torch.float64
        lm = handle.hf.get_output_embeddings()  # [V, d] (HF's own accessor, not the adapter's)
        cache[key] = dict(
            ln=copy.deepcopy(ad.ln_attn(layer)).to(dt) if ov.x == "normed" else None,
            fn=copy.deepcopy(ad.final_norm()).to(dt) if ov.final_norm else None,
            W_V=ad.W_V(layer)[head].detach().to(dt), b_V=ad.b_V(layer)[head].detach().to(dt),
            W_O=ad.W_O(layer)[head].detach().to(dt), b_O=ad.b_O(layer).detach().to(dt),
            W_E=ad.W_E.detach().to(dt), lm=lm.weight.detach().to(dt),
            b_U=lm.bias.detach().to(dt) if getattr(lm, "bias", None) is not None else None,
        )
    return cache[key]


def a_literal(handle: Any, layer: int, head: int, tokens: Sequence[int], j: int, tail_token: int,
              ov: OVConfig = OVConfig(), source_token: int | None = None, cache: dict | None = None) -> float:
    """a^{h,j}_T for one (layer, head, position j), straight from the formulas (float64).

    ``p = softmax(x W_V^h W_O^h W_u)`` with x the embedding of ``tokens[j]`` (or of
    ``source_token`` if given); ``q_t = max(0, p_t - mean_{distinct t in tokens[:j+1]} p)``;
    ``a = q_{tail} / sum q`` (0 if the sum is 0). ``cache``: a dict reused between calls.
    """
    w = _weights(handle, layer, head, ov, {} if cache is None else cache)
    tok = tokens[j] if source_token is None else source_token
    x = w["W_E"][tok]
    if w["ln"] is not None:
        x = w["ln"](x[None])[0]
    v = x @ w["W_V"]
    if ov.bias:
        v = v + w["b_V"]
    z = v @ w["W_O"]
    if ov.bias:
        z = z + w["b_O"]
    if w["fn"] is not None:
        z = w["fn"](z[None])[0]
    logits = w["lm"] @ z
    if ov.bias and w["b_U"] is not None:
        logits = logits + w["b_U"]
    p = _softmax(logits)
    distinct: list[int] = []
    for t in tokens[: j + 1]:
        if t not in distinct:
            distinct.append(t)
    pv = [float(p[t].detach()) for t in distinct]
    mean = sum(pv) / len(pv)
    q = {t: max(0.0, pt - mean) for t, pt in zip(distinct, pv)}
    total = sum(q.values())
    return q[tail_token] / total if total > 0 else 0.0


def _attentions(handle: Any, tokens: Sequence[int]) -> list[torch.Tensor]:
    batch = {"input_ids": torch.tensor([list(tokens)]), "attention_mask": torch.ones(1, len(tokens), dtype=torch.long)}
    out = handle.forward(batch, output_attentions=True)
    return [a[0].float() for a in out.attentions]  # each [H, T, T]


def _argmax_ratio(row: list[float]) -> tuple[int, float]:
    best = 0
    for k in range(1, len(row)):
        if row[k] > row[best]:
            best = k
    others = [row[k] for k in range(len(row)) if k != best]
    second = max(others) if others else 0.0
    return best, (row[best] / second if second > 0 else math.inf)


def relation_index_literal(handle: Any, triplets: Sequence[Triplet], *, tau: float | None = 2.2,
                           tau_percentile: float | None = None, score: str = "relation_index",
                           fake_tail_position: int = FAKE_TAIL_POSITION, ov: OVConfig = OVConfig(),
                           layers: Sequence[int] | None = None
                           ) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Per-triplet sums and counts of a over gated positions, by loops.

    Args:
        score: ``"relation_index"`` or ``"baseline"`` (tail = token at ``fake_tail_position``;
            triplets too short or whose head word covers it are skipped).

    Returns:
        ``(sums [K, L, H], counts [K, L, H], tau_used)``.
    """
    ad = handle.adapter
    layers = list(range(ad.n_layers)) if layers is None else list(layers)
    H = ad.n_heads
    atts = {}
    for t in triplets:
        if t.tokens not in atts:
            atts[t.tokens] = _attentions(handle, t.tokens)
    if tau_percentile is not None:
        ratios = []
        for toks, A in atts.items():
            for layer in layers:
                for h in range(H):
                    for j in range(1, len(toks)):
                        ratios.append(min(_argmax_ratio(A[layer][h, j, : j + 1].tolist())[1], 1e30))
        tau = float(np.percentile(np.array(ratios), tau_percentile))
    cache: dict = {}
    sums = np.zeros((len(triplets), len(layers), H))
    counts = np.zeros((len(triplets), len(layers), H), dtype=np.int64)
    for k, t in enumerate(triplets):
        toks = list(t.tokens)
        if score == "baseline":
            if len(toks) <= fake_tail_position or fake_tail_position in t.head_span:
                continue
            o = fake_tail_position
        else:
            o = t.tail_span[0]
        s_set = set(t.head_span)
        j_min = max(max(t.head_span), o)
        A = atts[t.tokens]
        for li, layer in enumerate(layers):
            for h in range(H):
                for j in range(j_min, len(toks)):
                    s_star, ratio = _argmax_ratio(A[layer][h, j, : j + 1].tolist())
                    if s_star not in s_set:
                        continue
                    if tau is not None and not ratio > tau:
                        continue
                    sums[k, li, h] += a_literal(handle, layer, h, toks, j, toks[o], ov, cache=cache)
                    counts[k, li, h] += 1
    return sums, counts, tau
