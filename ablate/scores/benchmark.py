"""Relation-index benchmark: the vectorised implementation vs the literal per-position oracle on
the same inputs (``ablate bench relation-index``), with the largest difference between their answers.

Model: a random ~9M-parameter Llama (8192 vocab, d 256, 6 layers x 8 heads) whose attention is
sharpened so the gate passes on a realistic share of positions, on sentences of Zipf-distributed
token ids (tokens repeat as in text); RI and the fake-tail baseline, argmax-only gate, both
directions. The literal oracle computes in float64; the vectorised code is timed in float32 (its
default) and in float64 (like for like).
"""

from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np
import torch


def random_llama(seed: int = 0):
    """The benchmark's random Llama with sharpened attention and a word-level tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ablate.model.handle import ModelHandle
    from ablate.testing.tiny import tiny_tokenizer

    cfg = LlamaConfig(vocab_size=8192, hidden_size=256, intermediate_size=688, num_hidden_layers=6,
                      num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=128,
                      tie_word_embeddings=False)
    torch.manual_seed(seed)
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # sharpen attention so the gate passes on a realistic share of positions
        for layer in m.model.layers:
            layer.self_attn.q_proj.weight.mul_(8.0)
            layer.self_attn.k_proj.weight.mul_(8.0)
    return ModelHandle.from_hf(m, tiny_tokenizer(), locator="random-llama-9M")


def zipf_triplets(n_sentences: int = 32, length: int = 24, seed: int = 0):
    from ablate.triplets.relations import Triplet, with_reverse

    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, 8189) ** 1.1
    zipf /= zipf.sum()
    trips = []
    for _ in range(n_sentences):
        toks = tuple(int(x) for x in [2] + list(4 + rng.choice(8188, length - 1, p=zipf)))
        for _ in range(2):
            s, o = rng.choice(np.arange(1, length), 2, replace=False)
            trips.append(Triplet(toks, (int(s),), (int(o),), "r"))
    return with_reverse(trips)


def run(threads: int = 2, repeats: int = 3, print_fn: Callable[[str], None] = print) -> dict:
    from ablate.scores.relation_index import relation_index
    from ablate.testing.literal_ri import relation_index_literal

    torch.set_num_threads(threads)
    h = random_llama()
    trips = zipf_triplets()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    relation_index(h, trips[:4], tau=None)  # warm-up
    vec = {}
    for name, prec in (("float32", torch.float32), ("float64", torch.float64)):
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            res = relation_index(h, trips, tau=None, nulls=("baseline",), precision=prec)
            best = min(best, time.perf_counter() - t0)
        vec[name] = (best, res)
    t0 = time.perf_counter()
    s_ri, c_ri, _ = relation_index_literal(h, trips, tau=None)
    s_b, c_b, _ = relation_index_literal(h, trips, tau=None, score="baseline")
    t_lit = time.perf_counter() - t0
    out = {"literal_s": t_lit, "load": load}
    print_fn(f"relation index, vectorised vs literal oracle: random Llama 8.9M, {len(trips)} triplets on 32 "
             f"sentences x 24 tokens, {int(c_ri.sum() + c_b.sum())} gated events; {threads} threads; load "
             f"average {load:.2f}; literal (float64, once) {t_lit:.2f}s")
    for name, (t, res) in vec.items():
        diff = max(np.abs(res.sums["relation_index"].numpy() - s_ri).max(),
                   np.abs(res.sums["baseline"].numpy() - s_b).max())
        same = bool((res.counts["relation_index"].numpy() == c_ri).all() and (res.counts["baseline"].numpy() == c_b).all())
        out[name] = dict(vectorised_s=t, ratio=t_lit / t, max_abs_diff=float(diff), same_events=same)
        print_fn(f"  vectorised {name}: {t:.3f}s (best of {repeats}) -> {t_lit / t:.1f}x the literal oracle "
                 f"(target >= 20x); max |diff| = {diff:.1e}; same gated events: {same}")
    return out
