"""Copying and prefix-matching scores: literal oracle, planted copying and induction heads."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ablate.scores.copying import copying_score, prefix_matching_score, random_sequences, token_pool
from ablate.model.errors import AblateError
from ablate.testing.literal_ri import a_literal
from ablate.testing.tiny import tiny_handle

from ablate.testing.planted import planted_copying_model, planted_induction_model  # noqa: E402


def test_random_sequences_seeded_distinct_with_bos():
    h = tiny_handle("gpt2")
    a = random_sequences(h, 4, 10, seed=3)
    b = random_sequences(h, 4, 10, seed=3)
    assert torch.equal(a, b) and a.shape == (4, 11)
    assert (a[:, 0] == h.tokenizer.bos_token_id).all()
    assert all(len(set(r[1:])) == 10 for r in a.tolist())
    assert not set(a[:, 1:].flatten().tolist()) & set(h.tokenizer.all_special_ids)
    with pytest.raises(AblateError, match="pool"):
        random_sequences(h, 1, 10_000)
    assert len(token_pool(h)) == len(h.tokenizer) - 4


def test_copying_equals_literal():
    h = tiny_handle("llama")
    seqs = random_sequences(h, 3, 10, seed=1)
    cs = copying_score(h, sequences=seqs, precision=torch.float64)
    out = h.forward({"input_ids": seqs, "attention_mask": torch.ones_like(seqs)}, output_attentions=True)
    L, H = h.n_layers, h.n_heads
    ref, n, cache = np.zeros((L, H)), np.zeros((L, H)), {}
    for b, toks in enumerate(seqs.tolist()):
        for l in range(L):
            for hh in range(H):
                for j in range(1, len(toks)):
                    k = int(out.attentions[l][b, hh, j, : j + 1].argmax())
                    if k == 0:
                        continue
                    ref[l, hh] += a_literal(h, l, hh, toks, j, toks[k], source_token=toks[k], cache=cache)
                    n[l, hh] += 1
    np.testing.assert_array_equal(cs.n_events.numpy(), n)
    np.testing.assert_allclose(cs.values.numpy(), ref / np.maximum(n, 1), atol=1e-6)


def test_planted_copying_head():
    cs = copying_score(planted_copying_model(), n_sequences=16, length=20)
    v = cs.values[0]
    assert v[1] > 0.95
    assert all(v[h] < 0.4 for h in (0, 2, 3))
    assert cs.top(1)[0][:2] == (0, 1)
    df = cs.frame()
    assert set(df.score) == {"copying"} and len(df) == 4


def test_planted_induction_head():
    ps = prefix_matching_score(planted_induction_model(), n_sequences=8, length=10)
    v = ps.values
    assert v[1, 0] > 0.95  # L1H0: the induction head
    mask = torch.ones_like(v, dtype=torch.bool)
    mask[1, 0] = False
    assert v[mask].max() < 0.2
    assert int(ps.n_events[0, 0]) == 8 * 10


def test_prefix_matching_needs_repeats():
    with pytest.raises(AblateError, match="repeats"):
        prefix_matching_score(tiny_handle("gpt2"), repeats=1)
