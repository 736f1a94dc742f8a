"""Syntactic triplets: label map, character-offset alignment, multi-token words, bad input."""

from __future__ import annotations

import pytest

from ablate.triplets.relations import NoTripletsError, WordTriplet, align_triplets
from ablate.triplets.syntax import (DEFAULT_LABEL_MAP, RelationRule, SpacyModelMissingError, load_pipeline,
                           load_sentences, parse_word_triplets, syntactic_triplets)

spacy = pytest.importorskip("spacy")


def _wordpiece():
    """A WordPiece tokenizer that splits 'Grandmothers' and 'wonderful' into two pieces."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "[PAD]", "[BOS]", "Grand", "##mothers", "bake", "wonder", "##ful", "cookies", ".",
             "Well", ",", "the", "dog", "happily", "ate", "big", "bone", "!", "The", "saw", "other"]
    t = Tokenizer(models.WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return PreTrainedTokenizerFast(tokenizer_object=t, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]")


def _bytelevel_bpe():
    """A byte-level BPE (GPT-2 style offsets with leading spaces) trained on a few sentences."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=300, special_tokens=["<bos>", "<pad>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    t.train_from_iterator(["the dog ate the bone", "the cat saw the dog"] * 20, tr)
    return PreTrainedTokenizerFast(tokenizer_object=t, bos_token="<bos>", pad_token="<pad>")


def _by_rel(ts):
    return {(t.relation, t.direction): t for t in ts}


def test_multi_token_rule_wordpiece():
    tok = _wordpiece()
    ts, rep = syntactic_triplets(["Grandmothers bake wonderful cookies."], tok)
    assert rep.n_kept == 3 and not rep.dropped
    ids = tok.convert_ids_to_tokens(list(ts[0].tokens))
    assert ids == ["[BOS]", "Grand", "##mothers", "bake", "wonder", "##ful", "cookies", "."]
    d = _by_rel(ts)
    subj = d["subj", "forward"]  # bake <- Grandmothers
    assert subj.head_span == (3,) and subj.tail_span == (1, 2) and subj.o == 1  # tail = FIRST sub-token
    assert (subj.head_word, subj.tail_word) == ("bake", "Grandmothers")
    mod = d["mod", "forward"]  # cookies <- wonderful
    assert mod.head_span == (6,) and mod.o == 4 and mod.j_min == 6
    rev = d["subj", "reverse"]  # attend target = ANY sub-token of 'Grandmothers', tail = 'bake'
    assert rev.head_span == (1, 2) and rev.o == 3 and rev.j_min == 3
    assert d["obj", "forward"].head_span == (3,) and d["obj", "forward"].o == 6


def test_punctuation_and_repeated_words_bytelevel():
    tok = _bytelevel_bpe()
    text = "Well, the dog happily ate the big bone!"
    ts, _ = syntactic_triplets([text, "The dog saw the other dog."], tok, directions=("forward",))
    for t in ts:  # offsets round-trip: the tail's first sub-token starts the tail word
        ids, T = list(t.tokens), len(t.tokens)
        assert tok.decode(ids[t.o:t.tail_span[-1] + 1]).strip() == t.tail_word
        assert tok.decode(ids[t.head_span[0]:t.head_span[-1] + 1]).strip() == t.head_word
        assert ids[0] == tok.bos_token_id and t.tail_span[-1] < T
    rels = {(t.text, t.relation): t for t in ts}
    assert rels[text, "mod"].tail_word in ("happily", "big")
    # repeated word: subject 'dog' is the first occurrence, object 'dog' the second
    s, o = rels["The dog saw the other dog.", "subj"], rels["The dog saw the other dog.", "obj"]
    assert s.tail_word == o.tail_word == "dog"
    assert s.o < s.head_span[0] < o.o
    assert s.tokens[s.o] != o.tokens[o.o] or s.o != o.o


def test_label_map_is_configurable():
    words = parse_word_triplets(["The letter was written by the teacher."])
    assert not [w for w in words if w.relation == "subj"]  # passive subject excluded by default
    lm = dict(DEFAULT_LABEL_MAP, subj=RelationRule(("nsubj", "nsubjpass", "nsubj:pass"), ("VERB", "AUX")))
    words = parse_word_triplets(["The letter was written by the teacher."], label_map=lm)
    assert [(w.relation, w.head_word, w.tail_word) for w in words] == [("subj", "written", "letter")]
    words = parse_word_triplets(["Well, the dog happily ate the big bone!"], relations=["obj"])
    assert [(w.head_word, w.tail_word) for w in words] == [("ate", "bone")]
    assert "obj" in DEFAULT_LABEL_MAP["obj"].labels and "dobj" in DEFAULT_LABEL_MAP["obj"].labels


def test_alignment_drops_are_counted():
    tok = _wordpiece()
    text = "Grandmothers bake cookies."
    wts = [WordTriplet(text, (0, 5), (5, 12), "x"),  # 'Grand' -> '##mothers': kept
           WordTriplet(text, (0, 3), (3, 5), "x"),  # head and tail inside the same token 'Grand'
           WordTriplet(text, (12, 13), (13, 17), "x")]  # head on whitespace only
    ts, rep = align_triplets(wts, tok, strict=False)
    assert rep.n_in == 3 and rep.n_kept == 1
    assert rep.dropped["head and tail words share a token"] == 1
    assert rep.dropped["word not covered by any token"] == 1
    with pytest.raises(NoTripletsError, match=r"kept 0 of 2 triplets; dropped: .*share a token"):
        align_triplets(wts[1:], tok)


def test_no_triplets_survive():
    tok = _wordpiece()
    with pytest.raises(NoTripletsError, match="found no"):
        syntactic_triplets(["Hello!"], tok)
    with pytest.raises(NoTripletsError, match=r"dropped: 3 sentence longer than max_tokens=4"):
        syntactic_triplets(["Grandmothers bake wonderful cookies."], tok, max_tokens=4)


def test_missing_pipeline_says_how_to_install():
    with pytest.raises(SpacyModelMissingError, match="python -m spacy download xx_no_such_pipeline"):
        load_pipeline("xx_no_such_pipeline")


def test_sentence_sources(tmp_path):
    default = load_sentences()
    assert len(default) >= 200 and not any(s.startswith("#") for s in default)
    assert load_sentences(n=5, seed=1) == load_sentences(n=5, seed=1) != load_sentences(n=5, seed=2)
    f = tmp_path / "s.txt"
    f.write_text("# comment\nThe dog ate the bone.\n\nThe cat saw the dog.\n")
    assert load_sentences(f) == ["The dog ate the bone.", "The cat saw the dog."]
    assert load_sentences(["a b c"]) == ["a b c"]
    with pytest.raises(Exception, match="not found"):
        load_sentences(tmp_path / "missing.txt")
