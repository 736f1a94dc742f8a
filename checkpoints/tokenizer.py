"""A byte-level BPE tokenizer trained locally with the ``tokenizers`` library.

The tokenizer is wrapped as a :class:`transformers.PreTrainedTokenizerFast` with ``<|bos|>``,
``<|eos|>`` and ``<|pad|>`` special tokens, and a post-processor that prepends ``<|bos|>`` when
``add_special_tokens=True`` (as Llama tokenizers do), so ``tokenizer("apple, March:")`` returns
BOS-prefixed ids. The trainer itself encodes with ``add_special_tokens=False`` and inserts BOS/EOS
around every document.

To make every category word of :mod:`ablate.icl.wordlists` a single token (with and without a
leading space), the training text is augmented with those words repeated ``word_repeats`` times;
:func:`multi_token_words` reports the words that still split (the tiny preset's small vocabulary
cannot hold them all; the default preset's can).
"""

from __future__ import annotations

from typing import Iterable

from ablate.icl.wordlists import all_words

__all__ = ["BOS", "EOS", "PAD", "train_tokenizer", "multi_token_words"]

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    single_token_words: bool = True,
    word_repeats: int = 400,
):
    """Train a byte-level BPE tokenizer and wrap it for transformers.

    Args:
        texts: Training documents (an iterable of strings; consumed once).
        vocab_size: Target vocabulary size including the 256 byte symbols and 3 specials.
        single_token_words: Add the category words ``word_repeats`` times each, bare and with a
            leading space, so that BPE learns them as single tokens.
        word_repeats: Repetitions per word form.

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` with bos/eos/pad set.

    Raises:
        ValueError: ``vocab_size`` too small for the byte alphabet plus specials.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 300:
        raise ValueError(f"train_tokenizer: vocab_size {vocab_size} < 300 (256 bytes + specials + merges)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def stream():
        yield from texts
        if single_token_words:
            words = all_words("all")
            line = " ".join(words) + "\n" + "\n".join(words)
            for _ in range(word_repeats):
                yield line

    tok.train_from_iterator(stream(), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        model_max_length=1_000_000,
    )


def multi_token_words(tokenizer) -> list[str]:
    """Category words that are not one token bare or with a leading space.

    Args:
        tokenizer: A transformers tokenizer.

    Returns:
        The offending word forms (e.g. ``" furniture"``), empty when all are single tokens.
    """
    bad = []
    for w in all_words("all"):
        for form in (w, " " + w):
            if len(tokenizer.encode(form, add_special_tokens=False)) != 1:
                bad.append(form)
    return bad
