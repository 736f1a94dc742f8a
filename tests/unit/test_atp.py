"""Attribution patching: exact where the model is linear in the heads' outputs, the documented sign,
clear refusals, and no gradients left on the model."""

from __future__ import annotations

import pytest
import torch

from ablate.intervene.atp import atp_effects, last_token_logprob, screen_and_verify
from ablate.intervene.engine import last_positions
from ablate.intervene.sweep import head_sweep
from ablate.model.errors import InterventionError
from ablate.model.heads import HeadSet
from ablate.testing.tiny import tiny_handle

TEXTS = ["the cat is in the house", "a dog was in the red car", "she is a doctor and he"]
TOKEN = 7


def _linear_after_last_attention(handle):
    """Make everything after the last layer's o_proj linear: no final norm, last MLP outputs 0."""
    m = handle.hf
    m.model.norm = torch.nn.Identity()
    with torch.no_grad():
        m.model.layers[-1].mlp.down_proj.weight.zero_()
        m.model.layers[-1].self_attn.o_proj.weight.mul_(50)  # large head effects, still linear
    return handle


def _raw_logit(logits, batch):
    last = last_positions(batch["attention_mask"])
    return logits[torch.arange(logits.shape[0]), last, TOKEN].float()


def _exact(h, batch, sets, op, **kw):
    out = head_sweep(h, batch, sets, op, reduce="logits", **kw)
    from ablate.intervene.engine import run_intervention

    base = _raw_logit(run_intervention(h, batch, None), batch)
    return torch.stack([_raw_logit(out[i], batch) - base for i in range(len(sets))], 1)  # [B, sets]


@pytest.mark.parametrize("op", ["zero", "mean", "patch"])
def test_atp_is_exact_for_last_layer_heads_of_a_linear_readout(op):
    h = _linear_after_last_attention(tiny_handle("llama", n_layers=2))
    batch = h.encode(TEXTS, padding_side="left")
    kw = {}
    if op == "mean":
        kw["reference"] = h.encode(["some reference text", "more words here"], padding_side="left")
    if op == "patch":
        kw["source"] = {k: v.roll(1, 0) for k, v in batch.items()}  # another prompt per row, same length
        assert kw["source"]["input_ids"].shape == batch["input_ids"].shape
    res = atp_effects(h, batch, _raw_logit, op, **kw)
    L = h.n_layers - 1
    sets = [HeadSet([(L, hh)]) for hh in range(h.n_heads)]
    exact = _exact(h, batch, sets, op, **kw)
    torch.testing.assert_close(res.per_row[:, L], exact, atol=2e-5, rtol=1e-3)  # per row (a rolled source
    # makes the row mean of a patch effect telescope to ~0, so rows are compared one by one)
    torch.testing.assert_close(res.effects[L], exact.mean(0), atol=2e-5, rtol=1e-3)
    assert exact.abs().max() > 2e-3  # 100x the tolerance: the heads matter, agreement is not 0 == 0


def test_sign_convention_and_first_order_error_off_the_linear_case():
    h = tiny_handle("llama", n_layers=2)
    batch = h.encode(TEXTS)
    gold = torch.tensor([TOKEN] * len(TEXTS))
    res = atp_effects(h, batch, last_token_logprob(gold), "zero")
    df = screen_and_verify(h, batch, last_token_logprob(gold), "zero", k=3)
    ver = df.dropna(subset=["exact_effect"])
    assert len(ver) == 3 and list(ver["rank"]) == [1, 2, 3]
    # same sign as the exact effect for the largest estimates (the documented convention)
    assert (torch.tensor(ver["atp_effect"].values).sign() == torch.tensor(ver["exact_effect"].values).sign()).all()
    assert res.per_row.shape == (len(TEXTS), h.n_layers, h.n_heads)


def test_refusals_and_no_gradients_left_behind():
    h = tiny_handle("gpt2", n_layers=2)
    batch = h.encode(TEXTS)
    short = h.encode([t.split()[0] for t in TEXTS])
    with pytest.raises(InterventionError, match="same length"):
        atp_effects(h, batch, _raw_logit, "patch", source=short)
    atp_effects(h, batch, _raw_logit, "patch", source=short, positions="last")  # aligned at the last token
    with pytest.raises(InterventionError, match="screens operators"):
        atp_effects(h, batch, _raw_logit, "resample")
    with pytest.raises(InterventionError, match="reference"):
        atp_effects(h, batch, _raw_logit, "mean")
    assert all(p.grad is None for p in h.hf.parameters())
    assert all(p.requires_grad for p in h.hf.parameters())
