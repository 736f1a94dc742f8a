"""The training mixture: natural text plus generated documents that reward in-context learning.

A :class:`Recipe` says what fraction of training **tokens** comes from each document kind:

``text``
    Windows of natural text (the corpus, by default public-domain English).
``templates``
    Knowledge-graph sentences over *all* category words, training and held-out:
    category membership ("A plum is a fruit.", "March is a month."), hypernymy of the
    categories ("A fruit is a kind of food."), co-membership ("Some fruits: apple, fig, lime.",
    "Plums and figs are both fruits."). They teach what each word is, never a label.
``pair_rules``
    Few-shot documents of 6-40 lines in the ``"word1, word2: label"`` format with **training
    words only**. Each document draws a fresh rule (word order of two categories; category of
    the first word; category of the second word; the 4-way pair of categories) and a fresh
    label set (digits, capital letters, or small words), so the only way to predict a label is
    to read the mapping from earlier lines of the same document.
``single_labels``
    Few-shot documents ``"word: label"`` (training words only): 2-4 categories, each mapped to
    a label re-drawn per document.
``copy``
    Random token segments (length 6-40) repeated 2-3 times back to back: a copy curriculum that
    makes an induction (prefix-matching + copying) circuit pay off quickly.

The label sets are drawn per document from pools that include the evaluation labels' *kind*
(digits) but with random assignment, and the words are disjoint from the held-out evaluation
words of :mod:`ablate.icl.wordlists`; the recipe is never tied to a fixed evaluation prompt.

All generation takes an explicit :class:`numpy.random.Generator`, so a document stream is a
pure function of its seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from ablate.icl.wordlists import CATEGORIES, PLURALS, split_words

__all__ = ["Recipe", "DocumentGenerator", "KINDS", "HYPERNYMS"]

KINDS = ("text", "templates", "pair_rules", "single_labels", "copy")

#: category -> a broader class, for hypernymy sentences ("A fruit is a kind of food.").
HYPERNYMS: dict[str, str] = {
    "fruit": "food", "vegetable": "food", "month": "time of year", "furniture": "household object",
    "profession": "job", "animal": "living thing", "color": "property of things",
    "country": "place", "tool": "object", "body part": "part of the body",
    "vehicle": "means of transport", "instrument": "thing that makes music",
}

_LABEL_POOLS: dict[str, tuple[str, ...]] = {
    "digits": tuple(str(i) for i in range(10)),
    "letters": tuple("ABCDEFGHJKLMNOPQRSTUVWXYZ"),
    "words": ("yes", "no", "true", "false", "good", "bad", "up", "down", "left", "right",
              "hot", "cold", "big", "small", "old", "new", "on", "off", "red", "blue"),
}


@dataclass(frozen=True)
class Recipe:
    """Token fractions of each document kind, and the shape of generated documents.

    The five fractions are normalised to sum to 1. Document kinds are drawn per document with
    probability proportional to ``fraction / mean_length`` so that the *token* shares match.

    Attributes:
        text: Natural-text share.
        templates: Knowledge-graph sentence share.
        pair_rules: ``"w1, w2: label"`` few-shot share (rule and labels re-drawn per document).
        single_labels: ``"w: label"`` few-shot share (labels re-drawn per document).
        copy: Repeated random-segment share (copy curriculum).
        lines: Min/max lines of a few-shot document.
        copy_length: Min/max length of a random segment (tokens).
        copy_repeats: Min/max number of copies of the segment.
        text_window: Min/max tokens of a natural-text window.
        word_part: Which words go into labelled documents (``"train"``; ``"all"`` only for
            ablations of the recipe itself).
        distinct_words: No word repeats within a labelled document (each category's words are
            drawn without replacement, the pool refilled when spent), so a line's label cannot be
            copied from an earlier line with the same word: only its *category* predicts it.
        pair_lines: Share of ``single_labels`` documents written as ``"w1, w2: L"`` lines with
            both words from the labelled category (the ``"w: L"`` kind in the two-word format).
        order_rules: Relative weights of the four ``pair_rules`` rules (order, first word,
            second word, 4-way pair).

    The last three fields are left out of :meth:`to_dict` at their defaults, so presets that do
    not use them keep the run identity (and cache key) they had before the fields existed.
    """

    text: float = 0.10
    templates: float = 0.15
    pair_rules: float = 0.20
    single_labels: float = 0.15
    copy: float = 0.40
    lines: tuple[int, int] = (6, 40)
    copy_length: tuple[int, int] = (6, 40)
    copy_repeats: tuple[int, int] = (2, 3)
    text_window: tuple[int, int] = (32, 256)
    word_part: Literal["train", "all"] = "train"
    distinct_words: bool = False
    pair_lines: float = 0.0
    order_rules: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)

    def fractions(self) -> dict[str, float]:
        """Normalised token fractions per kind.

        Raises:
            ValueError: A negative fraction or all fractions zero.
        """
        raw = {k: float(getattr(self, k)) for k in KINDS}
        if any(v < 0 for v in raw.values()) or sum(raw.values()) <= 0:
            raise ValueError(f"Recipe: fractions must be >= 0 and not all 0, got {raw}")
        total = sum(raw.values())
        return {k: v / total for k, v in raw.items()}

    def to_dict(self) -> dict:
        """JSON-serialisable form (stored in the run manifest; new fields omitted at defaults)."""
        d = asdict(self)
        for k, default in _OPTIONAL_DEFAULTS.items():
            if d[k] == default or (isinstance(default, tuple) and tuple(d[k]) == default):
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        """Inverse of :meth:`to_dict` (tuples restored; unknown keys rejected)."""
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"Recipe.from_dict: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**fixed)


_OPTIONAL_DEFAULTS = {"distinct_words": False, "pair_lines": 0.0, "order_rules": (1.0, 1.0, 1.0, 1.0)}


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _plural_word(w: str) -> str:
    if w[0].isupper():
        return w
    if w.endswith(("s", "x", "ch", "sh")):
        return w + "es"
    if w.endswith("y") and w[-2:-1] not in "aeiou":
        return w[:-1] + "ies"
    return w + "s"


@dataclass
class DocumentGenerator:
    """Generates the text documents of a :class:`Recipe` (all kinds except ``text``/``copy``).

    Args:
        recipe: The mixture.
    """

    recipe: Recipe = field(default_factory=Recipe)

    def __post_init__(self) -> None:
        self.categories = list(CATEGORIES)
        part = self.recipe.word_part
        self.labelled_words = {c: split_words(c, part) for c in self.categories}
        self.all_words = {c: split_words(c, "all") for c in self.categories}
        self._left: dict[str, list[str]] = {}

    # -- knowledge-graph sentences -------------------------------------------------------
    def _template_sentence(self, rng: np.random.Generator) -> str:
        cat = self.categories[rng.integers(len(self.categories))]
        words = self.all_words[cat]
        w = words[rng.integers(len(words))]
        kind = rng.integers(5)
        if kind == 0:
            if w[0].isupper():
                return f"{w} is {_article(cat)} {cat}."
            return f"{_cap(_article(w))} {w} is {_article(cat)} {cat}."
        if kind == 1:
            k = int(rng.integers(2, 6))
            pick = [words[i] for i in rng.choice(len(words), size=k, replace=False)]
            return f"Some {PLURALS[cat]}: {', '.join(pick)}."
        if kind == 2:
            v = words[rng.integers(len(words))]
            if v == w:
                return f"{_cap(_article(cat))} {cat} is a kind of {HYPERNYMS[cat]}."
            return f"{_cap(_plural_word(w))} and {_plural_word(v)} are both {PLURALS[cat]}."
        if kind == 3:
            return f"{_cap(_article(cat))} {cat} is a kind of {HYPERNYMS[cat]}."
        other = self.categories[rng.integers(len(self.categories))]
        if other == cat:
            return f"{_cap(w)} is one of the {PLURALS[cat]}."
        return f"{_cap(w)} is not {_article(other)} {other}."

    def templates(self, rng: np.random.Generator) -> str:
        """3-12 knowledge-graph sentences, space separated."""
        n = int(rng.integers(3, 13))
        return " ".join(self._template_sentence(rng) for _ in range(n))

    # -- few-shot documents --------------------------------------------------------------
    def _labels(self, rng: np.random.Generator, k: int) -> list[str]:
        pool = list(_LABEL_POOLS)[rng.integers(len(_LABEL_POOLS))]
        values = _LABEL_POOLS[pool]
        return [values[i] for i in rng.choice(len(values), size=k, replace=False)]

    def _word(self, rng: np.random.Generator, cat: str) -> str:
        words = self.labelled_words[cat]
        if not self.recipe.distinct_words:
            return words[rng.integers(len(words))]
        left = self._left.get(cat)
        if not left:  # first use in this document, or the pool is spent: a fresh shuffled pool
            left = self._left[cat] = [words[i] for i in rng.permutation(len(words))]
        return left.pop()

    def _new_document(self) -> None:
        self._left: dict[str, list[str]] = {}

    def pair_rules(self, rng: np.random.Generator) -> str:
        """A ``"w1, w2: label"`` document with a rule and labels drawn for this document."""
        self._new_document()
        n_lines = int(rng.integers(self.recipe.lines[0], self.recipe.lines[1] + 1))
        if self.recipe.order_rules == (1.0, 1.0, 1.0, 1.0):
            rule = int(rng.integers(4))
        else:
            w = np.asarray(self.recipe.order_rules, dtype=float)
            rule = int(rng.choice(4, p=w / w.sum()))
        lines = []
        if rule == 0:  # word order of two categories
            c = [self.categories[i] for i in rng.choice(len(self.categories), 2, replace=False)]
            lab = self._labels(rng, 2)
            for _ in range(n_lines):
                a, b = self._word(rng, c[0]), self._word(rng, c[1])
                flip = int(rng.integers(2))
                lines.append(f"{b}, {a}: {lab[1]}" if flip else f"{a}, {b}: {lab[0]}")
        elif rule in (1, 2):  # category of the first (1) or second (2) word decides
            k = int(rng.integers(2, 4))
            c = [self.categories[i] for i in rng.choice(len(self.categories), k, replace=False)]
            lab = self._labels(rng, k)
            for _ in range(n_lines):
                i = int(rng.integers(k))
                key = self._word(rng, c[i])
                other = self._word(rng, c[int(rng.integers(k))])
                lines.append(f"{key}, {other}: {lab[i]}" if rule == 1 else f"{other}, {key}: {lab[i]}")
        else:  # 4-way pair of two categories
            c = [self.categories[i] for i in rng.choice(len(self.categories), 2, replace=False)]
            lab = self._labels(rng, 4)
            for _ in range(n_lines):
                i, j = int(rng.integers(2)), int(rng.integers(2))
                lines.append(f"{self._word(rng, c[i])}, {self._word(rng, c[j])}: {lab[2 * i + j]}")
        return "\n".join(lines)

    def single_labels(self, rng: np.random.Generator) -> str:
        """A ``"word: label"`` document: 2-4 categories, labels re-drawn for this document."""
        self._new_document()
        n_lines = int(rng.integers(self.recipe.lines[0], self.recipe.lines[1] + 1))
        k = int(rng.integers(2, 5))
        c = [self.categories[i] for i in rng.choice(len(self.categories), k, replace=False)]
        lab = self._labels(rng, k)
        pairs = self.recipe.pair_lines > 0 and float(rng.random()) < self.recipe.pair_lines
        lines = []
        for _ in range(n_lines):
            i = int(rng.integers(k))
            if pairs:
                lines.append(f"{self._word(rng, c[i])}, {self._word(rng, c[i])}: {lab[i]}")
            else:
                lines.append(f"{self._word(rng, c[i])}: {lab[i]}")
        return "\n".join(lines)

    def generate(self, kind: str, rng: np.random.Generator) -> str:
        """One document of a text-generating kind (``templates``, ``pair_rules``, ``single_labels``).

        Raises:
            ValueError: ``kind`` is not a generated text kind.
        """
        if kind not in ("templates", "pair_rules", "single_labels"):
            raise ValueError(f"DocumentGenerator.generate: {kind!r} is not a generated text kind")
        return getattr(self, kind)(rng)

    def tokenizer_training_text(self, n_docs: int = 3000, seed: int = 0) -> list[str]:
        """Sample generated documents to include in tokenizer training (deterministic)."""
        rng = np.random.default_rng(seed)
        kinds = ("templates", "pair_rules", "single_labels")
        return [self.generate(kinds[i % 3], rng) for i in range(n_docs)]
