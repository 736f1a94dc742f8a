"""A small probe of copying / induction and few-shot pattern discovery in a trained series.

This is a *probe* used to design and check the trainer's presets; the official head scores
and ICL measurements live in ``ablate/``. Three measurements per checkpoint:

Prefix-matching score (Olsson et al. 2022), per head:
    Inputs are ``[BOS] s s`` with ``s`` a segment of ``L`` distinct random non-special tokens.
    For each position ``i`` in the second copy the token ``x_i`` previously occurred at
    ``i - L``; the score is the attention weight ``A[i, i - L + 1]`` (to the token right after
    the previous occurrence), averaged over positions and sequences. Uniform attention would
    give about ``1 / i`` (~0.02 for L = 30).

Repeated-segment loss:
    Mean next-token loss (nats) on predicting ``s[1:]`` in the first copy and in the second
    copy. The drop is
    ``first - second``; a working induction circuit makes it large (copying is free).

Pattern discovery (PD) on held-out words (:func:`ablate.icl.wordlists.split_words`):
    ``single``: 2 categories, each mapped to a random digit drawn per prompt; ``k`` shots of
    ``"word: d"`` then ``"word:"``; accuracy = the argmax next token over the whole vocabulary
    equals ``" d"``. Chance within the label set is 1/2.
    ``order``: the paper's binary (fruit, month) task ``"E1, E2: 0"`` / ``"E2, E1: 1"`` with
    held-out words; chance 1/2.
    ``single`` on *training* words is reported too (``pd_single_train``), as a diagnostic of
    whether the model reads the mapping at all.

Usage::

    python -m checkpoints.probe /work/runs/default_series --csv probe.csv [--steps 0,1000]

The toolkit's own ICL tasks with a binomial test per checkpoint: ``python -m ablate.icl.probe``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np

from ablate.icl.wordlists import CATEGORIES, split_words

__all__ = ["prefix_matching_scores", "repeated_segment_loss", "pattern_discovery", "probe_series", "ProbeRow"]


def _random_segments(tokenizer, n: int, length: int, seed: int) -> np.ndarray:
    specials = set(tokenizer.all_special_ids)
    pool = np.array([i for i in range(len(tokenizer)) if i not in specials])
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(pool, size=length, replace=False) for _ in range(n)])


def prefix_matching_scores(model, tokenizer, n_seqs: int = 16, length: int = 30, seed: int = 0):
    """Per-head prefix-matching score on ``[BOS] s s`` inputs.

    Args:
        model: A HF causal LM loaded with ``attn_implementation="eager"``.
        tokenizer: Its tokenizer (for the BOS id and the vocabulary).
        n_seqs: Number of random segments.
        length: Segment length ``L``.
        seed: Seed of the segments.

    Returns:
        Float tensor ``[n_layers, n_heads]``:
        ``mean_{seq, i in copy 2} A[layer, head, i, i - L + 1]``.
    """
    import torch

    seg = _random_segments(tokenizer, n_seqs, length, seed)
    bos = np.full((n_seqs, 1), tokenizer.bos_token_id)
    ids = torch.from_numpy(np.concatenate([bos, seg, seg], axis=1))
    with torch.no_grad():
        out = model(input_ids=ids, output_attentions=True)
    att = torch.stack(out.attentions, dim=1)  # [batch, layer, head, q, k]
    q = torch.arange(1 + length, 1 + 2 * length)
    k = q - length + 1
    return att[:, :, :, q, k].mean(dim=(0, 3))


def repeated_segment_loss(model, tokenizer, n_seqs: int = 16, length: int = 30, seed: int = 1) -> tuple[float, float]:
    """Mean loss (nats) on the first and on the second copy of a repeated random segment.

    Returns:
        ``(first_copy_loss, second_copy_loss)``: mean loss of predicting ``s[1:]`` in the first
        and in the second copy (the same 29 tokens for L = 30).
    """
    import torch

    seg = _random_segments(tokenizer, n_seqs, length, seed)
    bos = np.full((n_seqs, 1), tokenizer.bos_token_id)
    ids = torch.from_numpy(np.concatenate([bos, seg, seg], axis=1))
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -lp.gather(-1, ids[:, 1:, None])[..., 0]  # nll[:, t] predicts ids[:, t+1]
    first = nll[:, 1:length].mean().item()  # predicts s[1:]
    second = nll[:, length + 1 : 2 * length].mean().item()  # predicts s[1:] of the second copy
    return first, second


def _pd_prompts(task: str, shots: int, n: int, seed: int, part: str = "heldout"):
    rng = np.random.default_rng(seed)
    prompts = []
    for _ in range(n):
        if task == "single":
            cats = [list(CATEGORIES)[i] for i in rng.choice(len(CATEGORIES), 2, replace=False)]
            labels = [str(d) for d in rng.choice(10, 2, replace=False)]
            words = [split_words(c, part) for c in cats]

            def line(i):
                return f"{words[i][rng.integers(len(words[i]))]}:", labels[i]
        elif task == "order":
            words = [split_words("fruit", part), split_words("month", part)]
            labels = ["0", "1"]

            def line(i):
                a = words[0][rng.integers(len(words[0]))]
                b = words[1][rng.integers(len(words[1]))]
                return (f"{a}, {b}:" if i == 0 else f"{b}, {a}:"), labels[i]
        else:
            raise ValueError(f"pattern_discovery: unknown task {task!r}; use 'single' or 'order'")
        classes = [int(c) for c in rng.integers(2, size=shots)]
        if shots >= 2 and len(set(classes)) == 1:  # every class at least once
            classes[int(rng.integers(shots))] = 1 - classes[0]
        text = "".join(f"{q} {a}\n" for q, a in (line(c) for c in classes))
        target = int(rng.integers(2))
        q, a = line(target)
        prompts.append((text + q, " " + a))
    return prompts


def pattern_discovery(model, tokenizer, task: str = "single", shots: int = 10, n: int = 64, seed: int = 2,
                      part: str = "heldout") -> float:
    """Exact-label accuracy of the greedy next token on held-out-word few-shot prompts.

    Args:
        task: ``"single"`` or ``"order"`` (see the module docstring).
        shots: Demonstration lines before the query.
        n: Number of prompts.
        seed: Seed of the prompts.
        part: ``"heldout"`` (the measurement) or ``"train"`` (diagnostic: words the recipe's
            labelled documents use).

    Returns:
        Accuracy in [0, 1]; chance within the label set is 0.5.
    """
    import torch

    correct = 0
    for prompt, answer in _pd_prompts(task, shots, n, seed, part):
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        target = tokenizer.encode(answer, add_special_tokens=False)
        with torch.no_grad():
            pred = int(model(input_ids=ids).logits[0, -1].argmax())
        correct += int(pred == target[0])
    return correct / n


@dataclass
class ProbeRow:
    """One checkpoint's probe results."""

    step: int
    tokens_seen: int | None
    eval_loss: float | None
    best_head: str
    prefix_matching: float
    copy_first: float
    copy_second: float
    copy_drop: float
    pd_single: float
    pd_order: float
    pd_single_train: float


def probe_series(series, shots: int = 10, n_pd: int = 64) -> list[ProbeRow]:
    """Run all probes on every checkpoint of a series (skeleton re-use sweep)."""
    from transformers import PreTrainedTokenizerFast

    from checkpoints.sweep import sweep

    rows = []
    tok = None
    for cp, model in sweep(series, attn_implementation="eager"):
        if tok is None:
            tok = PreTrainedTokenizerFast.from_pretrained(series.local_path(cp))
        pm = prefix_matching_scores(model, tok)
        li, hi = divmod(int(pm.argmax()), pm.shape[1])
        first, second = repeated_segment_loss(model, tok)
        rows.append(ProbeRow(
            step=cp.step, tokens_seen=cp.tokens_seen, eval_loss=cp.extra.get("eval_loss"),
            best_head=f"L{li}H{hi}", prefix_matching=float(pm.max()),
            copy_first=first, copy_second=second, copy_drop=first - second,
            pd_single=pattern_discovery(model, tok, "single", shots, n_pd),
            pd_order=pattern_discovery(model, tok, "order", shots, n_pd),
            pd_single_train=pattern_discovery(model, tok, "single", shots, n_pd, part="train"),
        ))
    return rows


def main(argv=None) -> None:
    """CLI: ``python -m checkpoints.probe SERIES_DIR [--csv FILE] [--shots K]``."""
    import argparse

    import torch

    from checkpoints.series import CheckpointSeries

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("series")
    ap.add_argument("--csv", default=None)
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--n-pd", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--steps", default=None, help="Comma-separated steps to probe (default: all).")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    series = CheckpointSeries.from_local(a.series)
    series = series.select([int(x) for x in a.steps.split(",")]) if a.steps else series.every(a.every)
    rows = probe_series(series, a.shots, a.n_pd)
    hdr = f"{'step':>6} {'tokens':>10} {'evalL':>6} {'head':>5} {'PM':>5} {'1st':>6} {'2nd':>6} {'drop':>6} {'PDs':>5} {'PDo':>5} {'PDst':>5}"
    print(hdr)
    for r in rows:
        ev = f"{r.eval_loss:.3f}" if r.eval_loss is not None else "  -  "
        print(f"{r.step:>6} {r.tokens_seen or 0:>10} {ev:>6} {r.best_head:>5} {r.prefix_matching:5.2f} "
              f"{r.copy_first:6.2f} {r.copy_second:6.2f} {r.copy_drop:6.2f} {r.pd_single:5.2f} {r.pd_order:5.2f} {r.pd_single_train:5.2f}")
    if a.csv:
        import csv

        with open(a.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(asdict(rows[0])))
            w.writeheader()
            w.writerows(asdict(r) for r in rows)


if __name__ == "__main__":
    main()
