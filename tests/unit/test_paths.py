"""Path patching oracles (docs/science.md, "Path patching: where a head's output goes").

1. Completeness: on a 3-layer attention-only GPT-2 with identity norms and query/key weights that
   make every attention pattern independent of the residual stream, the model is linear in the
   sender's output, so direct + all receiver paths must equal the total effect (a path counted twice
   or missed breaks the equality).
2. Direct path by hand: plain torch hooks (no nnsight) give the clean final residual and the head's
   clean/corrupted output; the direct-path logits are ``ln_f(resid + delta @ W_O) @ W_U`` with the
   final norm recomputed, exactly the method's convention.
"""

from __future__ import annotations

import pytest
import torch

from ablate.intervene.paths import path_group, path_patch, receivers
from ablate.model.errors import InterventionError
from ablate.model.handle import ModelHandle
from ablate.testing.tiny import tiny_handle, tiny_model, tiny_tokenizer


def _linear_toy(seed: int = 0) -> ModelHandle:
    tok = tiny_tokenizer()
    m = tiny_model("gpt2", vocab_size=len(tok), n_layers=3, n_heads=4, d_model=32, seed=seed, bias=True)
    d = 32
    with torch.no_grad():
        for blk in m.transformer.h:
            blk.ln_1 = torch.nn.Identity()
            blk.ln_2 = torch.nn.Identity()
            blk.mlp.c_fc.weight.zero_()
            blk.mlp.c_proj.weight.zero_()
            blk.mlp.c_proj.bias.zero_()
            blk.attn.c_attn.weight[:, :2 * d] = 0.0  # q, k do not read the residual: fixed patterns
            blk.attn.c_attn.weight.mul_(10.0)  # O(1) effects (no norms rescale the residual here)
            blk.attn.c_proj.weight.mul_(10.0)
        m.transformer.ln_f = torch.nn.Identity()
        m.transformer.wte.weight.mul_(10.0)
    return ModelHandle.from_hf(m, tok, locator="linear-toy")


def _batches(h: ModelHandle, seed: int = 0, B: int = 3, T: int = 7):
    g = torch.Generator().manual_seed(seed)
    V = h.adapter.vocab_size
    clean = torch.randint(4, V, (B, T), generator=g)
    cor = torch.randint(4, V, (B, T), generator=g)
    ones = torch.ones(B, T, dtype=torch.long)
    labels = torch.randint(4, V, (B,), generator=g)
    return {"input_ids": clean, "attention_mask": ones}, {"input_ids": cor, "attention_mask": ones}, labels


@pytest.mark.parametrize("heads", ["L0H1", "L0H0,L1H2"])
def test_paths_sum_to_total_where_linear(heads):
    h = _linear_toy()
    clean, cor, labels = _batches(h)
    r = path_patch(h, clean, labels, heads, corrupted=cor, metric="logit")
    assert r.total.abs().max() > 1e-2  # a real effect to split
    scale = torch.stack([v.abs() for v in r.paths.values()]).sum(0) + r.total.abs()
    assert (r.nonlinear.abs() <= 1e-5 * scale + 1e-5).all(), (r.nonlinear, r.means())  # float32 rounding only
    # receivers through later heads' values carry something; q/k paths carry nothing (fixed patterns)
    v = sum(val.abs().sum() for k, val in r.paths.items() if path_group(k) == "v")
    qk = sum(val.abs().sum() for k, val in r.paths.items() if path_group(k) in ("q", "k"))
    assert v > 1e-3 and qk < 1e-4
    # the direct path alone does not explain the total (so the equality above tests the receivers)
    assert (r.total - r.paths["direct"]).abs().max() > 1e-3


def test_dropping_a_receiver_kind_breaks_the_sum():
    h = _linear_toy()
    clean, cor, labels = _batches(h)
    r = path_patch(h, clean, labels, "L0H1", corrupted=cor, metric="logit", kinds=("mlp", "q", "k"))
    assert r.nonlinear.abs().max() > 1e-2


def test_direct_path_by_hand_with_plain_torch():
    h = tiny_handle("gpt2", n_layers=2, n_heads=4, d_model=32, seed=3)
    m = h.hf
    clean, cor, labels = _batches(h, seed=1)
    layer, head, dh = 0, 2, 8
    caps = {}

    def grab(name):
        def hook(mod, args, out=None):
            caps[name] = (args[0] if out is None else out).detach().clone()
        return hook

    ln_f = m.transformer.ln_f
    hs = [m.transformer.h[layer].attn.c_proj.register_forward_pre_hook(lambda mod, args: caps.__setitem__("z", args[0].detach().clone())),
          ln_f.register_forward_pre_hook(lambda mod, args: caps.__setitem__("resid", args[0].detach().clone()))]
    with torch.no_grad():
        m(**clean)
        z_clean, resid = caps["z"], caps["resid"]
        m(**cor)
        z_cor = caps["z"]
    for x in hs:
        x.remove()
    sl = slice(head * dh, (head + 1) * dh)
    W_O = m.transformer.h[layer].attn.c_proj.weight  # Conv1D [in, out]
    delta = (z_cor[..., sl] - z_clean[..., sl]) @ W_O[sl]
    with torch.no_grad():
        lp = lambda res: torch.log_softmax(ln_f(res)[:, -1] @ m.lm_head.weight.T, -1)
        want = lp(resid + delta).gather(-1, labels[:, None])[:, 0] - lp(resid).gather(-1, labels[:, None])[:, 0]
    r = path_patch(h, clean, labels, f"L{layer}H{head}", corrupted=cor, metric="logprob", kinds=())
    assert torch.allclose(r.paths["direct"], want, atol=1e-5)
    assert (want.abs() > 1e-4).all()


def test_mean_sender_and_gqa_receivers_on_llama():
    h = tiny_handle("llama", n_layers=2, n_heads=4, n_kv_heads=2, d_model=32)
    clean, cor, labels = _batches(h)
    names = [r.name for r in receivers(h, "L0H1")]
    assert names == ["mlp:L0", "q:L1H0", "q:L1H1", "q:L1H2", "q:L1H3", "k:L1G0", "k:L1G1", "v:L1G0",
                     "v:L1G1", "mlp:L1"]
    r = path_patch(h, clean, labels, "L0H1", sender="mean", reference=cor)
    assert set(r.paths) == {"direct", *names}
    assert all(torch.isfinite(v).all() for v in r.paths.values())
    assert r.total.abs().max() > 0


def test_bad_inputs_say_what_to_do():
    h = tiny_handle("gpt2", n_layers=1)
    clean, cor, labels = _batches(h)
    with pytest.raises(InterventionError, match="corrupted"):
        path_patch(h, clean, labels, "L0H0")
    with pytest.raises(InterventionError, match="unknown sender"):
        path_patch(h, clean, labels, "L0H0", sender="zero")
    with pytest.raises(InterventionError, match="labels"):
        path_patch(h, clean, labels[:1], "L0H0", corrupted=cor)
