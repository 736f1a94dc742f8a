"""``ablate bench throughput``: the runner's ICL cell vs a plain Hugging Face forward, same prompts.

A *sequence forward* is one prompt under one condition. The runner's ICL cell (``experiments.cells
.icl_cell`` -> ``ablate.icl.metrics.evaluate_items``) scores ``N`` prompts under ``K`` conditions
(clean, the target set and matched random sets, mean-ablated): ``N x K`` sequence forwards. The
baseline runs the same token rows (each prompt's forward rows, ``K`` times) through the bare model,
left-padded in batches of the same size, with no interventions and nothing read from the logits
(and, as a stricter second baseline, the same forward with ``logits_to_keep=1``: the runner itself
unembeds only the positions it reads, ``run_conditions(gather=)``).
The ratio ``runner seq/s / plain seq/s`` is the issue-15 target (>= 0.8). Both are timed in
alternation in one process (``ablate.intervene.benchmark._time``) and printed with the load average.

``--profile`` (Python API ``profile=True``) also prints where the runner's time goes (cProfile,
cumulative, top entries).
"""

from __future__ import annotations

import os
import time
from typing import Callable

import torch

__all__ = ["run_throughput"]


def _default_shaped(seed: int = 0):
    """A random Llama of the default preset's shape (layers, heads, width, vocabulary)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ablate.model.handle import ModelHandle
    from ablate.testing.tiny import tiny_tokenizer
    from checkpoints.presets import get_preset

    from ablate.icl.wordlists import all_words

    p = get_preset("default")
    words = list(dict.fromkeys(list(all_words("all")) + list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") + [",", ":", "."]))
    tok = tiny_tokenizer(words, extra_size=max(0, p.vocab_size - len(words) - 4))
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=p.d_model, intermediate_size=p.d_mlp,
                      num_hidden_layers=p.n_layers, num_attention_heads=p.n_heads,
                      num_key_value_heads=p.n_heads, max_position_embeddings=512, tie_word_embeddings=True)
    cfg._attn_implementation = "eager"
    return ModelHandle.from_hf(LlamaForCausalLM(cfg).eval(), tok, locator=f"random default-shaped ({p.n_layers} layers)")


def _conditions(h, n_random: int, k: int, seed: int):
    from ablate.intervene.operators import Condition, MeanAblate
    from ablate.model.heads import HeadSet
    import random

    heads = [(l, i) for l in range(h.n_layers) for i in range(h.n_heads)]
    rng = random.Random(seed)
    conds = [Condition("clean", ())]
    for r in range(1 + n_random):
        hs = HeadSet(rng.sample(heads, k))
        conds.append(Condition(f"set{r}", (MeanAblate(hs),)))
    return conds


def _rows(h, items):
    from ablate.icl.metrics import prepare_prompt

    out = []
    for it in items:
        pp = prepare_prompt(h.tokenizer, it.prompt, it.labels, it.gold, label_spans=it.label_spans)
        out += [pp.prompt_ids + list(node) for node in pp.rows]
    return out


def _one(name: str, h, *, task: str, shots: int, n_items: int, n_random: int, k: int, batch_size: int,
         repeats: int, profile: bool, print_fn: Callable[[str], None]) -> dict:
    from ablate.icl.metrics import evaluate_items
    from ablate.icl.tasks import make_items
    from ablate.intervene.benchmark import _time
    from ablate.model.handle import pad_batch
    from experiments.cells import MEAN_REFERENCE_TOKENS, heldout_documents

    items = make_items(task, [shots], n_items, seed=0, controls=["clean"])
    conds = _conditions(h, n_random, k, seed=0)
    K, N = len(conds), len(items)
    reference = h.encode(list(heldout_documents(8))[:8], max_length=MEAN_REFERENCE_TOKENS)  # as the runner
    rows = _rows(h, items)
    tok = h.tokenizer

    def runner():
        return evaluate_items(h, items, conds, reference=reference, batch_size=batch_size)

    order = sorted(range(len(rows)), key=lambda j: len(rows[j]))
    plain_batches = [[rows[j] for j in order[s:s + batch_size]] * K for s in range(0, len(order), batch_size)]
    plain_batches = [pad_batch(b, tok.pad_token_id, padding_side="left", device=h.device) for b in plain_batches]

    def plain(**kw):
        with torch.no_grad():
            for b in plain_batches:
                h.hf(input_ids=b["input_ids"], attention_mask=b["attention_mask"], **kw)

    t = _time({"runner": runner, "plain": plain, "plain_last": lambda: plain(logits_to_keep=1)}, repeats)
    seqs = N * K
    r_sps, p_sps, l_sps = seqs / t["runner"], seqs / t["plain"], seqs / t["plain_last"]
    print_fn(f"{name}: {N} prompts ({task}, {shots} shots, {len(rows)} forward rows) x {K} conditions "
             f"(clean + {1 + n_random} mean-ablated sets of {k} heads) = {seqs} sequence forwards")
    print_fn(f"  runner {t['runner']:.2f} s ({r_sps:.1f} seq/s)   plain HF forward {t['plain']:.2f} s "
             f"({p_sps:.1f} seq/s)   ratio runner/plain {r_sps / p_sps:.2f} (target >= 0.8)   "
             f"load {os.getloadavg()[0]:.2f}")
    # the runner unembeds only the positions it reads; a plain forward that unembeds one position per
    # row is the strictest baseline (less vocabulary work than the runner does)
    print_fn(f"  plain HF forward, logits at the last position only {t['plain_last']:.2f} s ({l_sps:.1f} seq/s)"
             f"   ratio runner/that {r_sps / l_sps:.2f}")
    if profile:
        import cProfile
        import io
        import pstats

        pr = cProfile.Profile()
        pr.enable()
        runner()
        pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats(18)
        print_fn(s.getvalue())
    return {"model": name, "sequences": seqs, "runner_s": t["runner"], "plain_s": t["plain"],
            "plain_last_s": t["plain_last"], "ratio": r_sps / p_sps, "ratio_last": r_sps / l_sps}


def run_throughput(threads: int = 2, repeats: int = 2, smollm2: bool = True, profile: bool = False,
                   print_fn: Callable[[str], None] = print) -> list[dict]:
    """Runner ICL-cell throughput vs plain forwards, on a default-shaped random Llama and SmolLM2."""
    torch.set_num_threads(threads)
    print_fn(f"threads {threads}, load average {os.getloadavg()[0]:.2f} (close other jobs for clean ratios)")
    out = [_one("default-shaped random Llama", _default_shaped(), task="pd_category_letter", shots=10,
                n_items=48, n_random=6, k=2, batch_size=16, repeats=repeats, profile=profile, print_fn=print_fn)]
    if smollm2:
        from ablate.intervene.benchmark import _smollm2

        out.append(_one("SmolLM2-135M", _smollm2(), task="pd_category_letter", shots=5, n_items=8,
                        n_random=2, k=4, batch_size=8, repeats=max(1, repeats - 1), profile=profile,
                        print_fn=print_fn))
    return out
