"""Companion head scores (docs/science.md §4): copying score and prefix-matching score.

Both run on seeded random sequences of distinct mid-frequency tokens with a BOS token.

**Copying score** (Bansal et al. 2023 after Olsson et al. 2022), computed like the relation index
but with the tail being the token the head attends to most. For head h, sequence t_0..t_{n-1}
(t_0 = BOS) and position j >= 1 with ``k* = argmax_{k<=j} A^h_{j,k}``:

* events with ``k* = 0`` (attention parked on BOS, an attention sink, not a copy) are skipped;
* ``p = softmax_vocab(x_{k*} W_V^h W_O^h W_U)``: the OV circuit applied to the *attended*
  token's input embedding (a copying head raises the logit of what it reads; the current token's
  embedding would measure something else), with the same :class:`~ablate.scores.relation_index.OVConfig`
  conventions as the relation index;
* ``q_t = max(0, p_t - mean_{u in t_0..t_j} p_u)``, ``a = q_{t_{k*}} / sum q`` (0 if the sum is 0);
* copying score = mean of a over all events (no tau gate).

**Prefix-matching score** (Olsson et al. 2022): on a random sequence of ``length`` distinct tokens
repeated ``repeats`` times after BOS, the attention from each position j of the second and later
copies to the token right after the earlier occurrence(s) of t_j,
``sum_{k <= j: t_{k-1} = t_j} A^h_{j,k}``, averaged over those positions and sequences
(with ``repeats = 2`` there is exactly one earlier occurrence; a perfect induction head scores 1).

Token pool ("mid-frequency"): no frequency table is available for an arbitrary model, so for
vocabularies above 1000 tokens the default pool is the ids in ``[0.1 V, 0.5 V)`` that decode to
an alphabetic word of >= 2 letters (BPE merge order roughly follows frequency, so these are
neither the commonest function tokens nor rare fragments); for small vocabularies, all
non-special tokens. Pass ``pool=`` to choose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor

from ablate.model.errors import AblateError
from ablate.scores.relation_index import OVConfig, ov_context_probs

__all__ = ["HeadScores", "token_pool", "random_sequences", "copying_score", "prefix_matching_score"]


@dataclass
class HeadScores:
    """One score per head: ``values [L, H]`` (NaN where no event), ``n_events [L, H]``."""

    score: str
    layers: list[int]
    values: torch.Tensor
    n_events: torch.Tensor
    params: dict = field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        """Tidy rows: score, relation (""), direction (""), layer, head, value, n_events."""
        rows = []
        for li, layer in enumerate(self.layers):
            for h in range(self.values.shape[1]):
                rows.append((self.score, "", "", layer, h, float(self.values[li, h]), int(self.n_events[li, h])))
        return pd.DataFrame(rows, columns=["score", "relation", "direction", "layer", "head", "value", "n_events"])

    def top(self, k: int = 5) -> list[tuple[int, int, float]]:
        """The k highest-scoring heads as (layer, head, value)."""
        v = torch.nan_to_num(self.values, nan=-float("inf")).flatten()
        idx = v.argsort(descending=True)[:k]
        H = self.values.shape[1]
        return [(self.layers[int(i) // H], int(i) % H, float(v[i])) for i in idx]


def token_pool(handle: Any, *, low: float = 0.1, high: float = 0.5, small_vocab: int = 1000) -> list[int]:
    """Default pool of "mid-frequency" token ids (see the module docstring for the rule)."""
    tok = handle.tokenizer
    V = min(len(tok), handle.adapter.W_E.shape[0])
    special = set(getattr(tok, "all_special_ids", []) or [])
    if V <= small_vocab:
        return [i for i in range(V) if i not in special]
    pool = []
    for i in range(int(low * V), int(high * V)):
        if i in special:
            continue
        w = tok.decode([i]).strip()
        if len(w) >= 2 and w.isalpha() and w.isascii():
            pool.append(i)
    return pool


def random_sequences(handle: Any, n: int, length: int, *, repeats: int = 1, seed: int = 0,
                     pool: Sequence[int] | None = None, bos: bool = True) -> Int[Tensor, "n seq"]:
    """``n`` seeded sequences of ``length`` distinct pool tokens, repeated, after BOS.

    Returns:
        ``[n, bos + length * repeats]`` long tensor.

    Raises:
        AblateError: the pool is smaller than ``length``, or BOS is asked for but missing.
    """
    pool = list(token_pool(handle) if pool is None else pool)
    if len(pool) < length:
        raise AblateError(f"token pool has {len(pool)} tokens but sequences need {length} distinct ones; "
                          "pass a shorter length or a larger pool=")
    rng = np.random.default_rng(seed)
    seqs = np.stack([rng.choice(np.array(pool), size=length, replace=False) for _ in range(n)])
    seqs = np.tile(seqs, (1, repeats))
    if bos:
        b = handle.tokenizer.bos_token_id
        if b is None:
            raise AblateError("the tokenizer has no BOS token; pass bos=False")
        seqs = np.concatenate([np.full((n, 1), b), seqs], axis=1)
    return torch.as_tensor(seqs, dtype=torch.long)


def _attentions(handle: Any, seqs: torch.Tensor, batch_size: int, layers: list[int]) -> list[torch.Tensor]:
    per_layer: list[list[torch.Tensor]] = [[] for _ in layers]
    for b0 in range(0, len(seqs), batch_size):
        x = seqs[b0:b0 + batch_size].to(handle.device)
        out = handle.forward({"input_ids": x, "attention_mask": torch.ones_like(x)}, output_attentions=True)
        if out.attentions is None or out.attentions[0] is None:
            raise AblateError("the model returned no attention patterns; load it with eager attention")
        for li, layer in enumerate(layers):
            per_layer[li].append(out.attentions[layer].float().cpu())
    return [torch.cat(a) for a in per_layer]  # each [n, H, T, T]


def copying_score(handle: Any, *, n_sequences: int = 32, length: int = 24, seed: int = 0,
                  pool: Sequence[int] | None = None, ov: OVConfig = OVConfig(),
                  layers: Sequence[int] | None = None, batch_size: int = 16,
                  precision: torch.dtype = torch.float32, sequences: torch.Tensor | None = None) -> HeadScores:
    """Copying score of every head (formula in the module docstring).

    Args:
        n_sequences, length, seed, pool: the random sequences (:func:`random_sequences`).
        ov: OV conventions shared with the relation index.
        sequences: explicit ``[n, T]`` sequences of distinct tokens instead of random ones.

    Returns:
        :class:`HeadScores` with score ``"copying"``.
    """
    ad = handle.adapter
    layers = list(range(ad.n_layers)) if layers is None else list(layers)
    seqs = random_sequences(handle, n_sequences, length, seed=seed, pool=pool) if sequences is None else sequences
    for row in seqs.tolist():
        if len(set(row)) != len(row):
            raise AblateError("copying_score needs sequences of distinct tokens")
    B, T = seqs.shape
    uniq, inv = torch.unique(seqs, return_inverse=True)  # inv [B, T]: global index of each token
    atts = _attentions(handle, seqs, batch_size, layers)
    H = ad.n_heads
    vals = torch.full((len(layers), H), float("nan"))
    nev = torch.zeros(len(layers), H, dtype=torch.long)
    pos = torch.arange(T)
    ctx = (pos[None, :] <= pos[:, None]).to(precision)  # [T(j), T(n)]: token n in t_0..t_j
    hh = torch.arange(H)
    for li, layer in enumerate(layers):
        P = ov_context_probs(handle, layer, uniq, uniq, ov, dtype=precision)  # [U, H, U]
        kstar = atts[li].argmax(-1).transpose(1, 2)  # [B, T(j), H]
        src = torch.gather(inv[:, :, None].expand(B, T, H), 1, kstar)  # [B, T, H] global idx of t_{k*}
        Pg = P[src[:, :, :, None], hh[None, None, :, None], inv[:, None, None, :]]  # [B, T, H, N=T]
        m = ctx[None, :, None, :]  # [1, T, 1, T]
        mean = (Pg * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True)  # [B, T, H, 1]
        q = (Pg - mean).clamp(min=0) * m
        qs = q.sum(-1)  # [B, T, H]
        qt = torch.gather(q, 3, kstar[..., None])[..., 0]  # [B, T, H]
        a = torch.where(qs > 0, qt / qs.clamp(min=torch.finfo(precision).tiny), torch.zeros((), dtype=precision))
        ev = (kstar != 0) & (pos[None, :, None] >= 1)  # skip BOS-parked attention and j = 0
        n = ev.sum((0, 1))
        nev[li] = n
        vals[li] = torch.where(n > 0, (a * ev).sum((0, 1)).float() / n.clamp(min=1), torch.full((H,), float("nan")))
    return HeadScores("copying", layers, vals, nev, dict(n_sequences=B, length=T, seed=seed,
                                                         ov=dict(x=ov.x, bias=ov.bias, final_norm=ov.final_norm)))


def prefix_matching_score(handle: Any, *, n_sequences: int = 32, length: int = 24, repeats: int = 2,
                          seed: int = 0, pool: Sequence[int] | None = None, layers: Sequence[int] | None = None,
                          batch_size: int = 16) -> HeadScores:
    """Prefix-matching score of every head (formula in the module docstring).

    Returns:
        :class:`HeadScores` with score ``"prefix_matching"``; ``n_events`` = positions averaged.
    """
    if repeats < 2:
        raise AblateError("prefix matching needs repeats >= 2 (a token must have occurred before)")
    ad = handle.adapter
    layers = list(range(ad.n_layers)) if layers is None else list(layers)
    seqs = random_sequences(handle, n_sequences, length, repeats=repeats, seed=seed, pool=pool)
    B, T = seqs.shape
    prev = torch.cat([torch.full((B, 1), -1), seqs[:, :-1]], 1)  # t_{k-1}, [B, T(k)]
    pos = torch.arange(T)
    tgt = (prev[:, None, :] == seqs[:, :, None]) & (pos[None, None, :] <= pos[None, :, None])  # [B, j, k]
    tgt[:, :, 0] = False
    first_copy_end = T - length * (repeats - 1)  # positions >= this are in the 2nd+ copies
    rows = tgt.any(-1) & (pos[None, :] >= first_copy_end)  # [B, T]
    atts = _attentions(handle, seqs, batch_size, layers)
    H = ad.n_heads
    vals = torch.zeros(len(layers), H)
    for li in range(len(layers)):
        s = (atts[li] * tgt[:, None].float()).sum(-1)  # [B, H, T]
        vals[li] = (s * rows[:, None].float()).sum((0, 2)) / rows.sum()
    nev = torch.full((len(layers), H), int(rows.sum()), dtype=torch.long)
    return HeadScores("prefix_matching", layers, vals, nev, dict(n_sequences=B, length=length,
                                                                  repeats=repeats, seed=seed))
