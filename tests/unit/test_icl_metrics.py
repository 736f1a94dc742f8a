"""ICL metrics against independent oracles: planted models, a literal greedy-decoding oracle,
padding invariance, and batched conditions.

Two tokenizers: a word-level one (``" 0"`` -> ``"0"``, one token per label) and a byte-level BPE
with individual digits (``" 0"`` -> ``" "``, ``"0"`` as SmolLM2 does; ``" true"`` -> 3 tokens).

Planted models are real one-layer Llama models whose weights are set by hand:

* a **bigram** path: the embedding is one-hot and the final-norm/unembedding reads the current
  token, so ``logits(next | current) = table[current]``;
* a **copy-previous-label** head: its query is the same for every token, its key is non-zero only
  on label tokens, and RoPE's slowest rotating pair with a phase offset makes the score fall with
  distance, so the head attends to the most recent label token; its value/output write that token
  into a second block of the residual stream, which the unembedding maps back to the same token.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from ablate import ZeroAblate
from ablate.icl.metrics import IclMetricError, evaluate_items, prepare_prompt
from ablate.icl.tasks import RELATION_PAIRS, make_items
from ablate.model.handle import ModelHandle
from ablate.testing.tiny import tiny_model, tiny_tokenizer


# ------------------------------------------------------------------------------------------
# tokenizers


def _all_words():
    from ablate.icl.wordlists import all_words

    words = list(all_words("all"))
    for r in RELATION_PAIRS.values():
        for v in r.values():
            for a, b in v:
                words += [a, b]
    return list(dict.fromkeys(words))


@pytest.fixture(scope="module")
def word_tok():
    return tiny_tokenizer(_all_words() + list("0123456789") + ["true", "false"] + list("BCDFGHJKLMNPQRSTVWXZ")
                          + [",", ":", "."])


@pytest.fixture(scope="module")
def split_tok():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = _all_words()
    corpus = [" ".join(words), ", ".join(words) + ": true false"] * 3
    t = Tokenizer(models.BPE(unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                               pre_tokenizers.ByteLevel(add_prefix_space=False)])
    t.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<pad>", "<bos>", "<eos>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    t.train_from_iterator(corpus, tr)
    return PreTrainedTokenizerFast(tokenizer_object=t, unk_token="<unk>", pad_token="<pad>",
                                   bos_token="<bos>", eos_token="<eos>")


def _ids(tok, s):
    return tok(s, add_special_tokens=False)["input_ids"]


def test_tokenizers_split_as_intended(word_tok, split_tok):
    assert word_tok.unk_token_id not in _ids(word_tok, "plum, May: 0\nJune, kiwi:")
    assert [word_tok.decode([i]) for i in _ids(word_tok, " 0")] == ["0"]
    assert [split_tok.decode([i]) for i in _ids(split_tok, " 0")] == [" ", "0"]
    assert len(_ids(split_tok, " true")) > 1


# ------------------------------------------------------------------------------------------
# planted models


def planted_model(tok, *, bigram: dict[str, str] | None = None, copy_labels: tuple[str, ...] = (),
                  bigram_logit: float = 40.0, copy_logit: float = 20.0) -> ModelHandle:
    """One-layer Llama: a bigram table plus (optionally) a copy-the-latest-label head.

    Args:
        tok: tokenizer.
        bigram: current token text -> next token text with logit ``bigram_logit``.
        copy_labels: token texts the copy head attends to (keys) and re-emits with ``copy_logit``.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    V = len(tok)
    hd = V + (V % 2)
    d = 2 * hd
    omega = 0.002  # angular speed of the slowest RoPE pair
    theta = omega ** (-hd / (hd - 2))
    cfg = LlamaConfig(vocab_size=V, hidden_size=d, intermediate_size=8, num_hidden_layers=1,
                      num_attention_heads=1, num_key_value_heads=1, head_dim=hd,
                      max_position_embeddings=1024, rope_theta=theta, attention_bias=False,
                      mlp_bias=False, tie_word_embeddings=False, rms_norm_eps=1e-6,
                      bos_token_id=2, eos_token_id=3, pad_token_id=1)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    m = LlamaForCausalLM(cfg).eval()

    def tid(s):
        ids = _ids(tok, s)
        assert len(ids) == 1, (s, ids)
        return ids[0]

    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        m.model.embed_tokens.weight[torch.arange(V), torch.arange(V)] = 1.0
        m.model.norm.weight.fill_(1.0)
        m.model.layers[0].input_layernorm.weight.fill_(1.0)
        m.model.layers[0].post_attention_layernorm.weight.fill_(1.0)
        att = m.model.layers[0].self_attn
        if copy_labels:
            lab = [tid(s) for s in copy_labels]
            mm = hd // 2 - 1
            S = 20000.0
            amp = math.sqrt(S * math.sqrt(hd)) / math.sqrt(d)  # q.k / sqrt(hd) = S cos(w*dist + phi)
            phi = math.pi / 4
            att.q_proj.weight[mm, :V] = math.cos(phi) * amp
            att.q_proj.weight[mm + hd // 2, :V] = math.sin(phi) * amp
            for t in lab:
                att.k_proj.weight[mm, t] = amp
            att.v_proj.weight[torch.arange(V), torch.arange(V)] = 1.0 / math.sqrt(d)
            att.o_proj.weight[hd + torch.arange(V), torch.arange(V)] = 1.0
            for t in lab:
                m.lm_head.weight[t, hd + t] = copy_logit / math.sqrt(d / 2)
        for cur, nxt in (bigram or {}).items():
            m.lm_head.weight[tid(nxt), tid(cur)] += bigram_logit / math.sqrt(d / 2)
    return ModelHandle.from_hf(m, tok, locator="planted")


TASKS_SMALL = ("binary_fruit_month", "nine_fruit_animal_month", "rel_obj", "pd_order_letter")


def _items(tasks=TASKS_SMALL, shots=(0, 1, 2, 5), n_items=18, controls=("clean", "shuffled")):
    out = []
    for t in tasks:
        out += make_items(t, shots=shots, n_items=n_items, seed=1, controls=controls)
    return out


@pytest.mark.parametrize("kind", ["word", "split"])
def test_always_same_label_scores_fc_one_pd_chance(kind, word_tok, split_tok):
    tok = word_tok if kind == "word" else split_tok
    bigram = {":": "0"} if kind == "word" else {":": " ", " ": "0"}
    h = planted_model(tok, bigram=bigram)
    items = _items(tasks=("binary_fruit_month", "nine_fruit_animal_month"), shots=(0, 3),
                   n_items=18, controls=("clean", "nolabel"))
    df = evaluate_items(h, items, batch_size=32)
    assert (df["output"] == "0").all()
    assert (df["fc"] == 1).all()
    pd_by_task = df.groupby(["task", "shots", "control"])["pd"].mean()
    chance = df.groupby(["task", "shots", "control"])["chance"].first()
    np.testing.assert_allclose(pd_by_task.values, chance.values)
    assert (df["fc_cont"] > 0.99).all()
    if kind == "split":
        # the greedy first token is the shared space, never mistaken for the label
        assert (df["greedy_first"] == " ").all()


def _expected_copy(items):
    """Hand rule: output = shown label of the last demonstration; PD = that equals the gold."""
    out = []
    for it in items:
        last = it.demos[-1][2]
        out.append((last, float(last == it.gold)))
    return out


@pytest.mark.parametrize("kind", ["word", "split"])
def test_copy_previous_label_matches_hand_computation(kind, word_tok, split_tok):
    tok = word_tok if kind == "word" else split_tok
    if kind == "word":
        labels = tuple("0123456789") + ("true", "false")
        h = planted_model(tok, copy_labels=labels)
        tasks = TASKS_SMALL
    else:  # digits are single tokens after the space token; a digit is followed by a newline (so the
        # label ends there: without it the copy head would copy the digit again, "11", which is no label)
        labels = tuple("0123456789")
        h = planted_model(tok, bigram={":": " ", **{d: "\n" for d in labels}}, copy_labels=labels)
        tasks = ("binary_fruit_month", "four_fruit_month", "nine_fruit_animal_month")
    items = [it for it in _items(tasks=tasks, shots=(1, 3, 10), n_items=9) if it.task != "pd_order_letter"]
    df = evaluate_items(h, items, batch_size=32)
    exp = _expected_copy(items)
    assert list(df["output"]) == [e[0] for e in exp]
    np.testing.assert_array_equal(df["pd"].values, [e[1] for e in exp])
    assert (df["fc"] == 1).all()
    # a hand-written prompt: the last demonstration says 1, so the copy model answers 1 (gold 0)
    from ablate.icl.tasks import IclItem
    it = IclItem("binary_fruit_month", 2, 0, "clean", (("plum", "May", "0"), ("June", "kiwi", "1")),
                 ("fig", "Oct"), "0", ("0", "1"))
    assert it.prompt == "plum, May: 0\nJune, kiwi: 1\nfig, Oct:"
    r = evaluate_items(h, [it]).iloc[0]
    assert (r["output"], r["fc"], r["pd"]) == ("1", 1.0, 0.0)
    assert r["pd_cont"] < 1e-3


@pytest.mark.parametrize("after, output", [("\n", "1"), ("5", ""), ("0", "10"), (",", "1")])
def test_fc_needs_the_label_to_end_there(after, output, split_tok):
    """Labels 1 and 10 (split digits, as SmolLM2 tokenises them): a bigram model answers " 1" and then
    ``after``. A greedy "15" is no label (FC 0), "10" is label 10 (then a newline), "1\n" and "1," are 1."""
    bigram = {":": " ", " ": "1", "1": after, "0": "\n", "5": "\n"}
    if after == "0":
        bigram["0"] = "\n"
    h = planted_model(split_tok, bigram=bigram)
    from ablate.icl.tasks import IclItem

    for gold in ("1", "10"):
        it = IclItem("binary_fruit_month", 2, 0, "clean", (("plum", "May", "1"), ("June", "kiwi", "10")),
                     ("fig", "Oct"), gold, ("1", "10"))
        r = evaluate_items(h, [it]).iloc[0]
        assert (r["output"], r["fc"], r["pd"]) == (output, float(output != ""), float(output == gold)), (gold, r)
        assert _literal(h, it)["output"] == output


def test_copy_model_that_repeats_the_label_is_not_format_compliant(split_tok):
    """The split-digit copy model without the newline bigram copies the digit again ("11"): FC 0."""
    labels = tuple("0123456789")
    h = planted_model(split_tok, bigram={":": " "}, copy_labels=labels)
    items = _items(tasks=("binary_fruit_month",), shots=(1, 3), n_items=6, controls=("clean",))
    df = evaluate_items(h, items)
    assert (df["fc"] == 0).all() and (df["output"] == "").all()
    assert list(df["output"]) == [_literal(h, it)["output"] for it in items]
    assert (df["fc_cont"] > 0.99).all()  # the probability mass is still on the labels' tokens


def test_copy_model_with_letter_labels(word_tok):
    h = planted_model(word_tok, copy_labels=tuple("BCDFGHJKLMNPQRSTVWXZ"))
    items = make_items("pd_order_letter", shots=(1, 4), n_items=10, seed=3, controls=("clean", "shuffled"))
    df = evaluate_items(h, items)
    exp = _expected_copy(items)
    assert list(df["output"]) == [e[0] for e in exp]


# ------------------------------------------------------------------------------------------
# literal oracle: unpadded per-candidate HF forwards and an explicit greedy decoding loop


def _literal(h, it):
    tok = h.tokenizer
    P = _ids(tok, it.prompt)
    cands = []
    for lab in it.labels:
        whole = _ids(tok, it.prompt + " " + lab)
        assert whole[:len(P)] == P
        cands.append(whole[len(P):])
    logps = []
    with torch.no_grad():
        for c in cands:
            x = torch.tensor([P + c])
            lp = torch.log_softmax(h.hf(input_ids=x).logits[0].double(), -1)
            logps.append(sum(lp[len(P) - 1 + j, t].item() for j, t in enumerate(c)))
        seq = list(P)
        for _ in range(max(map(len, cands)) + 1):  # one token past the longest label: does it end there?
            nxt = int(h.hf(input_ids=torch.tensor([seq])).logits[0, -1].argmax())
            seq.append(nxt)
    # on the decoded text: the continuation starts with " " + label and no letter or digit follows it
    text = tok.decode(seq)[len(tok.decode(P)):]
    match = [i for i, lab in enumerate(it.labels) if text.startswith(" " + lab)
             and not text[len(lab) + 1:len(lab) + 2].isalnum()]
    out = max(match, key=lambda i: len(it.labels[i])) if match else None
    logps = np.array(logps)
    z = np.logaddexp.reduce(logps)
    g = it.labels.index(it.gold)
    return {"output": it.labels[out] if out is not None else "", "fc": float(out is not None),
            "pd": float(out == g), "gold_logprob": logps[g], "fc_cont": math.exp(z),
            "pd_cont": math.exp(logps[g] - z)}


def _skewed_random_model(tok, labels_text, seed=0):
    """A random tiny Llama whose label (and space) logits are amplified so greedy often picks labels."""
    m = tiny_model("llama", vocab_size=len(tok), max_pos=512, seed=seed, d_model=32)
    ids = sorted({t for s in labels_text for t in _ids(tok, s)} | set(_ids(tok, " ")))
    with torch.no_grad():
        m.lm_head.weight[ids] *= 12.0
    return ModelHandle.from_hf(m, tok)


def _noisy_copy_model(kind, tok):
    """The copy-previous-label model with Gaussian noise on the unembedding: the greedy path
    sometimes follows a label and sometimes leaves the label set (item-dependent)."""
    if kind == "word":
        h, sig = planted_model(tok, copy_labels=tuple("0123456789") + ("true", "false")), 0.15
    else:
        h, sig = planted_model(tok, bigram={":": " ", **{d: "\n" for d in "0123456789"}},
                               copy_labels=tuple("0123456789")), 0.3
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        h.hf.lm_head.weight += sig * torch.randn(h.hf.lm_head.weight.shape, generator=g)
    return h


@pytest.mark.parametrize("kind", ["word", "split"])
def test_matches_literal_greedy_oracle(kind, word_tok, split_tok):
    tok = word_tok if kind == "word" else split_tok
    h = _noisy_copy_model(kind, tok)
    items = _items(tasks=("binary_fruit_month", "four_fruit_month", "rel_subj"),
                   shots=(0, 1, 5), n_items=4, controls=("clean",))
    df = evaluate_items(h, items, batch_size=7)
    lit = pd.DataFrame([_literal(h, it) for it in items])
    assert list(df["output"]) == list(lit["output"])
    np.testing.assert_array_equal(df["fc"].values, lit["fc"].values)
    np.testing.assert_array_equal(df["pd"].values, lit["pd"].values)
    for c in ("gold_logprob", "fc_cont", "pd_cont"):
        np.testing.assert_allclose(df[c].values, lit[c].values, rtol=1e-4, atol=1e-5)
    # non-trivial: the greedy path lands in and out of the label set, right and wrong
    assert 0 < df["fc"].mean() < 1 and 0 < df["pd"].mean() < df["fc"].mean()


@pytest.mark.parametrize("kind", ["word", "split"])
def test_padded_and_unpadded_batches_agree(kind, word_tok, split_tok):
    tok = word_tok if kind == "word" else split_tok
    h = _skewed_random_model(tok, [" 0", " 1", " true", " false"], seed=3)
    items = _items(tasks=("binary_fruit_month", "rel_mod"), shots=(0, 3, 10), n_items=2)
    one = evaluate_items(h, items, batch_size=1)
    many = evaluate_items(h, items, batch_size=64)
    for c in ("output", "fc", "pd", "greedy_first"):
        assert list(one[c]) == list(many[c])
    for c in ("gold_logprob", "fc_cont", "pd_cont", "demo_loss_first", "demo_loss_last", "lr_prompt"):
        np.testing.assert_allclose(one[c].values, many[c].values, rtol=1e-5, atol=1e-5)


def test_conditions_batched_equal_alone_and_clean_equals_plain(word_tok):
    h = _skewed_random_model(word_tok, [" 0", " 1"], seed=5)
    items = make_items("binary_fruit_month", shots=(2, 5), n_items=2, seed=0, controls=("clean",))
    cond = ZeroAblate("L0H1,L1H2")
    both = evaluate_items(h, items, conditions=[None, cond])
    alone = evaluate_items(h, items, conditions=[cond])
    assert set(both["condition"]) == {"clean", str(cond)}
    abl = both[both.condition_index == 1].reset_index(drop=True)
    np.testing.assert_allclose(abl["gold_logprob"], alone["gold_logprob"], rtol=1e-5, atol=1e-5)
    clean = both[both.condition_index == 0].reset_index(drop=True)
    lit = pd.DataFrame([_literal(h, it) for it in items])
    np.testing.assert_allclose(clean["gold_logprob"], lit["gold_logprob"], rtol=1e-5, atol=1e-5)
    assert not np.allclose(abl["gold_logprob"], clean["gold_logprob"])
    # mean ablation with a reference batch of other prompts
    from ablate import MeanAblate
    from ablate.icl.metrics import prompt_batch

    ref = prompt_batch(h, [it.prompt for it in make_items("binary_fruit_month", shots=(3,), n_items=4, seed=9,
                                                          controls=("clean",))])
    mean = evaluate_items(h, items, conditions=[MeanAblate("L0H1")], reference=ref)
    assert np.isfinite(mean["gold_logprob"]).all()
    assert not np.allclose(mean["gold_logprob"], clean["gold_logprob"])


def test_in_prompt_loss_reduction_by_hand(word_tok):
    """Demonstration answer losses are the per-token losses at the label positions of the prompt."""
    h = _skewed_random_model(word_tok, [" 0", " 1"], seed=7)
    it = make_items("binary_fruit_month", shots=(8,), n_items=1, seed=2, controls=("clean",))[0]
    r = evaluate_items(h, [it]).iloc[0]
    ids = _ids(word_tok, it.prompt)
    with torch.no_grad():
        lp = torch.log_softmax(h.hf(input_ids=torch.tensor([ids])).logits[0].double(), -1)
    # word-level: every label is one token, right after a ":" token
    colon = word_tok.convert_tokens_to_ids(":")
    pos = [i + 1 for i, t in enumerate(ids[:-1]) if t == colon]
    losses = [-lp[p - 1, ids[p]].item() for p in pos]
    assert len(losses) == 8
    np.testing.assert_allclose(r["demo_loss_first"], np.mean(losses[:2]), rtol=1e-6)
    np.testing.assert_allclose(r["demo_loss_last"], np.mean(losses[-2:]), rtol=1e-6)
    np.testing.assert_allclose(r["lr_prompt"], np.mean(losses[:2]) - np.mean(losses[-2:]), rtol=1e-6)


def test_one_row_per_prompt_for_split_digits(split_tok):
    pp = prepare_prompt(split_tok, "plum, May:", [str(i) for i in range(9)], "3")
    # one row: prompt + " " (the labels' shared first token) + the gold's digit, whose logits say
    # whether the gold label ends there
    assert pp.rows == [pp.cand_ids[3]] and len(pp.rows[0]) == 2
    pp = prepare_prompt(split_tok, "dog, barks:", ["true", "false"], "true")
    assert len(pp.rows) == 2  # " t" -> "ru" and " f" -> "al" diverge


def test_bad_inputs(word_tok):
    with pytest.raises(IclMetricError, match="not among"):
        prepare_prompt(word_tok, "plum, May:", ["0", "1"], "2")
    with pytest.raises(IclMetricError, match="empty label set"):
        prepare_prompt(word_tok, "plum, May:", [], "0")
    with pytest.raises(IclMetricError, match="not distinguishable"):
        prepare_prompt(word_tok, "plum, May:", ["0", "0 "], "0")
    with pytest.raises(IclMetricError, match="no items"):
        evaluate_items(planted_model(word_tok), [])


# ------------------------------------------------------------------------------------------
# activation patching clean -> shuffled-label prompts


def _clean_and_shuffled(tasks, shots, n_items):
    items = _items(tasks=tasks, shots=shots, n_items=n_items, controls=("clean", "shuffled"))
    clean = [it for it in items if it.control == "clean"]
    shuf = [it for it in items if it.control == "shuffled"]
    return clean, shuf


def test_patching_the_copy_head_restores_the_clean_answer(word_tok):
    """Planted copy-the-latest-label head (L0H0): on a shuffled prompt it copies the latest *shown*
    label; patched from the clean prompt at the query token it copies the clean prompt's label."""
    from ablate import Patch

    h = planted_model(word_tok, copy_labels=tuple("0123456789") + ("true", "false"))
    clean, shuf = _clean_and_shuffled(("binary_fruit_month", "four_fruit_month", "rel_subj"), (1, 3, 6), 6)
    df = evaluate_items(h, shuf, conditions=[None, Patch("L0H0", "last")], patch_from=clean)
    corrupted = df[df.condition_index == 0].reset_index(drop=True)
    patched = df[df.condition_index == 1].reset_index(drop=True)
    assert list(corrupted["output"]) == [e[0] for e in _expected_copy(shuf)]
    assert list(patched["output"]) == [e[0] for e in _expected_copy(clean)]
    np.testing.assert_array_equal(patched["pd"].values, [e[1] for e in _expected_copy(clean)])
    # the test has teeth: shuffling changed the answer on some items
    assert (corrupted["output"] != patched["output"]).any()


def test_patching_acts_at_the_query_token_only(split_tok):
    """With digits after a space token, the copy decision is made at the space (a candidate-node
    position), not at the query's ":" -- so patching at the query token changes nothing."""
    from ablate import Patch

    h = planted_model(split_tok, bigram={":": " "}, copy_labels=tuple("0123456789"))
    clean, shuf = _clean_and_shuffled(("binary_fruit_month", "four_fruit_month"), (3,), 6)
    df = evaluate_items(h, shuf, conditions=[None, Patch("L0H0", "last")], patch_from=clean)
    a, b = (df[df.condition_index == k].reset_index(drop=True) for k in (0, 1))
    assert list(a["output"]) == list(b["output"])
    np.testing.assert_allclose(a["gold_logprob"], b["gold_logprob"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_patching_every_head_reproduces_the_clean_query_logits(family, word_tok):
    """Oracle from the architecture: if every head of every layer is patched at the query token,
    the residual stream there is the clean one at every layer (same token, same attention outputs,
    hence same MLP inputs), so the answer logits equal the clean prompt's. Self-patching is the
    identity. (One-token labels and equal prompt lengths, so positions agree for GPT-2 too.)"""
    from ablate import Patch
    from ablate.model.heads import HeadSet

    m = tiny_model(family, vocab_size=len(word_tok), max_pos=512, seed=4, d_model=32)
    h = ModelHandle.from_hf(m, word_tok)
    clean, shuf = _clean_and_shuffled(("binary_fruit_month", "four_fruit_month"), (2, 5), 4)
    assert all(len(_ids(word_tok, a.prompt)) == len(_ids(word_tok, b.prompt)) for a, b in zip(clean, shuf))
    every = HeadSet.all_heads(h.adapter.n_layers, h.adapter.n_heads)
    df = evaluate_items(h, shuf, conditions=[None, Patch(every, "last"), Patch("L1H0", "last")],
                        patch_from=clean, batch_size=5)
    ref = evaluate_items(h, clean)
    full = df[df.condition_index == 1].reset_index(drop=True)
    for c in ("gold_logprob", "fc_cont", "pd_cont"):
        np.testing.assert_allclose(full[c], ref[c], rtol=1e-5, atol=1e-6)
    assert list(full["output"]) == list(ref["output"])
    corrupted = df[df.condition_index == 0].reset_index(drop=True)
    one = df[df.condition_index == 2].reset_index(drop=True)

    def gap(x):
        return float(np.abs(x["gold_logprob"] - ref["gold_logprob"]).max())

    # the corruption and a one-head patch leave gaps orders of magnitude above the full patch's
    assert gap(corrupted) > 1e-5 and gap(corrupted) > 100 * gap(full)
    assert gap(one) > 100 * gap(full)
    # self-patching (clean into clean) is the identity
    selfp = evaluate_items(h, clean, conditions=[Patch(every, "last")], patch_from=clean)
    np.testing.assert_allclose(selfp["gold_logprob"], ref["gold_logprob"], rtol=1e-5, atol=1e-5)


def test_patching_bad_inputs(word_tok):
    from ablate import Patch

    h = _skewed_random_model(word_tok, [" 0", " 1"], seed=5)
    clean, shuf = _clean_and_shuffled(("binary_fruit_month",), (2,), 2)
    with pytest.raises(IclMetricError, match="patch_from"):
        evaluate_items(h, shuf, conditions=[Patch("L0H0", "last")])
    with pytest.raises(IclMetricError, match="positions='last'"):
        evaluate_items(h, shuf, conditions=[Patch("L0H0", "all")], patch_from=clean)
    with pytest.raises(IclMetricError, match="aligned"):
        evaluate_items(h, shuf, conditions=[Patch("L0H0", "last")], patch_from=clean[::-1])
    with pytest.raises(IclMetricError, match="one clean item"):
        evaluate_items(h, shuf, conditions=[Patch("L0H0", "last")], patch_from=clean[:1])


def test_mean_ablation_reference_captured_once_gives_the_same_scores(word_tok):
    """score_prompts captures the mean-ablation reference once and reuses it in every batch: the
    scores equal those of one prompt per call (a fresh capture each time) and of one big batch."""
    from ablate.intervene.operators import MeanAblate
    from ablate.icl.metrics import prompt_batch

    h = _skewed_random_model(word_tok, [" 0", " 1"], seed=5)
    items = _items(tasks=("binary_fruit_month",), shots=(2, 4), n_items=4, controls=("clean",))
    ref = prompt_batch(h, ["plum May June kiwi fig Oct", "apple July pear"])
    conds = [None, MeanAblate("L0H0"), MeanAblate("L0H1")]
    many = evaluate_items(h, items, conds, reference=ref, batch_size=2)
    one_each = pd.concat([evaluate_items(h, [it], conds, reference=ref) for it in items]).sort_values(
        ["condition_index", "shots", "item"]).reset_index(drop=True)
    big = evaluate_items(h, items, conds, reference=ref, batch_size=64)
    for other in (one_each, big):
        a = many.sort_values(["condition_index", "shots", "item"]).reset_index(drop=True)
        np.testing.assert_allclose(a["gold_logprob"].values, other["gold_logprob"].values, rtol=1e-5, atol=1e-5)
        assert list(a["output"]) == list(other["output"])
    assert not np.allclose(many.loc[many.condition_index == 0, "gold_logprob"].values,
                           many.loc[many.condition_index == 1, "gold_logprob"].values)
