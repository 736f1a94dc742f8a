"""The relation index (RI) of every attention head, exactly as docs/science.md §2, vectorised.

For a triplet T = (t_s, r, t_o) in a sentence t_0..t_{n-1}, every head h and every current
position j >= j_min (= max(s, o); see :mod:`ablate.triplets.relations` for multi-token words):

1. **QK gate** on the real attention pattern A^h (eager forward pass, ``output_attentions``):
   score (h, j) only if ``argmax_k A^h_{j,k}`` is the head token s and the dominance ratio
   ``d^h_j = A^h_{j,s} / max_{k != s} A^h_{j,k} > tau``. ``tau=None`` keeps only the argmax
   condition (the paper's training-curve setting). ``tau_percentile=q`` sets tau to the q-th
   percentile of ``d^h_j`` over all scanned layers, heads, sentences and positions j >= 1.
   Ties in the argmax go to the first (lowest) position, like :func:`torch.argmax`.
2. **OV raise** from the *current* token's input embedding x_j:
   ``p^{h,j} = softmax_vocab(x_j W_V^h W_O^h W_U)`` (see :class:`OVConfig` for what x_j is and
   whether biases / the final norm enter).
3. over the distinct tokens C_j of t_0..t_j (BOS included when present, each token once):
   ``q_t = max(0, p_t - mean_{u in C_j} p_u)``;
4. ``a^{h,j}_T = q_{t_o} / sum_{u in C_j} q_u`` (0 when the sum is 0);
5. ``RI_h(r) = mean of a^{h,j}_T over all triplets of r and all gated j`` (gated-out pairs are
   excluded from the mean, not counted as 0).

Nulls computed in the same pass: ``"baseline"`` (every tail replaced by the 10th token, position
9, of the sequence; sentences shorter than 10 tokens are skipped) and ``"shuffled"`` (the tail
replaced by a seeded random position of the same sentence outside the head and tail words).

Vectorisation: a^{h,j} depends on (sentence, j, h, t_o) only through p^{h,j}, which depends on the
*token* t_j, not on the position. So per layer the OV probabilities are computed once per
(distinct token u, head h), restricted to the columns of the distinct tokens of all sentences:
``P[u, h, u'] = softmax(x_u W_V^h (W_O^h W_U))[u']`` (the OV circuit factored as
``(x W_V^h)`` then ``(W_O^h W_U)``, a ``d_head x vocab`` matrix per head, so the vocabulary
projection costs d_head rather than d_model per token), and reused for every position, sentence
and triplet. Steps 3-4 are masked tensor operations over ``[sentence, j, distinct token, head]``.
The QK gates are evaluated first, so the vocabulary softmax is computed only for the (token,
head) pairs where that head has at least one gated (sentence, j) with that current token.

Example::

    from ablate.scores.relation_index import relation_index
    res = relation_index(handle, triplets, tau=2.2, nulls=("baseline",))
    df = res.frame()            # tidy: score, relation, direction, layer, head, value, n_events
    res.ri("subj")              # [n_layers, n_heads] tensor
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ablate.model.errors import AblateError
from ablate.triplets.relations import NoTripletsError, Triplet, TripletError

__all__ = ["OVConfig", "RelationIndexResult", "relation_index", "ov_context_probs", "ov_input",
           "attention_stats", "SCORE_RI", "SCORE_BASELINE", "SCORE_SHUFFLED", "FAKE_TAIL_POSITION"]

SCORE_RI = "relation_index"
SCORE_BASELINE = "baseline"
SCORE_SHUFFLED = "shuffled"
FAKE_TAIL_POSITION = 9  # "the 10th token of the sequence", 0-based
_NULLS = (SCORE_BASELINE, SCORE_SHUFFLED)


@dataclass(frozen=True)
class OVConfig:
    """What enters the OV raise ``p = softmax(x_j W_OV^h W_u)``.

    Attributes:
        x: ``"normed"`` (default): ``x_j = LN_attn^l(W_E[t_j])``, the layer's own pre-attention
            norm applied to the token's embedding row, because the head reads a normed residual
            and the raw embedding's scale would set an arbitrary softmax temperature per model
            (the common re-implementation choice; position embeddings are not added).
            ``"raw"``: ``x_j = W_E[t_j]``, the paper's literal formula.
        bias: include the value bias b_V^h, the output bias b_O (whole, for every head) and the
            unembedding bias b_U: ``logits = ((x W_V^h + b_V^h) W_O^h + b_O) W_U + b_U``.
            Default False: the paper's W_OV = W_v W_o has no biases.
        final_norm: apply the model's final norm to the head's output before W_U (default False:
            the paper reads out through W_u directly; True cannot use the factored fast path).
    """

    x: str = "normed"
    bias: bool = False
    final_norm: bool = False

    def __post_init__(self) -> None:
        if self.x not in ("normed", "raw"):
            raise AblateError(f"OVConfig.x must be 'normed' or 'raw', got {self.x!r}")


def unembedding(handle: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(W_U [d_model, vocab], b_U [vocab] or None)`` from the architecture adapter (whose
    :meth:`~ablate.model.adapters.ArchAdapter.unembed` holds the one fallback to HF's
    ``get_output_embeddings``)."""
    return handle.adapter.W_U, handle.adapter.b_U


def _norm_module(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    return copy.deepcopy(module).to(dtype)


def ov_input(handle: Any, layer: int, token_ids: Int[Tensor, "n"], ov: OVConfig,
             dtype: torch.dtype = torch.float32) -> Float[Tensor, "n d_model"]:
    """x for the OV circuit: ``W_E[token_ids]``, normed by layer ``layer``'s ``ln_attn`` if asked.

    Returns:
        ``[n, d_model]`` in ``dtype``.
    """
    ad = handle.adapter
    x = ad.W_E.detach()[token_ids].to(dtype)
    if ov.x == "normed":
        x = _norm_module(ad.ln_attn(layer), dtype)(x)
    return x


@torch.inference_mode()
def ov_context_probs(handle: Any, layer: int, rows: Int[Tensor, "n_rows"], cols: Int[Tensor, "n_cols"],
                     ov: OVConfig, *, dtype: torch.dtype = torch.float32, max_chunk_bytes: int = 256 << 20,
                     row_mask: Bool[Tensor, "n_rows n_heads"] | None = None
                     ) -> Float[Tensor, "n_rows n_heads n_cols"]:
    """OV probabilities of every head, for source tokens ``rows``, read at tokens ``cols``.

    ``P[i, h, c] = softmax_vocab(x_{rows[i]} W_V^h W_O^h W_U)[cols[c]]`` (with the options of
    ``ov``), the softmax normalised over the model's whole vocabulary.

    Args:
        handle: a :class:`~ablate.model.handle.ModelHandle`.
        layer: the layer whose heads are used.
        rows: source token ids ``[n_rows]``.
        cols: token ids whose probabilities are kept ``[n_cols]``.
        ov: :class:`OVConfig`.
        dtype: compute dtype (float32 default; float64 for exact oracle comparisons).
        row_mask: optional ``[n_rows, n_heads]`` bool: compute only these (row, head) pairs (the
            others are left at 0), e.g. only where a head has a gated event.

    Returns:
        ``[n_rows, n_heads, n_cols]`` probabilities.
    """
    ad = handle.adapter
    W_V = ad.W_V(layer).detach().to(dtype)  # [H, d, dh]
    W_O = ad.W_O(layer).detach().to(dtype)  # [H, dh, d]
    W_U, b_U = unembedding(handle)
    W_U = W_U.detach().to(dtype)  # [d, V]
    H, V = W_V.shape[0], W_U.shape[1]
    b_U = b_U.detach().to(dtype) if (ov.bias and b_U is not None) else None
    factored = not ov.final_norm
    if factored:
        W_OU = torch.matmul(W_O, W_U)  # [H, dh, V]: the factored OV read-out
        const = None
        if ov.bias:
            const = ad.b_O(layer).detach().to(dtype) @ W_U  # [V]
            if b_U is not None:
                const = const + b_U
    else:
        fn = _norm_module(ad.final_norm(), dtype)
    b_V = ad.b_V(layer).detach().to(dtype) if ov.bias else None  # [H, dh]
    b_O = ad.b_O(layer).detach().to(dtype) if ov.bias else None  # [d]
    width = W_OU.shape[1] if factored else W_O.shape[2]
    chunk = max(1, int(max_chunk_bytes // ((V + width) * torch.finfo(dtype).bits // 8)))
    out = torch.zeros(len(rows), H, len(cols), dtype=dtype)
    x_all = ov_input(handle, layer, rows, ov, dtype)  # [n, d]
    for h in range(H):
        idx = torch.arange(len(rows)) if row_mask is None else row_mask[:, h].nonzero()[:, 0]
        for i in range(0, len(idx), chunk):
            ii = idx[i:i + chunk]
            v = x_all[ii] @ W_V[h]  # [n, dh]
            if b_V is not None:
                v = v + b_V[h]
            if factored:
                logits = v @ W_OU[h]  # [n, V]: the factored OV read-out
                if const is not None:
                    logits = logits + const
            else:
                z = v @ W_O[h]  # [n, d]
                if b_O is not None:
                    z = z + b_O
                logits = fn(z) @ W_U  # [n, V]
                if b_U is not None:
                    logits = logits + b_U
            lse = torch.logsumexp(logits, dim=-1, keepdim=True)  # [n, 1]
            out[ii, h] = (logits[:, cols] - lse).exp()
    return out


def attention_stats(attn: Float[Tensor, "*batch q k"]) -> tuple[Int[Tensor, "*batch q"], Float[Tensor, "*batch q"]]:
    """Argmax and dominance ratio of attention rows.

    Args:
        attn: attention probabilities ``[..., T_q, T_k]`` (causal: zeros for k > j).

    Returns:
        ``(argmax [..., T_q] long, ratio [..., T_q])`` with ratio = top-1 / top-2 weight
        (``inf`` when the second weight is 0, e.g. j = 0).
    """
    top = attn.topk(2, dim=-1).values  # [..., T, 2]
    ratio = top[..., 0] / top[..., 1]
    return attn.argmax(dim=-1), ratio


@dataclass
class RelationIndexResult:
    """Per-triplet sums and event counts of a^{h,j}, for the RI and each null.

    Attributes:
        triplets: the scored triplets (index k below).
        layers: the scanned layers (index l below).
        n_heads: heads per layer.
        tau: the tau used (None = argmax only); ``tau_percentile`` if tau was set that way.
        tau_rank: fraction of dominance ratios <= tau (the percentile tau sits at), or None.
        sums: score name -> ``[K, L, H]`` float64 sum of a over gated j.
        counts: score name -> ``[K, L, H]`` number of gated j (events).
        dropped: score name -> triplets left out of that null (reason in the key's docs).
        params: the parameters, for reports.
    """

    triplets: list[Triplet]
    layers: list[int]
    n_heads: int
    tau: float | None
    tau_percentile: float | None
    tau_rank: float | None
    sums: dict[str, torch.Tensor]
    counts: dict[str, torch.Tensor]
    dropped: dict[str, int] = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    @property
    def scores(self) -> list[str]:
        return list(self.sums)

    def _group_mask(self, relation: str | None, direction: str | None) -> torch.Tensor:
        return torch.tensor([(relation is None or t.relation == relation)
                             and (direction is None or t.direction == direction) for t in self.triplets])

    def ri(self, relation: str | None = None, direction: str | None = "forward",
           score: str = SCORE_RI) -> Float[Tensor, "layers heads"]:
        """RI_h(r) ``[L, H]``: mean of a over all events of the group (NaN where none)."""
        m = self._group_mask(relation, direction)
        s = self.sums[score][m].sum(0)
        c = self.counts[score][m].sum(0)
        return torch.where(c > 0, s / c.clamp(min=1), torch.full_like(s, float("nan")))

    def n_events(self, relation: str | None = None, direction: str | None = "forward",
                 score: str = SCORE_RI) -> Int[Tensor, "layers heads"]:
        """Number of gated (triplet, j) events per head ``[L, H]``."""
        return self.counts[score][self._group_mask(relation, direction)].sum(0)

    def per_triplet(self, score: str = SCORE_RI) -> Float[Tensor, "triplets layers heads"]:
        """E_j[a] per triplet and head ``[K, L, H]`` (NaN where the triplet had no event)."""
        s, c = self.sums[score], self.counts[score]
        return torch.where(c > 0, s / c.clamp(min=1), torch.full_like(s, float("nan")))

    def groups(self) -> list[tuple[str, str]]:
        seen: dict[tuple[str, str], None] = {}
        for t in self.triplets:
            seen.setdefault((t.relation, t.direction), None)
        return list(seen)

    def frame(self) -> pd.DataFrame:
        """Tidy table: score, relation, direction, layer, head, value, n_events (one row per head)."""
        rows = []
        for score in self.sums:
            for rel, d in self.groups():
                v = self.ri(rel, d, score).numpy()
                n = self.n_events(rel, d, score).numpy()
                for li, layer in enumerate(self.layers):
                    for h in range(self.n_heads):
                        rows.append((score, rel, d, layer, h, float(v[li, h]), int(n[li, h])))
        return pd.DataFrame(rows, columns=["score", "relation", "direction", "layer", "head", "value",
                                           "n_events"])

    def winners(self, score: str = SCORE_RI) -> pd.DataFrame:
        """Per triplet, the head with the largest E_j[a] (the paper's per-triplet variant).

        Returns:
            one row per triplet with events: triplet, relation, direction, layer, head, value.
        """
        pt = self.per_triplet(score)  # [K, L, H]
        rows = []
        for k, t in enumerate(self.triplets):
            flat = pt[k].flatten()
            if torch.isnan(flat).all():
                continue
            i = int(torch.nan_to_num(flat, nan=-1.0).argmax())
            rows.append((k, t.relation, t.direction, self.layers[i // self.n_heads], i % self.n_heads,
                         float(flat[i])))
        return pd.DataFrame(rows, columns=["triplet", "relation", "direction", "layer", "head", "value"])

    def winner_counts(self, score: str = SCORE_RI) -> pd.DataFrame:
        """How many triplets each head wins, per relation and direction (descending)."""
        w = self.winners(score)
        if w.empty:
            return pd.DataFrame(columns=["relation", "direction", "layer", "head", "wins"])
        return (w.groupby(["relation", "direction", "layer", "head"]).size().rename("wins")
                .reset_index().sort_values(["relation", "direction", "wins"], ascending=[True, True, False])
                .reset_index(drop=True))


def _null_triplet(t: Triplet, kind: str, position_rng: np.random.Generator, fake_pos: int
                  ) -> Triplet | None:
    if kind == SCORE_BASELINE:
        if len(t.tokens) <= fake_pos or fake_pos in t.head_span:
            return None
        return t.with_tail(fake_pos)
    first = 0
    excluded = set(t.head_span) | set(t.tail_span)
    cand = [p for p in range(first, len(t.tokens)) if p not in excluded]
    if not cand:
        return None
    return t.with_tail(int(cand[position_rng.integers(len(cand))]))


def _validate(handle: Any, triplets: Sequence[Triplet]) -> None:
    if not triplets:
        raise NoTripletsError(
            "relation_index got no triplets; build them with ablate.triplets.syntax.syntactic_triplets or "
            "ablate.triplets.kg loaders and check their alignment report"
        )
    V = handle.adapter.W_E.shape[0]
    for k, t in enumerate(triplets):
        bad = [x for x in t.tokens if not 0 <= x < V]
        if bad:
            raise TripletError(
                f"triplet {k} ({t.relation}, {t.text[:50]!r}) has token id(s) {bad[:5]} outside the "
                f"model's vocabulary of {V}: tail/head tokens must be in the vocabulary. Were the "
                "triplets aligned with a different tokenizer? Re-align them with this model's tokenizer."
            )


def relation_index(handle: Any, triplets: Sequence[Triplet], *, tau: float | None = 2.2,
                   tau_percentile: float | None = None, nulls: Iterable[str] = (SCORE_BASELINE,),
                   fake_tail_position: int = FAKE_TAIL_POSITION, ov: OVConfig = OVConfig(),
                   layers: Sequence[int] | None = None, batch_size: int = 16,
                   precision: torch.dtype = torch.float32, seed: int = 0, progress: bool = False
                   ) -> RelationIndexResult:
    """Relation index of every head of ``layers`` on ``triplets`` (docs/science.md §2).

    Args:
        handle: a :class:`~ablate.model.handle.ModelHandle` with eager attention.
        triplets: :class:`~ablate.triplets.relations.Triplet` list (both directions if wanted:
            :func:`~ablate.triplets.relations.with_reverse`).
        tau: dominance threshold (gate ``d^h_j > tau``); None = argmax-only.
        tau_percentile: if given (0-100), tau = this percentile of the dominance ratios of all
            scanned layers, heads, sentences and positions j >= 1 (overrides ``tau``).
        nulls: any of ``"baseline"`` (fake tail = token at ``fake_tail_position``) and
            ``"shuffled"`` (seeded random tail position).
        fake_tail_position: 0-based position of the fake tail (9 = the 10th token).
        ov: :class:`OVConfig` (what x_j is, biases, final norm).
        layers: layers to scan (default all).
        batch_size: sentences per forward pass.
        precision: dtype of the OV / index arithmetic (float64 for oracle comparisons).
        seed: seed of the shuffled-tail null.
        progress: show a tqdm bar over layers.

    Returns:
        :class:`RelationIndexResult`.

    Raises:
        NoTripletsError: empty triplet list. TripletError: token ids outside the vocabulary.
    """
    from tqdm.auto import tqdm

    triplets = list(triplets)
    _validate(handle, triplets)
    nulls = tuple(nulls)
    for n in nulls:
        if n not in _NULLS:
            raise AblateError(f"unknown null {n!r}; use any of {_NULLS}")
    ad = handle.adapter
    layers = list(range(ad.n_layers)) if layers is None else [int(l) for l in layers]
    H, L, K = ad.n_heads, len(layers), len(triplets)

    variants, dropped = _score_variants(triplets, nulls, seed, fake_tail_position)
    table = _sentence_table(triplets)
    items = {name: _item_arrays(vs, table) for name, vs in variants.items()}
    att = _attention_pass(handle, table, layers, batch_size)
    tau, tau_rank = _resolve_tau(att, table, tau, tau_percentile)

    # per layer: OV probabilities once per (distinct token, head), then every item's a_T
    sums = {n: torch.zeros(K, L, H, dtype=torch.float64) for n in variants}
    counts = {n: torch.zeros(K, L, H, dtype=torch.long) for n in variants}
    for li, layer in tqdm(list(enumerate(layers)), desc="relation index", leave=False, disable=not progress):
        gates = {name: _gate(att, li, d, tau, table) for name, d in items.items()}
        _accumulate_layer(handle, layer, li, table, items, gates, ov, precision, sums, counts)
    params = dict(tau=tau, tau_percentile=tau_percentile, nulls=list(nulls),
                  fake_tail_position=fake_tail_position, ov=dict(x=ov.x, bias=ov.bias, final_norm=ov.final_norm),
                  seed=seed, n_triplets=K, n_sentences=table.S)
    return RelationIndexResult(triplets, layers, H, tau, tau_percentile, tau_rank, sums, counts, dropped, params)


# ---- the stages of relation_index ------------------------------------------------------------


def _score_variants(triplets: list[Triplet], nulls: tuple[str, ...], seed: int, fake_tail_position: int
                    ) -> tuple[dict[str, list[Triplet | None]], dict[str, int]]:
    """The scored items: the real triplets and one null variant of each per null (None = no valid
    null for that triplet), and how many each null dropped."""
    rng = np.random.default_rng(seed)
    variants: dict[str, list[Triplet | None]] = {SCORE_RI: list(triplets)}
    dropped: dict[str, int] = {}
    for n in nulls:
        vs = [_null_triplet(t, n, rng, fake_tail_position) for t in triplets]
        variants[n] = vs
        dropped[n] = sum(v is None for v in vs)
    return variants, dropped


@dataclass(frozen=True)
class _SentenceTable:
    """The distinct sentences and their distinct context tokens, as index tensors.

    ``uniq`` is the global list of distinct token ids; ``rows_g[b, j]`` its index for the token at
    (sentence b, position j); ``cols_g[b, n]`` the global index of sentence b's n-th distinct token
    (first-appearance order); ``local[b, j]`` the local index of the token at (b, j);
    ``cmask[b, j, n]``: distinct token n occurs in t_0..t_j (and j is a real position).
    """

    sents: list[tuple[int, ...]]
    index: dict[tuple[int, ...], int]
    lens: torch.Tensor
    uniq: list[int]
    rows_g: torch.Tensor
    cols_g: torch.Tensor
    local: torch.Tensor
    cmask: torch.Tensor

    @property
    def S(self) -> int:
        return len(self.sents)

    @property
    def T(self) -> int:
        return int(self.lens.max())

    @property
    def N(self) -> int:
        return self.cols_g.shape[1]

    @property
    def real(self) -> torch.Tensor:
        """``[S, T]``: position j is a real token of sentence b."""
        return torch.arange(self.T)[None, :] < self.lens[:, None]


def _sentence_table(triplets: list[Triplet]) -> _SentenceTable:
    index: dict[tuple[int, ...], int] = {}
    for t in triplets:
        index.setdefault(t.tokens, len(index))
    sents = list(index)
    S = len(sents)
    lens = torch.tensor([len(s) for s in sents])
    T = int(lens.max())
    uniq = sorted({x for s in sents for x in s})
    gidx = {x: i for i, x in enumerate(uniq)}
    N = max(len(set(s)) for s in sents)
    rows_g = torch.zeros(S, T, dtype=torch.long)
    cols_g = torch.zeros(S, N, dtype=torch.long)
    local = torch.zeros(S, T, dtype=torch.long)
    cmask = torch.zeros(S, T, N, dtype=torch.bool)
    for b, s in enumerate(sents):
        loc: dict[int, int] = {}
        for j, x in enumerate(s):
            if x not in loc:
                loc[x] = len(loc)
                cols_g[b, loc[x]] = gidx[x]
                cmask[b, j:len(s), loc[x]] = True
            local[b, j] = loc[x]
            rows_g[b, j] = gidx[x]
    return _SentenceTable(sents, index, lens, uniq, rows_g, cols_g, local, cmask)


class _Items(NamedTuple):
    """One score's items as tensors: triplet index ``k``, sentence ``tb``, head-token ``span``
    ``[k, T]``, local index of the ``tail`` token, first qualifying position ``jmin``."""

    k: torch.Tensor
    tb: torch.Tensor
    span: torch.Tensor
    tail: torch.Tensor
    jmin: torch.Tensor


def _item_arrays(vs: list[Triplet | None], table: _SentenceTable) -> _Items:
    keep = [k for k, v in enumerate(vs) if v is not None]
    tb = torch.tensor([table.index[vs[k].tokens] for k in keep], dtype=torch.long)
    span = torch.zeros(len(keep), table.T, dtype=torch.bool)
    for i, k in enumerate(keep):
        span[i, list(vs[k].head_span)] = True
    tail = torch.tensor([int(table.local[table.index[vs[k].tokens], vs[k].o]) for k in keep], dtype=torch.long)
    jmin = torch.tensor([vs[k].j_min for k in keep], dtype=torch.long)
    return _Items(torch.tensor(keep, dtype=torch.long), tb, span, tail, jmin)


class _Attention(NamedTuple):
    """Per (layer, sentence, head, position): the attention argmax and the dominance ratio."""

    amax: torch.Tensor  # [L, S, H, T] long
    dom: torch.Tensor  # [L, S, H, T] float (NaN past the sentence end)


def _attention_pass(handle: Any, table: _SentenceTable, layers: list[int], batch_size: int) -> _Attention:
    """Eager forward passes over the sentences (right padding): argmax and dominance of every head."""
    from ablate.model.handle import pad_batch

    L, S, H, T = len(layers), table.S, handle.adapter.n_heads, table.T
    amax = torch.zeros(L, S, H, T, dtype=torch.long)
    dom = torch.full((L, S, H, T), float("nan"))
    pad = handle.tokenizer.pad_token_id if handle.tokenizer is not None else 0
    pad = 0 if pad is None else pad
    for b0 in range(0, S, batch_size):
        chunk = [list(s) for s in table.sents[b0:b0 + batch_size]]
        batch = pad_batch(chunk, pad, padding_side="right", device=handle.device)
        out = handle.forward(batch, output_attentions=True)
        if out.attentions is None or out.attentions[0] is None:
            raise AblateError(
                "the model returned no attention patterns; load it with eager attention "
                "(load_model(..., eager=True) or ModelHandle.from_hf(model, tok, eager=True))"
            )
        Tb = batch["input_ids"].shape[1]
        for li, layer in enumerate(layers):
            am, r = attention_stats(out.attentions[layer].float().cpu())  # [B, H, Tb]
            amax[li, b0:b0 + len(chunk), :, :Tb] = am
            dom[li, b0:b0 + len(chunk), :, :Tb] = r
    return _Attention(amax, dom)


def _resolve_tau(att: _Attention, table: _SentenceTable, tau: float | None, tau_percentile: float | None
                 ) -> tuple[float | None, float | None]:
    """``(tau, tau_rank)``: tau from its percentile when given, and the share of dominance ratios
    (positions j >= 1 of every scanned layer, head and sentence) at or below it."""
    pos = torch.arange(table.T)
    pop = att.dom.permute(0, 1, 3, 2)[:, table.real & (pos[None, :] >= 1)]  # [L, n, H]
    if tau_percentile is not None:
        tau = float(np.percentile(pop.clamp(max=1e30).numpy().ravel(), tau_percentile))
    tau_rank = float((pop <= tau).float().mean()) if tau is not None and pop.numel() else None
    return tau, tau_rank


def _gate(att: _Attention, li: int, d: _Items, tau: float | None, table: _SentenceTable) -> torch.Tensor:
    """``[k, T, H]``: the QK gate of every item at every position and head of layer ``li``: the
    argmax lies in the head token's span, dominance > tau (unless argmax-only), j >= j_min, j real."""
    pos = torch.arange(table.T)
    am = att.amax[li, d.tb].transpose(1, 2)  # [k, T, H]
    gate = torch.gather(d.span, 1, am.reshape(len(d.tb), -1)).reshape(am.shape)
    if tau is not None:
        gate &= att.dom[li, d.tb].transpose(1, 2) > tau
    gate &= (pos[None, :] >= d.jmin[:, None])[:, :, None]
    gate &= table.real[d.tb][:, :, None]
    return gate


def _accumulate_layer(handle: Any, layer: int, li: int, table: _SentenceTable, items: dict[str, _Items],
                      gates: dict[str, torch.Tensor], ov: OVConfig, precision: torch.dtype,
                      sums: dict[str, torch.Tensor], counts: dict[str, torch.Tensor]) -> None:
    """Add layer ``li``'s gated a_T (sum and count per triplet and head) into ``sums``/``counts``.

    The OV probabilities are computed only for the (token, head) pairs that some gate opens, then
    centred and clipped over each position's distinct context tokens, sentence chunk by chunk.
    """
    S, T, N, H = table.S, table.T, table.N, handle.adapter.n_heads
    need = torch.zeros(S, T, H)
    for name, d in items.items():
        need.index_add_(0, d.tb, gates[name].float())
    needed_rows = torch.unique(table.rows_g[(need > 0).any(-1)])  # global indices of tokens with events
    if len(needed_rows) == 0:
        return
    rowmap = torch.zeros(len(table.uniq), dtype=torch.long)
    rowmap[needed_rows] = torch.arange(len(needed_rows))
    head_mask = torch.zeros(len(needed_rows), H)  # (token, head) pairs with an event
    head_mask.index_add_(0, rowmap[table.rows_g].flatten(), (need > 0).float().reshape(-1, H))
    uniq_t = torch.tensor(table.uniq, dtype=torch.long)
    P = ov_context_probs(handle, layer, uniq_t[needed_rows], uniq_t, ov, dtype=precision,
                         row_mask=head_mask > 0)  # [R, H, U], zeros where no event
    sent_chunk = max(1, int((64 << 20) // max(1, T * N * H * 8)))
    for c0 in range(0, S, sent_chunk):
        c1 = min(S, c0 + sent_chunk)
        rg, cg, m = rowmap[table.rows_g[c0:c1]], table.cols_g[c0:c1], table.cmask[c0:c1]
        Pg = P[rg[:, :, None], :, cg[:, None, :]]  # [Sc, T, N, H] (rows without events: dummy, gated out)
        mf = m.to(precision)[..., None]  # [Sc, T, N, 1]
        cnt = mf.sum(2).clamp(min=1)  # [Sc, T, 1]
        mean = (Pg * mf).sum(2) / cnt  # [Sc, T, H]
        q = (Pg - mean[:, :, None, :]).clamp(min=0) * mf  # [Sc, T, N, H]
        qs = q.sum(2)  # [Sc, T, H]
        R = torch.where(qs[:, :, None, :] > 0, q / qs.clamp(min=torch.finfo(precision).tiny)[:, :, None, :],
                        torch.zeros((), dtype=precision))  # [Sc, T, N, H]: a for every tail
        for name, d in items.items():
            sel = (d.tb >= c0) & (d.tb < c1)
            if not sel.any():
                continue
            tb, tail, gate = d.tb[sel], d.tail[sel], gates[name][sel]
            a = R[tb - c0, :, tail, :]  # [k, T, H]
            kk = d.k[sel]
            sums[name][kk, li] = (a.double() * gate).sum(1)
            counts[name][kk, li] = gate.sum(1)
