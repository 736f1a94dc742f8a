"""Relation index: vectorised == literal per-position oracle; planted head; bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ablate.scores.relation_index import OVConfig, relation_index
from ablate.testing.literal_ri import relation_index_literal
from ablate.triplets.relations import NoTripletsError, Triplet, TripletError, with_reverse
from ablate.testing.tiny import FAMILIES, tiny_handle

from ablate.testing.planted import planted_relation_model  # noqa: E402


def _sharp_handle(family: str):
    """A tiny random model whose attention is sharpened (q/k/v weights x6) so tau gates pass."""
    h = tiny_handle(family)
    with torch.no_grad():
        for l in range(h.n_layers):
            for n, p in h.adapter.attn(l).named_parameters():
                if not any(k in n for k in ("o_proj", "dense", "c_proj")):
                    p.mul_(6.0)
    return h


def _random_triplets(V: int, n: int = 6, seed: int = 0) -> list[Triplet]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        T = int(rng.integers(8, 16))
        toks = [2] + [int(x) for x in rng.integers(4, V, T - 1)]
        if i % 3 == 0:
            toks[3] = toks[6]  # repeated token: distinct-token handling
        s = int(rng.integers(1, T - 1))
        o = int(rng.integers(1, T))
        while o in (s, s + 1):
            o = int(rng.integers(1, T))
        hs = (s, s + 1) if i % 2 else (s,)  # multi-token head words too
        out.append(Triplet(tuple(toks), hs, (o,), f"r{i % 2}"))
    return with_reverse(out)


@pytest.fixture(scope="module", params=FAMILIES)
def family_setup(request):
    h = _sharp_handle(request.param)
    return h, _random_triplets(h.adapter.W_E.shape[0])


@pytest.mark.parametrize("tau,ov", [
    (None, OVConfig()),
    (1.2, OVConfig()),
    (1.1, OVConfig(x="raw", bias=True, final_norm=True)),
])
def test_vectorised_equals_literal(family_setup, tau, ov):
    h, trips = family_setup
    res = relation_index(h, trips, tau=tau, ov=ov, precision=torch.float64, batch_size=4)
    for score in ("relation_index", "baseline"):
        s, c, _ = relation_index_literal(h, trips, tau=tau, ov=ov, score=score)
        assert c.sum() > 0, "the test must exercise some events"
        np.testing.assert_array_equal(res.counts[score].numpy(), c)
        np.testing.assert_allclose(res.sums[score].numpy(), s, atol=1e-6, rtol=0)


def test_tau_percentile_matches_literal(family_setup):
    h, trips = family_setup
    res = relation_index(h, trips, tau_percentile=80, precision=torch.float64)
    s, c, tau = relation_index_literal(h, trips, tau_percentile=80)
    assert res.tau == pytest.approx(tau, rel=1e-6)
    assert res.tau_rank == pytest.approx(0.8, abs=0.02)
    np.testing.assert_array_equal(res.counts["relation_index"].numpy(), c)
    np.testing.assert_allclose(res.sums["relation_index"].numpy(), s, atol=1e-6, rtol=0)


def test_float32_default_close_to_oracle():
    h = _sharp_handle("llama")
    trips = _random_triplets(h.adapter.W_E.shape[0], n=6)
    res = relation_index(h, trips, tau=None)
    s, c, _ = relation_index_literal(h, trips, tau=None)
    np.testing.assert_array_equal(res.counts["relation_index"].numpy(), c)
    np.testing.assert_allclose(res.sums["relation_index"].numpy(), s, atol=1e-3, rtol=0)


def _planted_triplets(A, b, V, n=150, seed=0):
    rng = np.random.default_rng(seed)
    pool = [t for t in range(4, V) if t not in A + [b]]
    out = []
    for i in range(n):
        T = int(rng.integers(12, 18))
        toks = [2] + [int(x) for x in rng.choice(pool, T - 2, replace=False)] + [A[i % len(A)]]
        pb = int(rng.choice([p for p in range(1, T - 1) if p != 9]))
        toks[pb] = b
        out.append(Triplet(tuple(toks), (T - 1,), (pb,), "planted"))
    return out


@pytest.mark.parametrize("tau", [2.2, None])
def test_planted_relation_head(tau):
    A, b = list(range(10, 20)), 25
    h = planted_relation_model(A, b)
    trips = _planted_triplets(A, b, len(h.tokenizer))
    res = relation_index(h, trips, tau=tau, nulls=("baseline", "shuffled"))
    ri = res.ri("planted")[0]
    base = res.ri("planted", score="baseline")[0]
    assert res.n_events("planted")[0].min() == len(trips)  # every head passes the gate at j = s
    assert ri[0] > 0.99 and base[0] < 0.01
    assert res.ri("planted", score="shuffled")[0][0] < 0.01
    for hh in (1, 2, 3):  # same attention, random OV: near the baseline
        assert ri[hh] < 0.3 and abs(float(ri[hh] - base[hh])) < 0.2
    w = res.winner_counts()
    assert (w.iloc[0]["layer"], w.iloc[0]["head"], w.iloc[0]["wins"]) == (0, 0, len(trips))


def test_frame_is_tidy():
    h = _sharp_handle("gpt2")
    trips = _random_triplets(h.adapter.W_E.shape[0], n=4)
    df = relation_index(h, trips, tau=None, nulls=("baseline", "shuffled")).frame()
    assert list(df.columns) == ["score", "relation", "direction", "layer", "head", "value", "n_events"]
    assert set(df.score) == {"relation_index", "baseline", "shuffled"}
    assert set(df.direction) == {"forward", "reverse"}
    assert len(df) == 3 * 4 * h.n_layers * h.n_heads


def test_no_triplets_error():
    with pytest.raises(NoTripletsError, match="no triplets"):
        relation_index(tiny_handle("llama"), [])


def test_token_outside_vocabulary():
    h = tiny_handle("llama")
    V = h.adapter.W_E.shape[0]
    t = Triplet((2, 5, 6, V + 3), (1,), (3,), "r")
    with pytest.raises(TripletError, match="outside the model's vocabulary"):
        relation_index(h, [t])


def test_triplet_validation():
    with pytest.raises(TripletError, match="share positions"):
        Triplet((2, 5, 6), (1,), (1,), "r")
    with pytest.raises(TripletError, match="inside the sentence"):
        Triplet((2, 5, 6), (1,), (7,), "r")
    t = Triplet((2, 5, 6, 7), (1, 2), (3,), "r")
    r = t.reversed()
    assert (r.head_span, r.tail_span, r.direction, r.o, r.j_min) == ((3,), (1, 2), "reverse", 1, 3)
