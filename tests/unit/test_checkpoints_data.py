"""Word lists, the training recipe, corpora and the deterministic batch stream."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from checkpoints.corpus import (
    CorpusError,
    HFDatasetCorpus,
    PublicDomainCorpus,
    TextFilesCorpus,
    parse_corpus_spec,
)
from checkpoints.recipe import DocumentGenerator, Recipe
from ablate.icl.wordlists import CATEGORIES, all_words, category_of, split_words


def test_wordlists_split_is_disjoint_deterministic_and_complete():
    for cat, words in CATEGORIES.items():
        assert len(words) >= 24
        tr, ho = split_words(cat, "train"), split_words(cat, "heldout")
        assert set(tr).isdisjoint(ho) and set(tr) | set(ho) == set(words)
        assert len(ho) == -(-len(words) // 3)
    assert split_words("fruit", "heldout") == ('lemon', 'melon', 'kiwi', 'lime', 'fig', 'quince', 'raisin', 'prune')
    assert category_of("plum") == "fruit"
    assert len(all_words()) == sum(len(w) for w in CATEGORIES.values())
    with pytest.raises(KeyError, match="known"):
        split_words("planet")
    with pytest.raises(ValueError, match="part"):
        split_words("fruit", "test")


def test_wordlists_import_is_light():
    import subprocess
    import sys

    code = "import sys, ablate.icl.wordlists; print(any(m in sys.modules for m in ('torch', 'numpy', 'transformers')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_labelled_documents_use_training_words_only():
    gen = DocumentGenerator(Recipe())
    heldout = set(all_words("heldout"))
    rng = np.random.default_rng(0)
    seen_words = set()
    for i in range(400):
        kind = "pair_rules" if i % 2 else "single_labels"
        for line in gen.generate(kind, rng).splitlines():
            m = re.fullmatch(r"(.+?)(?:, (.+?))?: (\S+)", line)
            assert m, line
            words = {w for w in m.groups()[:2] if w}
            assert not words & heldout, line
            seen_words |= words
    assert len(seen_words) > 100
    # templates mention held-out words (category knowledge), never a label line
    text = " ".join(gen.templates(rng) for _ in range(300))
    assert any(f" {w} " in f" {text} " for w in heldout)
    assert not re.search(r": \S+\n", text)


def test_recipe_document_options_do_what_they_say():
    from ablate.icl.wordlists import category_of

    heldout = set(all_words("heldout"))
    rng = np.random.default_rng(1)
    # distinct_words: no word twice in a document while its category's pool lasts (16 training words)
    gen = DocumentGenerator(Recipe(distinct_words=True, lines=(12, 16)))
    for _ in range(50):
        words = [ln.split(":")[0] for ln in gen.single_labels(rng).splitlines()]
        assert len(words) == len(set(words)), words
    # pair_lines = 1: every single-label line is "w1, w2: L" with both words of the line's category
    gen = DocumentGenerator(Recipe(pair_lines=1.0))
    for _ in range(50):
        for ln in gen.single_labels(rng).splitlines():
            m = re.fullmatch(r"(.+?), (.+?): (\S+)", ln)
            assert m and category_of(m[1]) == category_of(m[2]) and not {m[1], m[2]} & heldout, ln
    # order_rules (1, 0, 0, 0): only the word-order rule; each document pairs two fixed categories
    gen = DocumentGenerator(Recipe(order_rules=(1, 0, 0, 0)))
    for _ in range(50):
        lines = [re.fullmatch(r"(.+?), (.+?): (\S+)", ln) for ln in gen.pair_rules(rng).splitlines()]
        cats = {(category_of(m[1]), category_of(m[2])) for m in lines}
        assert len({frozenset(c) for c in cats}) == 1 and all(a != b for a, b in cats)
        by_order = {}
        for m in lines:  # the label is a function of the order
            by_order.setdefault((category_of(m[1]), category_of(m[2])), set()).add(m[3])
        assert all(len(v) == 1 for v in by_order.values()) and len({next(iter(v)) for v in by_order.values()}) == len(by_order)
    # the options are left out of to_dict at their defaults (run identities of older presets hold)
    assert not {"distinct_words", "pair_lines", "order_rules"} & set(Recipe().to_dict())
    r = Recipe(distinct_words=True, pair_lines=0.5, order_rules=(1, 0.5, 1, 0.5))
    assert Recipe.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_recipe_fractions_and_round_trip():
    r = Recipe(text=1, templates=1, pair_rules=1, single_labels=1, copy=0)
    assert r.fractions()["copy"] == 0 and abs(sum(r.fractions().values()) - 1) < 1e-12
    assert Recipe.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    with pytest.raises(ValueError, match="fractions"):
        Recipe(text=-1).fractions()
    with pytest.raises(ValueError, match="unknown keys"):
        Recipe.from_dict({"txt": 1})


def test_text_files_corpus_and_spec(tmp_path):
    (tmp_path / "a.txt").write_text("First paragraph of enough length to be kept here.\n\nshort\n\n"
                                    "Second paragraph, also long enough to be kept by the reader.")
    docs = list(TextFilesCorpus([str(tmp_path)]).documents())
    assert docs == ["First paragraph of enough length to be kept here.",
                    "Second paragraph, also long enough to be kept by the reader."]
    assert isinstance(parse_corpus_spec(str(tmp_path / "a.txt")), TextFilesCorpus)
    assert isinstance(parse_corpus_spec(None), PublicDomainCorpus)
    assert isinstance(parse_corpus_spec("hf:cerebras/SlimPajama-627B"), HFDatasetCorpus)
    with pytest.raises(CorpusError, match="neither"):
        parse_corpus_spec(str(tmp_path / "missing.txt"))


def test_hf_dataset_corpus_streams_local_json(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join(json.dumps({"text": f"document number {i} with words"}) for i in range(5)))
    docs = list(HFDatasetCorpus("json", data_files=str(f), max_chars=60).documents())
    assert docs[0] == "document number 0 with words" and 2 <= len(docs) < 5
    with pytest.raises(CorpusError, match="no column 'body'"):
        list(HFDatasetCorpus("json", data_files=str(f), text_field="body").documents())


def test_public_domain_corpus_is_kjv():
    docs = list(PublicDomainCorpus(max_chars=2000).documents())
    assert docs[0].startswith("In the beginning God created the heaven and the earth.")
    assert not re.search(r"\b\d+\. ", docs[0]) and "[" not in docs[0]


def test_batch_stream_is_a_pure_function_of_seed_and_step():
    from checkpoints.stream import BatchStream
    from checkpoints.tokenizer import train_tokenizer

    docs = list(PublicDomainCorpus(max_chars=30_000).documents())
    tok = train_tokenizer(docs, 400, single_token_words=False)
    ids = np.array(tok.backend_tokenizer.encode("\n\n".join(docs)).ids, dtype=np.int32)
    mk = lambda seed: BatchStream(tok, ids, Recipe(text_window=(8, 32)), 3, 48, seed)  # noqa: E731
    a, b = mk(0), mk(0)
    assert np.array_equal(a.batch(7), b.batch(7))
    assert not np.array_equal(a.batch(7), a.batch(8))
    assert not np.array_equal(a.batch(7), mk(1).batch(7))
    batch = a.batch(3)
    assert batch.shape == (3, 48) and (batch[:, 0] == tok.bos_token_id).all()


# The hashes the tiny/default presets had before TrainConfig.family existed: the trainer's run
# identity and the demo's series cache key are built from to_dict(), so a change here makes every
# existing cached series retrain. Change these pins only together with a deliberate preset change.
# default changed deliberately (issue 14): 3 layers, 8,000 steps, attempt A2 of the recipe search; its
# series ships in the package (checkpoints/data/default_series, tests/unit/test_embedded_series.py).
# tiny changed deliberately: max_positions = 512 so the shipped specs' 20-shot prompts fit.
_PRESET_KEYS = {"tiny": ("f637958014fa", "8f4a85fdfd2f7939"), "default": ("4f657bcd2977", "c24063a2b7db8aa0")}


@pytest.mark.parametrize("preset", sorted(_PRESET_KEYS))
def test_llama_presets_keep_their_identity(preset):
    import hashlib

    from checkpoints.presets import TrainConfig, get_preset
    from checkpoints.trainer import _identity_hash

    cfg = get_preset(preset)
    d = cfg.to_dict()
    assert cfg.family == "llama" and "family" not in d
    demo_key = hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert (demo_key, _identity_hash({"config": d, "corpus": "x"})) == _PRESET_KEYS[preset]
    assert get_preset(preset, family="llama").to_dict() == d
    assert TrainConfig.from_dict(d) == cfg


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox"])
def test_other_family_round_trips_and_has_its_own_identity(family):
    from checkpoints.presets import TrainConfig, get_preset
    from checkpoints.trainer import _identity_hash

    cfg = get_preset("tiny", family=family, seed=3)
    d = json.loads(json.dumps(cfg.to_dict()))  # as run.json stores it
    assert d["family"] == family
    assert TrainConfig.from_dict(d) == cfg
    llama = json.loads(json.dumps(get_preset("tiny", seed=3).to_dict()))
    assert {k: v for k, v in d.items() if k != "family"} == llama  # only the family differs, and it names another run:
    assert _identity_hash({"config": d, "corpus": "x"}) != _identity_hash({"config": llama, "corpus": "x"})


def test_family_validation():
    from checkpoints.presets import get_preset

    with pytest.raises(ValueError, match="allowed families: llama, gpt2, gpt_neox"):
        get_preset("tiny", family="bert")
    with pytest.raises(ValueError, match="n_kv_heads.*only supported for family 'llama'"):
        get_preset("tiny", family="gpt_neox", n_kv_heads=1)
    with pytest.raises(ValueError, match="use model_config"):
        get_preset("tiny", family="gpt2").llama_config()
    with pytest.raises(KeyError, match="unknown fields"):
        get_preset("tiny", famly="gpt2")


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox"])
def test_model_config_maps_the_shape_onto_each_family(family):
    import torch

    from ablate.model.adapters import ArchAdapter
    from checkpoints.presets import get_preset

    cfg = get_preset("default", family=family)
    mc = cfg.model_config()
    assert mc.model_type == family and mc.architectures == [cfg.architecture]
    with torch.device("meta"):
        model = cfg.model_class()(mc)
    assert type(model).__name__ == cfg.architecture
    a = ArchAdapter(model)
    assert (a.n_layers, a.n_heads, a.d_model, a.head_dim, a.vocab_size) == (3, 4, 64, 16, 2048)
    mlp_in = {"llama": "model.layers.0.mlp.up_proj.weight", "gpt2": "transformer.h.0.mlp.c_fc.weight",
              "gpt_neox": "gpt_neox.layers.0.mlp.dense_h_to_4h.weight"}[family]
    assert 256 in model.get_parameter(mlp_in).shape
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tie_embeddings
    if family == "gpt2":
        assert mc.n_positions >= cfg.seq_len
        assert mc.resid_pdrop == mc.embd_pdrop == mc.attn_pdrop == 0.0
    elif family == "gpt_neox":
        assert mc.hidden_dropout == mc.attention_dropout == 0.0
    if family == "llama":  # llama_config stays the Llama case of model_config
        assert mc.to_dict() == {**cfg.llama_config().to_dict(), "architectures": ["LlamaForCausalLM"]}
