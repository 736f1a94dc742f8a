"""Tiny random models of every supported family, for tests, examples and benchmarks.

They are built in memory (no download) with eager attention and a small word-level tokenizer, so
oracle tests run in milliseconds.
"""

from __future__ import annotations

import torch

#: A default vocabulary of plain words (index = token id after the 4 special tokens).
DEFAULT_WORDS = (
    "the a of and to in is was he she it they cat dog bird fish tree house car road apple plum "
    "pear kiwi January February March April May June chair table sofa desk teacher doctor nurse "
    "farmer red blue green big small run eat see sat saw ate ran quick brown fox jumps over lazy "
    "0 1 2 3 4 5 6 7 8 9 true false , : . ; ! ?"
).split()


def tiny_tokenizer(words: tuple[str, ...] | list[str] = DEFAULT_WORDS, *, extra_size: int = 0):
    """A word-level fast tokenizer: specials ``<unk> <pad> <bos> <eos>`` then ``words``.

    Text is split on whitespace and punctuation; character offsets are exact.
    ``extra_size`` pads the vocabulary with tokens ``tok0 tok1 ...``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {"<unk>": 0, "<pad>": 1, "<bos>": 2, "<eos>": 3}
    for w in list(words) + [f"tok{i}" for i in range(extra_size)]:
        vocab.setdefault(w, len(vocab))
    t = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    t.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(tokenizer_object=t, unk_token="<unk>", pad_token="<pad>",
                                   bos_token="<bos>", eos_token="<eos>")


def tiny_model(family: str = "llama", *, vocab_size: int | None = None, n_layers: int = 2,
               n_heads: int = 4, n_kv_heads: int = 2, d_model: int = 32, max_pos: int = 128,
               seed: int = 0, bias: bool = True) -> torch.nn.Module:
    """A randomly initialised ``*ForCausalLM`` of ``family`` ("gpt2", "gpt_neox", "llama").

    ``bias=True`` turns on every optional bias so oracle tests exercise bias handling.
    Llama uses grouped-query attention (``n_kv_heads < n_heads``) by default.
    """
    from transformers import (GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM,
                              LlamaConfig, LlamaForCausalLM)

    if vocab_size is None:
        vocab_size = len(tiny_tokenizer())
    torch.manual_seed(seed)
    if family == "gpt2":
        cfg = GPT2Config(vocab_size=vocab_size, n_embd=d_model, n_layer=n_layers, n_head=n_heads,
                         n_positions=max_pos, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                         bos_token_id=2, eos_token_id=3, pad_token_id=1)
        cls = GPT2LMHeadModel
    elif family == "gpt_neox":
        cfg = GPTNeoXConfig(vocab_size=vocab_size, hidden_size=d_model, num_hidden_layers=n_layers,
                            num_attention_heads=n_heads, intermediate_size=4 * d_model,
                            max_position_embeddings=max_pos, rotary_pct=0.5, attention_bias=bias,
                            hidden_dropout=0.0, attention_dropout=0.0, bos_token_id=2,
                            eos_token_id=3, pad_token_id=1, tie_word_embeddings=False)
        cls = GPTNeoXForCausalLM
    elif family == "llama":
        cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=d_model, intermediate_size=2 * d_model,
                          num_hidden_layers=n_layers, num_attention_heads=n_heads,
                          num_key_value_heads=n_kv_heads, max_position_embeddings=max_pos,
                          attention_bias=bias, bos_token_id=2, eos_token_id=3, pad_token_id=1,
                          tie_word_embeddings=False)
        cls = LlamaForCausalLM
    else:
        raise ValueError(f"tiny_model: unknown family {family!r}; use gpt2, gpt_neox or llama")
    cfg._attn_implementation = "eager"
    model = cls(cfg).eval()
    # Random init leaves biases at zero; give them values so bias handling is really tested.
    if bias:
        with torch.no_grad():
            g = torch.Generator().manual_seed(seed + 1)
            for name, p in model.named_parameters():
                if name.endswith("bias"):
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def tiny_handle(family: str = "llama", **kwargs):
    """A :class:`~ablate.model.handle.ModelHandle` around :func:`tiny_model` with :func:`tiny_tokenizer`."""
    from ablate.model.handle import ModelHandle

    tok = tiny_tokenizer()
    model = tiny_model(family, vocab_size=len(tok), **kwargs)
    return ModelHandle.from_hf(model, tok, locator=f"tiny-{family}")


FAMILIES = ("gpt2", "gpt_neox", "llama")
