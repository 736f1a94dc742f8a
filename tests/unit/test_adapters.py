"""Per-head W_V / W_O from the adapter must rebuild the attention block's real output.

Oracle: the attention module's own output (captured by a hook) versus
``sum_h (A_h @ (x W_V^h + b_V^h)) W_O^h + b_O`` computed from the adapter's weights and the real
attention pattern of the same forward pass.
"""

import pytest
import torch

from ablate.model.adapters import ArchAdapter
from ablate.model.errors import UnknownArchitectureError
from ablate.testing.tiny import tiny_model


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "llama"])
@pytest.mark.parametrize("layer", [0, 1])
def test_ov_weights_reconstruct_attention_output(family, layer):
    model = tiny_model(family, n_heads=4, n_kv_heads=2)
    a = ArchAdapter(model)
    captured = {}

    def pre(mod, args, kwargs):
        captured["x"] = kwargs.get("hidden_states", args[0] if args else None)

    def post(mod, args, kwargs, out):
        captured["out"], captured["A"] = out[0], out[1]

    attn = a.attn(layer)
    h1 = attn.register_forward_pre_hook(pre, with_kwargs=True)
    h2 = attn.register_forward_hook(post, with_kwargs=True)
    ids = torch.randint(4, a.vocab_size, (3, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model(input_ids=ids, output_attentions=True)
    h1.remove(), h2.remove()
    x, A = captured["x"], captured["A"]  # [B, T, D], [B, H, T, T]
    assert A.shape[1] == a.n_heads
    v = torch.einsum("btd,hde->bhte", x, a.W_V(layer)) + a.b_V(layer)[None, :, None, :]
    z = A @ v  # [B, H, T, dh]
    out = torch.einsum("bhte,hed->btd", z, a.W_O(layer)) + a.b_O(layer)
    torch.testing.assert_close(out, captured["out"], atol=1e-5, rtol=1e-5)


def test_gqa_heads_share_value_weights():
    model = tiny_model("llama", n_heads=4, n_kv_heads=2)
    a = ArchAdapter(model)
    assert (a.n_heads, a.n_kv_heads) == (4, 2)
    W = a.W_V(0)
    assert torch.equal(W[0], W[1]) and torch.equal(W[2], W[3]) and not torch.equal(W[0], W[2])
    assert [a.kv_head(h) for h in range(4)] == [0, 0, 1, 1]


def test_head_dim_from_config_when_present():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=50, hidden_size=32, num_attention_heads=2, num_key_value_heads=1,
                      head_dim=24, num_hidden_layers=1, intermediate_size=16)
    a = ArchAdapter(LlamaForCausalLM(cfg))
    assert a.head_dim == 24 and a.W_V(0).shape == (2, 32, 24) and a.W_O(0).shape == (2, 24, 32)


def test_unknown_family_lists_supported_and_how_to_add():
    from transformers import BertConfig, BertLMHeadModel

    m = BertLMHeadModel(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=16, is_decoder=True))
    with pytest.raises(UnknownArchitectureError) as e:
        ArchAdapter(m)
    msg = str(e.value)
    assert "bert" in msg and "gpt2" in msg and "gpt_neox" in msg and "llama" in msg
    assert "FAMILIES" in msg


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "llama"])
def test_embedding_unembedding_and_final_norm_give_the_real_logits(family):
    """logits == final_norm(residual) @ W_U (+ b_U): the adapter names the real modules."""
    model = tiny_model(family)
    a = ArchAdapter(model)
    ids = torch.randint(4, a.vocab_size, (2, 7), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
        resid = out.hidden_states[-1]  # HF applies the final norm to the last hidden state already
        logits = resid @ a.W_U + (a.b_U if a.b_U is not None else 0)
        torch.testing.assert_close(logits, out.logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.embed()(ids), out.hidden_states[0] if family != "gpt2" else a.W_E[ids])
    assert a.W_U.shape == (a.d_model, a.vocab_size) and a.W_E.shape == (a.vocab_size, a.d_model)
    assert isinstance(a.final_norm(), torch.nn.Module)
