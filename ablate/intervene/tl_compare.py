"""The same model in TransformerLens: an independent implementation of head ablation to check the
toolkit's numbers against and to time its sweep beside (``ablate bench transformer-lens``).

TransformerLens (``pip install -e ".[bench]"``, ``transformer-lens<4``; not a runtime dependency)
ablates a head by a hook on ``blocks.{l}.attn.hook_z`` (the head's output before ``W_O``), one
forward per head: the standard way its users run an all-heads sweep. :func:`to_hooked_transformer`
copies a Llama handle's weights into a ``HookedTransformer`` *without* TransformerLens's weight
processing (no LayerNorm folding, no centring), so both compute the same function; the check
:func:`tl_head_sweep` vs :func:`ablate.intervene.sweep.head_sweep` is then a cross-implementation
oracle (tests/integration/test_transformer_lens.py) as well as a timing.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Sequence

import torch

from ablate.model.errors import AblateError
from ablate.model.handle import ModelHandle
from ablate.model.heads import HeadSet


class TransformerLensUnavailableError(AblateError):
    """transformer-lens is not installed (it is the optional ``bench`` extra)."""


def _tl():
    try:
        import transformer_lens  # noqa: F401
    except ImportError as e:
        raise TransformerLensUnavailableError(
            "TransformerLens is not installed; it is an optional benchmark dependency: "
            "pip install -e '.[bench]' (transformer-lens<4)") from e
    return transformer_lens


def to_hooked_transformer(handle: ModelHandle):
    """A ``HookedTransformer`` computing the same function as a Llama ``handle`` (fp32, eager).

    Raises:
        TransformerLensUnavailableError: transformer-lens is not installed.
        AblateError: the handle is not a Llama (the only family this comparison maps).
    """
    _tl()
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.loading_from_pretrained import _get_rope_theta
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights

    c = handle.hf.config
    if c.model_type != "llama":
        raise AblateError(f"the TransformerLens comparison maps Llama models only; this one is {c.model_type!r}")
    d_head = c.hidden_size // c.num_attention_heads
    cfg = HookedTransformerConfig(
        d_model=c.hidden_size, d_head=d_head, n_heads=c.num_attention_heads, d_mlp=c.intermediate_size,
        n_layers=c.num_hidden_layers, n_ctx=c.max_position_embeddings, eps=c.rms_norm_eps,
        d_vocab=c.vocab_size, act_fn=c.hidden_act, normalization_type="RMS",
        positional_embedding_type="rotary", rotary_adjacent_pairs=False, rotary_dim=d_head,
        rotary_base=_get_rope_theta(c), final_rms=True, gated_mlp=True,
        n_key_value_heads=(c.num_key_value_heads if c.num_key_value_heads != c.num_attention_heads else None),
        original_architecture="LlamaForCausalLM", device="cpu", dtype=torch.float32,
        default_prepend_bos=False)
    tl = HookedTransformer(cfg)
    missing, unexpected = tl.load_state_dict(convert_llama_weights(handle.hf, cfg), strict=False)
    # what load_state_dict may leave out are buffers TransformerLens computes itself (masks, rotary tables)
    bad = [k for k in missing if not k.endswith(("IGNORE", "mask", "rotary_sin", "rotary_cos"))]
    if bad or unexpected:
        raise AblateError(f"TransformerLens weight mapping incomplete: missing {bad[:5]}, unexpected {unexpected[:5]}")
    return tl.eval()


def tl_head_sweep(tl, input_ids: torch.Tensor, head_sets: Sequence[HeadSet | str], *,
                  last_only: bool = True) -> torch.Tensor:
    """Logits with each head set zero-ablated, the TransformerLens way: a hook on ``hook_z`` of every
    layer the set touches, one forward per set. ``[n_sets, B, V]`` at the last position
    (``last_only``), else ``[n_sets, B, T, V]``."""
    out = []
    with torch.no_grad():
        for s in head_sets:
            hs = HeadSet.parse(s)
            by_layer: dict[int, list[int]] = {}
            for h in hs:
                by_layer.setdefault(h.layer, []).append(h.head)

            hooks = [(f"blocks.{l}.attn.hook_z", lambda z, hook, heads=tuple(hh): hook_zero(z, heads))
                     for l, hh in by_layer.items()]
            logits = tl.run_with_hooks(input_ids, fwd_hooks=hooks)
            out.append(logits[:, -1] if last_only else logits)
    return torch.stack(out)


def hook_zero(z: torch.Tensor, heads: tuple[int, ...]) -> torch.Tensor:
    z[:, :, list(heads), :] = 0.0
    return z


def run_tl(threads: int = 2, repeats: int = 2, rows: int = 4, seq: int = 128,
           print_fn: Callable[[str], None] = print) -> dict:
    """All-heads zero-ablation sweep on the same random 4-layer Llama and batch: TransformerLens's
    one-forward-per-head hooks vs this toolkit's per-head loop (nnsight) and shared-prefix sweep.
    Prints the times, ratios and the largest difference of the last-position logits (same numbers
    expected: the two implementations are independent)."""
    from ablate.intervene.benchmark import bench_model
    from ablate.intervene.engine import run_intervention
    from ablate.intervene.operators import Condition, ZeroAblate
    from ablate.intervene.sweep import head_sweep, single_heads

    torch.set_num_threads(threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print_fn(f"TransformerLens comparison; {threads} threads; load average {load:.2f} on {os.cpu_count()} CPUs")
    try:
        h = bench_model(n_layers=4)
        tl = to_hooked_transformer(h)
    except TransformerLensUnavailableError as e:
        print_fn(f"  skipped: {e}")
        return {}
    ids = torch.randint(4, h.adapter.vocab_size, (rows, seq), generator=torch.Generator().manual_seed(0))
    b = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    sets = single_heads(h)
    with torch.no_grad():
        same = float((tl(ids)[:, -1] - run_intervention(h, b, None, reduce="last_logits")).abs().max())
    conds = [Condition(str(s), (ZeroAblate(s),)) for s in sets]
    fns = {
        "TransformerLens (hook_z, one forward per head)": lambda: tl_head_sweep(tl, ids, sets),
        "toolkit per-head loop, every position's logits (TransformerLens's work)":
            lambda: torch.stack([run_intervention(h, b, c, reduce="logits")[:, -1] for c in conds]),
        "toolkit per-head loop (nnsight, one forward per head)":
            lambda: torch.stack([run_intervention(h, b, c, reduce="last_logits") for c in conds]),
        "toolkit shared-prefix sweep (head_sweep)": lambda: head_sweep(h, b, sets, "zero", reduce="last_logits"),
    }
    best = {k: float("inf") for k in fns}
    outs = {}
    for k, f in fns.items():  # warm-up
        outs[k] = f()
    for _ in range(repeats):  # alternate the sides so load drift lands on all of them
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t0)
    names = list(fns)
    diff = max(float((outs[names[0]] - outs[k]).abs().max()) for k in names[1:])
    print_fn(f"  random Llama ({h.n_layers} layers x {h.n_heads} heads, d {h.hf.config.hidden_size}, "
             f"{rows} x {seq} tokens), all {len(sets)} single-head zero ablations; clean logits TL vs HF "
             f"max |diff| {same:.1e}; swept logits max |TL - toolkit| {diff:.1e}")
    print_fn("    (TransformerLens's forward unembeds every position; the toolkit's last-position metric "
             "unembeds one per row, as its PD metrics do)")
    t_tl = best[names[0]]
    for k in names:
        print_fn(f"    {k}: {best[k]:.2f}s  ({t_tl / best[k]:.2f}x TransformerLens's speed)")
    return {"tl_s": t_tl, "loop_all_s": best[names[1]], "loop_s": best[names[2]], "shared_s": best[names[3]],
            "shared_vs_tl": t_tl / best[names[3]], "loop_vs_tl": t_tl / best[names[2]],
            "loop_all_vs_tl": t_tl / best[names[1]],
            "max_abs_diff": diff, "clean_diff": same, "load": load}
