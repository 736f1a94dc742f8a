"""Knowledge-graph triplets: AGENDA letter replacement, TSV, built-in graph, WordNet (skips)."""

from __future__ import annotations

import json

from pathlib import Path

import pytest

from ablate.triplets.kg import (BUILTIN_KG, ENTITY_LETTERS, KGError, WordNetUnavailableError, agenda_word_triplets,
                       builtin_word_triplets, tsv_word_triplets, wordnet_word_triplets)
from ablate.triplets.relations import NoTripletsError, align_triplets
from ablate.testing.tiny import tiny_tokenizer

RECORD = {
    "title": "a fast parser",
    "entities": ["neural parser", "dependency parsing", "treebank"],
    "types": "<method> <task> <material>",
    "relations": ["neural parser -- USED-FOR -- dependency parsing",
                  "treebank -- EVALUATE-FOR -- neural parser",
                  "treebank -- PART-OF -- dependency parsing"],
    "abstract": "we present a <method_0> for <task_0> . the <method_0> is trained on the <material_0> . "
                "results are good .",
}


def test_letters_skip_reserved():
    assert not set("AINSWE") & set(ENTITY_LETTERS) and ENTITY_LETTERS[:3] == ("B", "C", "D")


def test_agenda_tags_letters_and_function_words(tmp_path):
    f = tmp_path / "agenda.json"
    f.write_text(json.dumps([RECORD]))
    wts, skipped = agenda_word_triplets(f)
    assert [(w.relation, w.head_word, w.tail_word) for w in wts] == [
        ("Used-for", "B", "C"), ("Evaluate-for", "D", "B")]
    assert skipped["head and tail never in one sentence"] == 1
    assert wts[0].text == "present B C."  # 'we', 'a', 'for' removed
    og = dict(RECORD, abstract="", abstract_og="We present a neural parser for dependency parsing.")
    wts2, _ = agenda_word_triplets([og], relations=["Used-for"])
    assert [(w.text, w.head_word, w.tail_word) for w in wts2] == [("present B C.", "B", "C")]


def test_agenda_align_single_tokens_and_reverse():
    words = "present B C D trained results are good .".split()
    tok = tiny_tokenizer(tuple(words))
    wts, _ = agenda_word_triplets([RECORD])
    ts, rep = align_triplets(wts, tok, directions=("forward", "reverse"), single_token=True)
    assert rep.n_kept == 2 and len(ts) == 4
    assert {t.direction for t in ts} == {"forward", "reverse"}


def test_tail_not_a_single_token_is_dropped():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[BOS]": 1, "the": 2, "apple": 3, "is": 4, "a": 5, "fru": 6, "##it": 7}
    t = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok = PreTrainedTokenizerFast(tokenizer_object=t, unk_token="[UNK]", bos_token="[BOS]")
    from ablate.triplets.relations import WordTriplet
    w = WordTriplet("the apple is a fruit", (4, 9), (15, 20), "Hyponym-of")
    with pytest.raises(NoTripletsError, match="not a single token"):
        align_triplets([w], tok, single_token=True)
    ts, _ = align_triplets([w], tok)  # without the KG rule: first sub-token of 'fruit'
    assert ts[0].tail_span == (5, 6) and ts[0].o == 5


def test_tsv(tmp_path):
    f = tmp_path / "kg.tsv"
    f.write_text("head\trelation\ttail\tsentence\n"
                 "dog\tHyponym-of\tanimal\tThe dog is an animal that barks.\n"
                 "wheel\tPart-of\tcar\tThe bike has no engine.\n")
    wts, skipped = tsv_word_triplets(f)
    assert [(w.head_word, w.tail_word) for w in wts] == [("dog", "animal")]
    assert skipped["head or tail not found in the sentence"] == 1
    bad = tmp_path / "bad.tsv"
    bad.write_text("dog\tanimal\n")
    with pytest.raises(KGError, match="4 tab-separated columns"):
        tsv_word_triplets(bad)


def test_builtin_graph_renders_long_sentences():
    wts = builtin_word_triplets()
    assert len(wts) == len(BUILTIN_KG) and {w.relation for w in wts} == {"Hyponym-of", "Part-of"}
    for w, (h, _, t) in zip(wts, BUILTIN_KG):
        assert (w.head_word, w.tail_word) == (h, t) and len(w.text.split()) >= 12
    assert builtin_word_triplets(seed=1) == builtin_word_triplets(seed=1)


def test_wordnet_missing_says_how_to_install(tmp_path):
    with pytest.raises(WordNetUnavailableError, match="apt-get install wordnet-base"):
        wordnet_word_triplets(root=tmp_path)


def test_wordnet_when_installed():
    try:
        wts = wordnet_word_triplets(max_pairs=20)
    except WordNetUnavailableError:
        if Path("/usr/share/wordnet/data.noun").is_file():
            raise  # installed (setup.sh installs it where apt-get can) but unreadable: a real failure
        pytest.skip("WordNet data not installed (python -m nltk.downloader wordnet / apt-get install wordnet-base)")
    assert wts and {w.relation for w in wts} <= {"Hyponym-of", "Part-of"}
    pairs = {(w.text[w.head[0]:w.head[1]], w.relation, w.text[w.tail[0]:w.tail[1]])
             for w in wordnet_word_triplets(("Hyponym-of", "Antonym-of"), max_pairs=100_000)}
    # known WordNet 3.0 facts, independent of the loader's code
    assert ("dog", "Hyponym-of", "canine") in pairs
    assert ("good", "Antonym-of", "bad") in pairs and ("hot", "Antonym-of", "cold") in pairs
    with pytest.raises(KGError, match="unknown WordNet relation"):
        wordnet_word_triplets(("Synonym-of",))


def test_wordnet_and_category_draws_do_not_depend_on_the_hash_seed():
    """nltk returns part holonyms in set order: the same seed must still draw the same pairs in any
    process (found by the relations run, whose Part-of scores differed between two runs)."""
    import subprocess
    import sys

    if not Path("/usr/share/wordnet/data.noun").is_file():
        pytest.skip("WordNet data not installed")
    code = ("from ablate.triplets.kg import kg_word_triplets as k;"
            "print([(w.relation, w.head_word, w.tail_word) for w in k(['wordnet', 'templates'], max_pairs=30)])")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**__import__("os").environ, "PYTHONHASHSEED": str(h)}).stdout for h in (1, 2)}
    assert len(outs) == 1 and "Part-of" in next(iter(outs)) and "Category-of" in next(iter(outs))
