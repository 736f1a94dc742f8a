"""The jaxtyping shape annotations of the public tensor functions are checked at run time in the
test suite (setup.cfg: ``--jaxtyping-packages=ablate,beartype.beartype``): wrong shapes fail."""

from __future__ import annotations

import pytest
import torch
from jaxtyping import TypeCheckError

from ablate.intervene.engine import last_positions, position_mask, token_losses
from ablate.scores.relation_index import attention_stats
from ablate.testing.tiny import tiny_handle


def test_token_losses_rejects_mismatched_sequence_lengths():
    logits = torch.randn(2, 5, 11)
    assert token_losses(logits, torch.randint(0, 11, (2, 5))).shape == (2, 4)
    with pytest.raises(TypeCheckError):
        token_losses(logits, torch.randint(0, 11, (2, 6)))  # ids one longer than the logits


def test_position_mask_and_last_positions_check_their_shapes():
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert position_mask("last", mask).tolist() == [[False, False, True], [False, False, True]]
    assert last_positions(mask).tolist() == [2, 2]
    with pytest.raises(TypeCheckError):
        last_positions(torch.ones(3))  # a mask must be [batch, seq]


def test_attention_stats_needs_query_and_key_axes():
    a = torch.softmax(torch.randn(2, 3, 4, 4), -1)
    am, r = attention_stats(a)
    assert am.shape == r.shape == (2, 3, 4)
    with pytest.raises(TypeCheckError):
        attention_stats(torch.arange(4))  # integer, one axis: neither float nor [.., q, k]


def test_adapter_weights_have_the_annotated_head_shapes():
    h = tiny_handle("llama")
    a = h.adapter
    assert a.W_V(0).shape == (a.n_heads, a.d_model, a.head_dim)
    assert a.W_O(0).shape == (a.n_heads, a.head_dim, a.d_model)
