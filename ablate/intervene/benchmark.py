"""Intervention benchmarks: measured ratios, side by side in one process (no wall-clock asserts).

Run with ``ablate bench interventions`` or ``python benchmarks/bench_interventions.py``.

Measured (2-core shared CPU, 2 threads, load average 1-2 from other jobs; four runs, two of them with
``--repeats 5``, after the sparse head writes and the cheap NaN check):

* (a) one condition vs plain HF forward: -9.2%, -8.1%, -6.7%, +0.2% (target <= 10%; before: -6.7%,
  +25.0%, +18.4%, +14.1% in the same session, same order). The toolkit runs 2 chunks of 16 rows (~64 MB of
  logits each), which on this CPU is no slower than the plain single 32-row pass.
* (b) K=16 batched vs 16 plain forwards of one block: 1.06x, 1.02x, 0.76x, 0.98x (target <= 1.15x;
  before: 1.16x, 0.87x, 1.14x, 1.18x).
* (c) all-heads sweep, per-head loop time / batched time: 1.17x, 0.95x, 0.96x, 0.99x (before: 0.84x,
  0.98x, 0.95x, 0.96x). About 1.0 is the ceiling here: one 16-row forward costs about as much as four
  4-row forwards on 2 threads, so batching saves only per-call overhead, which is now small.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Sequence

import torch

from ablate.model.heads import HeadSet
from ablate.intervene.engine import run_conditions
from ablate.intervene.operators import ZeroAblate
from ablate.model.handle import ModelHandle, prepare_inputs


def bench_model(seed: int = 0, d_model: int = 256, n_layers: int = 8, n_heads: int = 8,
                vocab: int = 8192) -> ModelHandle:
    """A ~10M-parameter random Llama (GQA off) with a word-level tokenizer of ``vocab`` tokens."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ablate.testing.tiny import tiny_tokenizer

    tok = tiny_tokenizer(extra_size=vocab - len(tiny_tokenizer()))
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=d_model, intermediate_size=int(2.75 * d_model),
                      num_hidden_layers=n_layers, num_attention_heads=n_heads, num_key_value_heads=n_heads,
                      max_position_embeddings=256, tie_word_embeddings=False)
    cfg._attn_implementation = "eager"
    return ModelHandle.from_hf(LlamaForCausalLM(cfg).eval(), tok, locator="bench-llama-10M")


def _time(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` wall time of each function, timed in alternation (a, b, a, b, ...) after
    one warm-up each, so load from other processes on a shared machine drifts onto both sides of a
    ratio alike (timing all of a, then all of b, let a busy minute land on one side only)."""
    for fn in fns.values():
        fn()  # warm-up
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def run(threads: int = 2, batch: int = 32, seq: int = 128, repeats: int = 3, sweep_rows: int = 4,
        print_fn: Callable[[str], None] = print) -> dict:
    """Measure (a) overhead of one condition, (b) K=16 batched conditions, (c) all-heads sweep."""
    torch.set_num_threads(threads)
    h = bench_model()
    n_params = sum(p.numel() for p in h.hf.parameters())
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, h.adapter.vocab_size, (batch, seq), generator=g)
    b = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    plain_in = prepare_inputs(b)

    def plain(inp=plain_in):
        with torch.inference_mode():
            return h.hf(**inp).logits

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    res: dict = {"params": n_params, "threads": threads, "batch": batch, "seq": seq, "load": load}
    print_fn(f"model: random Llama, {n_params / 1e6:.1f}M parameters, {h.n_layers} layers x {h.n_heads} heads; "
             f"batch {batch} x {seq} tokens; {threads} threads; best of {repeats}, interleaved; "
             f"load average {load:.2f} on {os.cpu_count()} CPUs")

    # (a) one ablation condition vs the plain HF forward
    one = ZeroAblate(HeadSet.parse("L3H2,L5H1"))
    t = _time({"plain": plain, "one": lambda: run_conditions(h, b, [one])}, repeats)
    t_plain, t_one = t["plain"], t["one"]
    res["a_plain_s"], res["a_toolkit_s"], res["a_overhead"] = t_plain, t_one, t_one / t_plain - 1
    print_fn(f"(a) one condition: toolkit {t_one:.3f}s vs plain HF {t_plain:.3f}s -> overhead {100 * (t_one / t_plain - 1):+.1f}% (target <= 10%)")

    # (b) K = 16 conditions, each on a block of batch/16 rows, in one pass vs 16 plain forwards of a block
    K = 16
    rows = max(1, batch // K)
    bb = {k: v[:rows] for k, v in b.items()}
    rng = torch.Generator().manual_seed(1)
    conds = []
    for _ in range(K):
        heads = [(int(l), int(hh)) for l, hh in zip(torch.randint(0, h.n_layers, (3,), generator=rng),
                                                     torch.randint(0, h.n_heads, (3,), generator=rng))]
        conds.append(ZeroAblate(HeadSet(heads)))
    block_in = prepare_inputs(bb)
    t = _time({"block": lambda: plain(block_in), "k": lambda: run_conditions(h, bb, conds)}, repeats)
    t_block, t_k = t["block"], t["k"]
    res["b_batched_s"], res["b_16x_plain_s"], res["b_ratio"] = t_k, K * t_block, t_k / (K * t_block)
    print_fn(f"(b) K=16 batched conditions ({rows} rows each): {t_k:.3f}s vs 16 x plain forward of one block "
             f"{K * t_block:.3f}s -> ratio {t_k / (K * t_block):.2f}x (target <= 1.15x)")

    # (c) all-heads zero-ablation sweep: batched vs one traced forward per head
    heads = list(HeadSet.all_heads(h.n_layers, h.n_heads))
    sb = {k: v[:sweep_rows] for k, v in b.items()}
    conds = [ZeroAblate(HeadSet([hd])) for hd in heads]

    def batched():
        return run_conditions(h, sb, conds, reduce="token_loss")

    def loop():
        return [run_conditions(h, sb, [c], reduce="token_loss") for c in conds]

    reps = max(1, repeats - 1)
    t = _time({"batched": batched, "loop": loop}, reps)
    t_b, t_l = t["batched"], t["loop"]
    same = torch.allclose(batched(), torch.cat(loop(), 0), atol=1e-4)
    res["c_batched_s"], res["c_loop_s"], res["c_speedup"], res["c_equal"] = t_b, t_l, t_l / t_b, same
    print_fn(f"(c) all {len(heads)} heads zero-ablated on {sweep_rows} x {seq} tokens: batched {t_b:.2f}s vs "
             f"per-head loop {t_l:.2f}s -> speed-up {t_l / t_b:.2f}x (results equal: {same})")
    return res


if __name__ == "__main__":  # pragma: no cover
    run()


def _interleaved_sweep(h: ModelHandle, b: dict, repeats: int, reduce: str = "token_loss") -> dict:
    """Time the three ways of running an all-heads zero-ablation sweep, interleaved layer by layer
    (loop over layer l's heads, then layer l as one batched call with and without the shared
    prefix), so load drift from other processes lands on all three alike. Best of ``repeats``."""
    from ablate.intervene.engine import capture_residual, run_conditions, run_intervention
    from ablate.intervene.operators import Condition

    L, H = h.n_layers, h.n_heads
    B, T = b["input_ids"].shape
    rows = max(B, int(2**22 // max(1, T * h.adapter.vocab_size)))  # head_sweep's default pass size
    best = {"loop": float("inf"), "shared": float("inf"), "batched": float("inf")}
    diff = 0.0
    for _ in range(repeats):
        tot = {"loop": 0.0, "shared": 0.0, "batched": 0.0}
        t0 = time.perf_counter()
        pre = capture_residual(h, b, range(1, L))  # the shared side's one clean pass
        tot["shared"] += time.perf_counter() - t0
        for l in range(L):
            conds = [Condition(f"L{l}H{hh}", (ZeroAblate(HeadSet([(l, hh)])),)) for hh in range(H)]
            t0 = time.perf_counter()
            loop = torch.stack([run_intervention(h, b, c, reduce=reduce) for c in conds])
            t1 = time.perf_counter()
            shared = run_conditions(h, b, conds, reduce=reduce, max_rows=rows, prefix=pre.get(l))
            t2 = time.perf_counter()
            run_conditions(h, b, conds, reduce=reduce, max_rows=rows)
            t3 = time.perf_counter()
            tot["loop"] += t1 - t0
            tot["shared"] += t2 - t1
            tot["batched"] += t3 - t2
            diff = max(diff, float((shared - loop).abs().max()))
        best = {k: min(best[k], tot[k]) for k in best}
    return {**best, "max_abs_diff": diff}


def run_prefix(threads: int = 2, repeats: int = 2, rows: int = 4, seq: int = 128, smollm2: bool = True,
               print_fn: Callable[[str], None] = print) -> dict:
    """Shared-prefix all-heads sweep vs the per-head loop (one traced forward per head), on a random
    4-layer Llama and (when its package is installed) SmolLM2-135M; prints the ratio beside the
    limit 2L/(L+1) and the largest difference between the two (they are the same computation), for
    two metrics: the last token's logits (as the PD / AtP metrics read) and the loss at every token."""
    torch.set_num_threads(threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print_fn(f"shared-prefix sweep benchmark; {threads} threads; load average {load:.2f} on {os.cpu_count()} CPUs; "
             "the three sides interleaved layer by layer")
    models = [("random Llama, 4 layers", lambda: bench_model(n_layers=4), rows, seq, repeats)]
    if smollm2:
        models.append(("SmolLM2-135M", _smollm2, 2, 64, 1))
    res = {}
    for name, make, r, T, reps in models:
        try:
            h = make()
        except Exception as e:  # the packaged model is optional
            print_fn(f"  {name}: skipped ({type(e).__name__}: {e})")
            continue
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(4, h.adapter.vocab_size, (r, T), generator=g)
        b = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        for reduce, what in (("last_logits", "metric at the last token"), ("token_loss", "loss at every token")):
            t = _interleaved_sweep(h, b, reps, reduce=reduce)
            L = h.n_layers
            limit = 2 * L / (L + 1)
            ratio = t["loop"] / t["shared"]
            res[(name, reduce)] = dict(loop_s=t["loop"], shared_s=t["shared"], batched_s=t["batched"], ratio=ratio,
                                       limit=limit, of_limit=ratio / limit, max_abs_diff=t["max_abs_diff"], load=load)
            print_fn(f"  {name} ({L} layers x {h.n_heads} heads, {r} x {T} tokens), {what}: per-head loop "
                     f"{t['loop']:.2f}s, batched without prefix {t['batched']:.2f}s, shared prefix {t['shared']:.2f}s -> "
                     f"{ratio:.2f}x the loop (limit 2L/(L+1) = {limit:.2f}; {100 * ratio / limit:.0f}% of it, "
                     f"target >= 90%); {t['batched'] / t['shared']:.2f}x the batched sweep; "
                     f"max |shared - loop| = {t['max_abs_diff']:.1e}")
    print_fn("  (a metric at the last token unembeds one position per row, so the vocabulary projection, "
             "which no prefix can share, drops out; a loss at every token keeps it in every forward: with "
             "a 49k vocabulary it costs about 8 of SmolLM2's 30 layers, which caps that ratio near 1.6)")
    return res


def _smollm2() -> ModelHandle:
    from ablate.model.handle import load_model
    from ablate.model.pretrained import packaged_smollm2_gguf

    return load_model(packaged_smollm2_gguf())


def _icl_batch(h: ModelHandle, n: int = 8, shots: int = 5, task: str = "pd_category_letter"):
    """Left-padded clean few-shot prompts of one task and the first token of each gold label."""
    from ablate.icl.tasks import make_items
    from ablate.model.handle import encode_ids

    items = make_items(task, [shots], n, controls=["clean"])
    b = h.encode([it.prompt for it in items], padding_side="left")
    gold = torch.tensor([encode_ids(h.tokenizer, " " + it.gold)[0] for it in items])
    return b, gold


def run_atp(threads: int = 2, repeats: int = 1, smollm2: bool = True,
            print_fn: Callable[[str], None] = print,
            extra_models: Sequence[tuple[str, Callable[[], ModelHandle]]] = ()) -> dict:
    """AtP screen (one forward + one backward) vs the exact shared-prefix sweep of every head's zero
    ablation, on the gold label's log-probability of few-shot prompts: the time ratio and the
    Spearman correlation of the per-head effects (AtP estimate vs exact), printed with the load."""
    from scipy.stats import spearmanr

    from ablate.intervene.atp import atp_effects, last_token_logprob
    from ablate.intervene.engine import run_intervention
    from ablate.intervene.sweep import head_sweep, single_heads

    torch.set_num_threads(threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print_fn(f"AtP screen benchmark; {threads} threads; load average {load:.2f} on {os.cpu_count()} CPUs")
    models = [("random Llama, 4 layers", lambda: bench_model(n_layers=4))]
    if smollm2:
        models.append(("SmolLM2-135M", _smollm2))
    models += list(extra_models)  # e.g. the shipped default series' final checkpoint (ablate bench atp)
    res = {}
    for name, make in models:
        try:
            h = make()
        except Exception as e:  # the packaged model is optional
            print_fn(f"  {name}: skipped ({type(e).__name__}: {e})")
            continue
        if name.startswith("random"):
            ids = torch.randint(4, h.adapter.vocab_size, (8, 48), generator=torch.Generator().manual_seed(0))
            b, gold = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, ids[:, -1]
        else:
            b, gold = _icl_batch(h)
        metric = last_token_logprob(gold)
        sets = single_heads(h)
        t0 = time.perf_counter()
        est = atp_effects(h, b, metric, "zero").effects.flatten()
        t_atp = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = head_sweep(h, b, sets, "zero", reduce="last_logits")
        base = run_intervention(h, b, None, reduce="last_logits")
        t_exact = time.perf_counter() - t0

        def lp(x):
            return torch.log_softmax(x.float(), -1)[torch.arange(len(gold)), gold]
        exact = torch.stack([(lp(out[i]) - lp(base)).mean() for i in range(len(sets))])
        rho = float(spearmanr(est.numpy(), exact.numpy()).statistic)
        top = set(est.abs().argsort(descending=True)[:10].tolist())
        top_exact = set(exact.abs().argsort(descending=True)[:10].tolist())
        res[name] = dict(atp_s=t_atp, exact_s=t_exact, ratio=t_exact / t_atp, spearman=rho,
                         top10_overlap=len(top & top_exact), load=load)
        print_fn(f"  {name} ({len(sets)} heads, {b['input_ids'].shape[0]} x {b['input_ids'].shape[1]} tokens): "
                 f"AtP {t_atp:.2f}s vs exact sweep {t_exact:.2f}s -> {t_exact / t_atp:.1f}x faster "
                 f"(target >= 10x on SmolLM2); Spearman(AtP, exact) = {rho:.2f} (target >= .8); "
                 f"top-10 heads shared: {len(top & top_exact)}/10")
    return res
