"""The shared-prefix sweep equals the per-set loop (each set run alone through run_intervention)."""

from __future__ import annotations

import pytest
import torch

from ablate.intervene.engine import capture_residual, run_conditions, run_intervention
from ablate.intervene.operators import make_operator, ZeroAblate
from ablate.intervene.sweep import head_sweep, single_heads
from ablate.model.errors import InterventionError
from ablate.model.heads import HeadSet
from ablate.testing.tiny import tiny_handle

TEXTS = ["the cat sat on the mat", "a dog ran after the ball today", "one two"]


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "llama"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("op", ["zero", "mean", "resample"])
def test_shared_prefix_sweep_equals_the_per_set_loop(family, side, op):
    h = tiny_handle(family, n_layers=3)
    batch = h.encode(TEXTS, padding_side=side)
    ref = h.encode(["some reference text here", "and more of it"], padding_side=side)
    sets = single_heads(h) + [HeadSet.parse("L1H0,L2H1")]
    got = head_sweep(h, batch, sets, op, reference=ref, reduce="token_loss", seed=3)
    for i, s in enumerate(sets):
        want = run_intervention(h, batch, make_operator(op, s, seed=3), reference=ref, reduce="token_loss")
        torch.testing.assert_close(got[i], want, atol=1e-5, rtol=0)
    # and the sweep is not trivially the clean run: ablating some head changes the losses
    clean = run_intervention(h, batch, None, reduce="token_loss")
    assert max(float((g - clean).abs().max()) for g in got) > 1e-3


def test_patch_sweep_with_a_source_batch_equals_the_loop():
    h = tiny_handle("llama", n_layers=3)
    batch = h.encode(TEXTS)
    src = h.encode(["the dog sat on the rug", "a cat ran after the mouse today", "two one"])
    sets = single_heads(h)
    got = head_sweep(h, batch, sets, "patch", positions="last", source=src, reduce="last_logits")
    for i, s in enumerate(sets):
        want = run_intervention(h, batch, make_operator("patch", s, "last"), source=src, reduce="last_logits")
        torch.testing.assert_close(got[i], want, atol=1e-5, rtol=0)


def test_a_prefix_refuses_conditions_below_its_layer_and_other_batches():
    h = tiny_handle("gpt2", n_layers=3)
    batch = h.encode(TEXTS)
    pre = capture_residual(h, batch, [2])[2]
    with pytest.raises(InterventionError, match="below the shared prefix"):
        run_conditions(h, batch, [ZeroAblate(HeadSet.parse("L1H0"))], prefix=pre)
    with pytest.raises(InterventionError, match="prefix hidden state"):
        run_conditions(h, h.encode(TEXTS[:2]), [ZeroAblate(HeadSet.parse("L2H0"))], prefix=pre)
    with pytest.raises(InterventionError, match="empty"):
        head_sweep(h, batch, [HeadSet()])
