"""A quick probe of the toolkit's ICL tasks across a series: accuracy among the label candidates
and an exact binomial test against chance, per task and checkpoint.

Used to search training recipes (``checkpoints/presets.py``): it is faster than ``ablate icl``
(first-token scoring, no controls, one shot count) and prints one line per checkpoint. The official
measurement is ``ablate icl`` (:mod:`ablate.icl.series`: greedy exact label, FC, controls).

Accuracy: on :func:`ablate.icl.tasks.make_items` prompts (clean control), the gold label's first
token must have the highest next-token logit among the prompt's candidate labels (the labels of the
built-in tasks are single tokens with a leading space). ``p`` is the one-sided exact binomial
p-value of the count against chance ``1 / n_classes``.

Usage::

    python -m ablate.icl.probe SERIES --tasks pd_category_letter,binary_fruit_month [--items 120]
        [--shots 10] [--steps 0,1000,8000] [--part heldout|train]
"""

from __future__ import annotations

__all__ = ["task_accuracy"]


def task_accuracy(model, tokenizer, task: str, shots: int = 10, n_items: int = 120, seed: int = 0,
                  part: str = "heldout") -> tuple[int, int, float, float]:
    """Accuracy of a toolkit ICL task among its label candidates, with a binomial test.

    Args:
        model: A Hugging Face causal LM.
        tokenizer: Its tokenizer (called on the prompt text as is; the built-in series' tokenizer
            prepends BOS).
        task: A task name of :data:`ablate.icl.tasks.TASKS`.
        shots: Demonstrations per prompt.
        n_items: Items (prompts).
        seed: The items' master seed.
        part: Word-list part (``"heldout"``: the measurement; ``"train"``: diagnostic).

    Returns:
        ``(correct, n_items, accuracy, p)``.

    Raises:
        ValueError: Two labels of a prompt share their first token (this probe cannot score them).
    """
    import torch
    from scipy.stats import binomtest

    from ablate.icl.tasks import make_items

    items = make_items(task, [shots], n_items, seed=seed, controls=("clean",), part=part)
    correct = 0
    for it in items:
        cand = [tokenizer.encode(" " + lab, add_special_tokens=False)[0] for lab in it.labels]
        if len(set(cand)) != len(cand):
            raise ValueError(f"task_accuracy: labels {it.labels} of {task} share a first token")
        ids = tokenizer(it.prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -1]
        pick = it.labels[int(torch.stack([logits[c] for c in cand]).argmax())]
        correct += int(pick == it.gold)
    p = binomtest(correct, len(items), 1 / items[0].n_classes, alternative="greater").pvalue
    return correct, len(items), correct / len(items), float(p)


def main(argv=None) -> None:
    """CLI: one line per checkpoint with each task's accuracy and binomial p."""
    import argparse

    import torch
    from transformers import PreTrainedTokenizerFast

    from checkpoints.series import CheckpointSeries
    from checkpoints.sweep import sweep

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("series")
    ap.add_argument("--tasks", required=True, help="Comma-separated task names.")
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--items", type=int, default=120)
    ap.add_argument("--steps", default=None, help="Comma-separated steps (default: all).")
    ap.add_argument("--part", default="heldout", choices=["heldout", "train"])
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    series = CheckpointSeries.from_local(a.series)
    if a.steps:
        series = series.select([int(x) for x in a.steps.split(",")])
    tasks = [t for t in a.tasks.split(",") if t]
    print(f"{'step':>6}" + "".join(f" {t[:24]:>24}" for t in tasks))
    tok = None
    for cp, model in sweep(series):
        tok = tok or PreTrainedTokenizerFast.from_pretrained(series.local_path(cp))
        cells = [task_accuracy(model, tok, t, a.shots, a.items, part=a.part) for t in tasks]
        print(f"{cp.step:>6}" + "".join(f" {acc:5.2f} {k:>3}/{n:<3} p={p:7.1e}" for k, n, acc, p in cells), flush=True)


if __name__ == "__main__":
    main()
