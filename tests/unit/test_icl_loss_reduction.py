"""Loss reduction on documents against a literal per-document forward pass."""

import math
import random

import numpy as np
import pytest
import torch

from ablate import ZeroAblate
from ablate.icl.loss_reduction import LossReductionError, loss_reduction, lr_windows, read_documents
from ablate.testing.tiny import DEFAULT_WORDS, tiny_handle


def _docs(n, lengths, seed=0):
    rng = random.Random(seed)
    words = [w for w in DEFAULT_WORDS if w.isalpha()]
    return [" ".join(rng.choice(words) for _ in range(L)) for L in lengths[:n]]


def test_windows_paper_and_scaled():
    w = lr_windows(2048)
    assert (w.early, w.mid, w.late, w.at_early, w.at_late) == ((0, 50), (50, 100), (450, 500), 49, 499)
    w = lr_windows(128)
    assert (w.early, w.mid, w.late, w.length) == ((0, 13), (13, 26), (115, 128), 128)
    assert w.describe()["win_late"] == "115-128"
    with pytest.raises(LossReductionError):
        lr_windows(10)


@pytest.mark.parametrize("add_bos", [False, True])
def test_matches_literal_forward(add_bos):
    h = tiny_handle("llama", max_pos=128)
    docs = _docs(3, [140, 60, 127])
    df = loss_reduction(h, docs, add_bos=add_bos, batch_size=2)
    L = 128 - add_bos
    w = lr_windows(L)
    for d, text in enumerate(docs):
        ids = h.tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = ([h.tokenizer.bos_token_id] if add_bos else []) + ids[:w.length]
        with torch.no_grad():
            lp = torch.log_softmax(h.hf(input_ids=torch.tensor([ids])).logits[0].double(), -1)
        tl = [-lp[j - 1, ids[j]].item() for j in range(1, len(ids))]
        loss = {j - add_bos: v for j, v in zip(range(1, len(ids)), tl)}  # keyed by document index
        n = len(ids) - add_bos
        r = df.iloc[d]
        def win(a, b):
            return np.mean([loss[i] for i in range(a, b) if i in loss]) if b <= n else math.nan
        np.testing.assert_allclose(r["loss_early"], win(*w.early), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(r["loss_mid"], win(*w.mid), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(r["loss_late"], win(*w.late), rtol=1e-5, atol=1e-5, equal_nan=True)
        np.testing.assert_allclose(r["lr_mid"], win(*w.early) - win(*w.mid), rtol=1e-5, atol=1e-5)  # higher = more ICL
        at_l = loss.get(w.at_late, math.nan)
        np.testing.assert_allclose(r["olsson"], loss[w.at_early] - at_l, rtol=1e-5, atol=1e-5, equal_nan=True)
        assert r["n_tokens"] == n
    assert math.isnan(df.iloc[1]["loss_late"])  # 60-token document does not reach the late window


def test_conditions_batched():
    h = tiny_handle("llama", max_pos=128)
    docs = _docs(3, [130, 130, 130], seed=1)
    cond = ZeroAblate("L0H0,L1H3")
    both = loss_reduction(h, docs, conditions=[None, cond])
    alone = loss_reduction(h, docs, conditions=[cond])
    clean = loss_reduction(h, docs)
    cols = ["loss_early", "loss_mid", "loss_late", "olsson"]
    np.testing.assert_allclose(both[both.condition_index == 1][cols].values, alone[cols].values, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(both[both.condition_index == 0][cols].values, clean[cols].values, rtol=1e-5, atol=1e-5)
    assert not np.allclose(alone[cols].values, clean[cols].values)


def test_read_documents_and_errors(tmp_path):
    (tmp_path / "a.txt").write_text("the cat sat\n\nthe dog ran")
    (tmp_path / "b.txt").write_text("a bird")
    assert read_documents(tmp_path) == ["the cat sat\n\nthe dog ran", "a bird"]
    assert read_documents(tmp_path / "a.txt", split_blank_lines=True) == ["the cat sat", "the dog ran"]
    with pytest.raises(LossReductionError, match="not found"):
        read_documents(tmp_path / "missing.txt")
    h = tiny_handle("llama", max_pos=128)
    with pytest.raises(LossReductionError, match="no documents"):
        loss_reduction(h, [])
    with pytest.raises(LossReductionError, match="fewer than 2"):
        loss_reduction(h, ["cat"])
