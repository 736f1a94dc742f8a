"""The recipe-search probe (ablate.icl.probe) against known answers."""

import math
from types import SimpleNamespace

import pytest
import torch


def _tokenizer():
    from transformers import PreTrainedTokenizerFast

    from checkpoints.embedded import embedded_folder

    return PreTrainedTokenizerFast.from_pretrained(str(embedded_folder("default") / "step_0"))


class _Always:
    """A 'model' whose next-token logits always favour one token."""

    def __init__(self, token: int, vocab: int):
        self.token, self.vocab = token, vocab

    def __call__(self, input_ids):
        logits = torch.zeros(1, input_ids.shape[1], self.vocab)
        logits[..., self.token] = 1.0
        return SimpleNamespace(logits=logits)


def test_a_model_that_always_says_0_scores_half_on_the_balanced_binary_task():
    from ablate.icl.probe import task_accuracy

    tok = _tokenizer()
    zero = tok.encode(" 0", add_special_tokens=False)[0]
    k, n, acc, p = task_accuracy(_Always(zero, len(tok)), tok, "binary_fruit_month", shots=4, n_items=40)
    assert (k, n, acc) == (20, 40, 0.5)  # golds cycle 0, 1, 0, 1, ...
    assert p == pytest.approx(sum(math.comb(40, j) for j in range(20, 41)) / 2**40)


def test_a_favoured_token_outside_the_candidates_leaves_a_tie_resolved_to_class_0():
    from ablate.icl.probe import task_accuracy

    tok = _tokenizer()
    other = tok.encode(" 7", add_special_tokens=False)[0]  # not a label of binary_fruit_month
    # every candidate ties at 0: argmax takes the first candidate (class 0), so again exactly half
    k, n, _, _ = task_accuracy(_Always(other, len(tok)), tok, "binary_fruit_month", shots=2, n_items=10)
    assert (k, n) == (5, 10)
    # 3 classes: the tie picks class 0, golds cycle 0, 1, 2 -> exactly a third; p against chance 1/3
    k3, n3, _, p3 = task_accuracy(_Always(other, len(tok)), tok, "pd_first_category_3way", shots=3, n_items=9)
    assert (k3, n3) == (3, 9)
    assert p3 == pytest.approx(sum(math.comb(9, j) * (1 / 3) ** j * (2 / 3) ** (9 - j) for j in range(3, 10)))
