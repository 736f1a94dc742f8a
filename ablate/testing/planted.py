"""Hand-set GPT-2 weights that plant a known head: relation (a -> b), copying, induction.

GPT-2 is used because its absolute position embeddings and ``c_attn`` biases make hand-written
attention patterns simple. All embeddings are made zero-mean where LayerNorm must act as a pure
rescaling.
"""

from __future__ import annotations

import torch

from ablate.model.handle import ModelHandle
from ablate.testing.tiny import tiny_model, tiny_tokenizer


def _handle(n_layers: int, n_heads: int, d_model: int, seed: int = 0, max_pos: int = 128) -> ModelHandle:
    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), n_layers=n_layers, n_heads=n_heads, d_model=d_model,
                       seed=seed, bias=False, max_pos=max_pos)
    return ModelHandle.from_hf(model, tok, locator="planted")


def planted_relation_model(a: int | list[int], b: int, *, seed: int = 0) -> ModelHandle:
    """1 layer, 4 heads (d_head 16). Head 0 attends from every position to the token(s) ``a``
    (key feature on residual dim 0, constant query from the q bias) and its OV circuit maps
    ``a`` to ``b`` (value reads dim 0, output writes +dim 2 / -dim 3, ``b``'s embedding
    direction; GPT-2 ties W_U = W_E^T). Heads 1-3 attend to ``a`` the same way but keep random
    value/output weights (scaled up so their OV is not flat): they pass the QK gate on the same
    events, so only the OV circuit separates them from head 0."""
    a = [a] if isinstance(a, int) else list(a)
    h = _handle(1, 4, 64, seed)
    m, d, dh = h.hf, 64, 16
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        E = m.transformer.wte.weight
        E.copy_(torch.randn(E.shape, generator=g))
        E[:, :4] = 0.0
        E[a, 0], E[a, 1] = 8.0, -8.0
        E[b, 2], E[b, 3] = 8.0, -8.0
        m.transformer.wpe.weight.zero_()
        attn = m.transformer.h[0].attn
        attn.c_attn.weight.mul_(6.0)
        attn.c_proj.weight.mul_(15.0)
        W, bias = attn.c_attn.weight, attn.c_attn.bias  # Conv1D [d, 3d]
        W[0:4] = 0.0  # no value reads the planted feature dims, except head 0's below
        W[:, 0:2 * d] = 0.0  # queries and keys: set by hand
        for hh in range(4):  # every head: q = 10 (bias) everywhere, k = c * LN(x)[0] (large for a)
            bias[hh * dh] = 10.0
            W[0, d + hh * dh] = 10.0 if hh == 0 else 5.0
        W[:, 2 * d:2 * d + dh] = 0.0
        W[0, 2 * d + 0] = 1.0  # head 0: v_0 = LN(x)[0]
        O = attn.c_proj.weight  # [in = H*dh, out = d]
        O[0:dh] = 0.0
        O[0, 2], O[0, 3] = 1.0, -1.0
        mlp = m.transformer.h[0].mlp
        mlp.c_fc.weight.zero_()
        mlp.c_proj.weight.zero_()
    return h


def planted_copying_model(*, seed: int = 0, beta: float = 4.0, gamma: float = 4.0) -> ModelHandle:
    """1 layer, 4 heads (d_head 16). Head 1 attends to the current token itself (Q = K = the
    first 16 residual dims) and copies it (OV = identity on those dims, scaled by ``gamma``)."""
    h = _handle(1, 4, 64, seed)
    m, d, dh = h.hf, 64, 16
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        E = m.transformer.wte.weight
        E.copy_(torch.randn(E.shape, generator=g))
        m.transformer.wpe.weight.zero_()
        attn = m.transformer.h[0].attn
        W = attn.c_attn.weight
        lo, hi = dh, 2 * dh
        W[:, lo:hi] = 0.0
        W[:, d + lo:d + hi] = 0.0
        W[:, 2 * d + lo:2 * d + hi] = 0.0
        eye = torch.eye(dh)
        W[0:dh, lo:hi] = beta * eye
        W[0:dh, d + lo:d + hi] = beta * eye
        W[0:dh, 2 * d + lo:2 * d + hi] = eye
        O = attn.c_proj.weight
        O[lo:hi] = 0.0
        O[lo:hi, 0:dh] = gamma * eye
        m.transformer.h[0].mlp.c_fc.weight.zero_()
        m.transformer.h[0].mlp.c_proj.weight.zero_()
    return h


def planted_induction_model(*, seed: int = 0, max_pos: int = 64) -> ModelHandle:
    """2 layers, 4 heads (d_head 64), d_model 256. Residual layout: dims 0-63 token code,
    64-127 position code (orthonormal, zero-mean), 128-191 "previous token" code.
    L0H0 is a previous-token head (query M p_j with M p_j = p_{j-1}, key p_k) that writes the
    previous token's code into dims 128-191; L1H0 is the induction head (query = token code,
    key = previous-token code), so it attends to the token right after an earlier occurrence
    of the current token. All other heads and MLPs are zero."""
    h = _handle(2, 4, 256, seed, max_pos=max_pos)
    m, d, dh = h.hf, 256, 64
    g = torch.Generator().manual_seed(seed)
    V = m.transformer.wte.weight.shape[0]
    with torch.no_grad():
        codes = torch.randn(V, dh, generator=g)
        codes = codes - codes.mean(1, keepdim=True)
        codes = codes / codes.norm(dim=1, keepdim=True) * 8.0  # |code| = 8
        E = m.transformer.wte.weight
        E.zero_()
        E[:, 0:dh] = codes
        P = torch.randn(dh, max_pos, generator=g)
        P = P - P.mean(0, keepdim=True)
        Q, _ = torch.linalg.qr(P)  # [dh, max_pos], orthonormal zero-mean columns
        pcode = Q.T * 8.0  # [max_pos, dh]
        m.transformer.wpe.weight.zero_()
        m.transformer.wpe.weight[:, dh:2 * dh] = pcode
        for blk in m.transformer.h:
            blk.attn.c_attn.weight.zero_()
            blk.attn.c_attn.bias.zero_()
            blk.attn.c_proj.weight.zero_()
            blk.attn.c_proj.bias.zero_()
            blk.mlp.c_fc.weight.zero_()
            blk.mlp.c_proj.weight.zero_()
        shift = torch.zeros(dh, dh)  # maps unit position code j to unit code j-1
        u = Q  # [dh, max_pos]
        for j in range(1, max_pos):
            shift += torch.outer(u[:, j - 1], u[:, j])
        a0 = m.transformer.h[0].attn
        # q = x @ Wq: x[64:128] = 8 u_j / std -> Wq = shift^T * c
        a0.c_attn.weight[dh:2 * dh, 0:dh] = shift.T * 6.0
        a0.c_attn.weight[dh:2 * dh, d:d + dh] = torch.eye(dh) * 6.0
        a0.c_attn.weight[0:dh, 2 * d:2 * d + dh] = torch.eye(dh)  # v = token code
        a0.c_proj.weight[0:dh, 2 * dh:3 * dh] = torch.eye(dh)  # write into prev-token dims
        a1 = m.transformer.h[1].attn
        a1.c_attn.weight[0:dh, 0:dh] = torch.eye(dh) * 3.0  # q = token code
        a1.c_attn.weight[2 * dh:3 * dh, d:d + dh] = torch.eye(dh) * 3.0  # k = prev-token code
    return h
