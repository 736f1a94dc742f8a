"""The deterministic training-batch stream: batch ``s`` is a pure function of ``(seed, s)``.

Because every batch is generated from ``numpy.random.default_rng([seed, step])``, the
"data-stream position" of a resumed run is just the step number: a run restarted from a
checkpoint at step ``s`` sees exactly the batches an uninterrupted run sees from ``s`` on.

Each row of a batch is filled with whole documents ``<|bos|> ... <|eos|>`` (the last one cut
at the row end). The kind of each document is drawn with probability proportional to
``fraction / mean_tokens(kind)`` so that token shares match the :class:`~checkpoints.recipe.Recipe`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from checkpoints.recipe import KINDS, DocumentGenerator, Recipe

__all__ = ["BatchStream"]


@dataclass
class BatchStream:
    """Batches of token ids for the trainer.

    Args:
        tokenizer: The run's ``PreTrainedTokenizerFast`` (its ``backend_tokenizer`` encodes).
        text_ids: The natural-text corpus as one int32 array of token ids (training part).
        recipe: Mixture of document kinds.
        batch_size: Rows per batch.
        seq_len: Tokens per row.
        seed: Run seed.

    Raises:
        ValueError: The recipe asks for text but ``text_ids`` is too short.
    """

    tokenizer: object
    text_ids: np.ndarray
    recipe: Recipe
    batch_size: int
    seq_len: int
    seed: int

    def __post_init__(self) -> None:
        tk = self.tokenizer
        self._enc = tk.backend_tokenizer
        self.bos = tk.bos_token_id
        self.eos = tk.eos_token_id
        specials = set(tk.all_special_ids)
        self.copy_vocab = np.array([i for i in range(len(tk)) if i not in specials], dtype=np.int64)
        self.gen = DocumentGenerator(self.recipe)
        fr = self.recipe.fractions()
        if fr["text"] > 0 and len(self.text_ids) < self.recipe.text_window[1] + 1:
            raise ValueError(
                f"BatchStream: text corpus has {len(self.text_ids)} tokens, fewer than the text "
                f"window {self.recipe.text_window[1]}; use a larger corpus or set Recipe(text=0)"
            )
        rng = np.random.default_rng([self.seed, 2**31 - 1])  # estimation stream, not training
        mean_len = {k: float(np.mean([len(self._doc(k, rng)) for _ in range(64)])) for k in KINDS}
        w = np.array([fr[k] / mean_len[k] for k in KINDS])
        self.kinds = KINDS
        self.kind_probs = w / w.sum()
        self.mean_len = mean_len

    def _doc(self, kind: str, rng: np.random.Generator) -> list[int]:
        if kind == "text":
            lo, hi = self.recipe.text_window
            n = int(rng.integers(lo, hi + 1))
            start = int(rng.integers(0, len(self.text_ids) - n))
            body = self.text_ids[start : start + n].tolist()
        elif kind == "copy":
            lo, hi = self.recipe.copy_length
            n = int(rng.integers(lo, hi + 1))
            reps = int(rng.integers(self.recipe.copy_repeats[0], self.recipe.copy_repeats[1] + 1))
            seg = self.copy_vocab[rng.integers(0, len(self.copy_vocab), size=n)].tolist()
            body = seg * reps
        else:
            body = self._enc.encode(self.gen.generate(kind, rng), add_special_tokens=False).ids
        return [self.bos] + body + [self.eos]

    def batch(self, step: int) -> np.ndarray:
        """The batch for optimiser step ``step`` (0-based), shape ``[batch_size, seq_len]``, int64."""
        rng = np.random.default_rng([self.seed, step])
        out = np.empty((self.batch_size, self.seq_len), dtype=np.int64)
        for r in range(self.batch_size):
            row: list[int] = []
            while len(row) < self.seq_len:
                kind = self.kinds[int(rng.choice(len(self.kinds), p=self.kind_probs))]
                row.extend(self._doc(kind, rng))
            out[r] = row[: self.seq_len]
        return out
