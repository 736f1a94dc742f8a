"""Relation triplets T = (t_s, r, t_o) located in a tokenised sentence, and their alignment.

A :class:`Triplet` is what the relation index (docs/science.md §2) scores: a sentence as model
token ids, the *head* word (the token(s) a semantic induction head should attend to) and the
*tail* word (the token whose probability the head's OV circuit should raise), the relation name
and the direction (``"forward"``: head = syntactic / KG head, tail = dependent / KG tail;
``"reverse"``: T~ = (t_o, r, t_s)).

Multi-token words (a rule the paper leaves open; docs/science.md §2; this project's rule, used everywhere):

* **tail** = the FIRST sub-token of the tail word (``o = tail_span[0]``): its token id is the
  t_o whose probability is read;
* **attend target** = ANY sub-token of the head word: the QK gate passes at position j when the
  argmax of the attention row lies anywhere in ``head_span``;
* qualifying current positions are ``j >= max(head_span[-1], o)`` (the whole head word and the
  tail token have been read).

For single-token words this is exactly the paper's rule (``s = head_span[0]``).

:class:`WordTriplet` is the tokenizer-independent form (character spans in a sentence) produced
by the dependency parser (:mod:`ablate.triplets.syntax`) and the knowledge-graph loaders
(:mod:`ablate.triplets.kg`); :func:`align_triplets` maps it onto a model tokenizer through character
offsets (``return_offsets_mapping``), so a parse is done once and reused for every checkpoint.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Sequence

from ablate.model.errors import AblateError

__all__ = [
    "Triplet", "WordTriplet", "AlignmentReport", "TripletError", "NoTripletsError",
    "align_triplets", "tokenize_with_offsets", "with_reverse", "FORWARD", "REVERSE",
]

FORWARD = "forward"
REVERSE = "reverse"


class TripletError(AblateError):
    """A triplet is malformed (positions outside the sentence, token id outside the vocabulary)."""


class NoTripletsError(TripletError):
    """No triplet survived extraction / alignment; the message says how many were dropped and why."""


@dataclass(frozen=True)
class Triplet:
    """One relation instance in one tokenised sentence.

    Attributes:
        tokens: the model input ids of the sentence ``[T]`` (BOS included when used).
        head_span: positions of the head word's sub-tokens (attend targets), ascending.
        tail_span: positions of the tail word's sub-tokens, ascending; ``o = tail_span[0]``.
        relation: relation name (``"subj"``, ``"Hyponym-of"`` ...).
        direction: ``"forward"`` or ``"reverse"``.
        text: the sentence text (for reports).
        head_word, tail_word: the words as written in ``text``.
    """

    tokens: tuple[int, ...]
    head_span: tuple[int, ...]
    tail_span: tuple[int, ...]
    relation: str
    direction: str = FORWARD
    text: str = ""
    head_word: str = ""
    tail_word: str = ""

    def __post_init__(self) -> None:
        T = len(self.tokens)
        for name, span in (("head_span", self.head_span), ("tail_span", self.tail_span)):
            if not span:
                raise TripletError(f"Triplet({self.relation!r}, {self.text[:40]!r}): empty {name}")
            if list(span) != sorted(set(span)) or span[0] < 0 or span[-1] >= T:
                raise TripletError(
                    f"Triplet({self.relation!r}, {self.text[:40]!r}): {name}={span} must be ascending, "
                    f"distinct positions inside the sentence of {T} tokens"
                )
        if set(self.head_span) & set(self.tail_span):
            raise TripletError(
                f"Triplet({self.relation!r}, {self.text[:40]!r}): head and tail share positions "
                f"{sorted(set(self.head_span) & set(self.tail_span))}"
            )
        if self.direction not in (FORWARD, REVERSE):
            raise TripletError(f"direction must be 'forward' or 'reverse', got {self.direction!r}")

    @property
    def s(self) -> int:
        """The head token position (first sub-token of the head word)."""
        return self.head_span[0]

    @property
    def o(self) -> int:
        """The tail position (first sub-token of the tail word)."""
        return self.tail_span[0]

    @property
    def tail_token(self) -> int:
        """t_o, the token id whose probability the OV circuit should raise."""
        return self.tokens[self.o]

    @property
    def j_min(self) -> int:
        """The first qualifying current position: ``max(head_span[-1], o)``."""
        return max(self.head_span[-1], self.o)

    def reversed(self) -> "Triplet":
        """T~ = (t_o, r, t_s): the tail word becomes the attend target, the head word the tail."""
        return replace(self, head_span=self.tail_span, tail_span=self.head_span,
                       direction=REVERSE if self.direction == FORWARD else FORWARD,
                       head_word=self.tail_word, tail_word=self.head_word)

    def with_tail(self, position: int) -> "Triplet":
        """A copy whose tail is the single token at ``position`` (fake- / shuffled-tail nulls)."""
        return replace(self, tail_span=(position,), tail_word="")


def with_reverse(triplets: Iterable[Triplet]) -> list[Triplet]:
    """The triplets followed by their reversed copies (every relation in both directions)."""
    ts = list(triplets)
    return ts + [t.reversed() for t in ts]


@dataclass(frozen=True)
class WordTriplet:
    """A tokenizer-independent relation instance: character spans ``[start, end)`` in ``text``."""

    text: str
    head: tuple[int, int]
    tail: tuple[int, int]
    relation: str

    @property
    def head_word(self) -> str:
        return self.text[self.head[0]:self.head[1]]

    @property
    def tail_word(self) -> str:
        return self.text[self.tail[0]:self.tail[1]]


@dataclass
class AlignmentReport:
    """How many word triplets were kept, and why the others were dropped (reason -> count)."""

    n_in: int = 0
    n_kept: int = 0
    dropped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        why = ", ".join(f"{n} {r}" for r, n in self.dropped.most_common()) or "none"
        return f"kept {self.n_kept} of {self.n_in} triplets; dropped: {why}"


def tokenize_with_offsets(tokenizer: Any, text: str, *, add_bos: bool | str = "auto"
                          ) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and character offsets ``[(start, end)]`` of ``text`` (BOS gets offset (0, 0)).

    Raises:
        TripletError: the tokenizer is not a "fast" tokenizer (no offset mapping).
    """
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError as e:  # slow tokenizers
        raise TripletError(
            f"tokenizer {type(tokenizer).__name__} gives no character offsets; alignment needs a "
            "'fast' tokenizer (AutoTokenizer.from_pretrained(..., use_fast=True))"
        ) from e
    ids, offs = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    if _want_bos(tokenizer, add_bos):
        ids, offs = [tokenizer.bos_token_id] + ids, [(0, 0)] + offs
    return ids, offs


def _want_bos(tokenizer: Any, add_bos: bool | str) -> bool:
    if add_bos == "auto":
        return getattr(tokenizer, "bos_token_id", None) is not None
    if add_bos and getattr(tokenizer, "bos_token_id", None) is None:
        raise TripletError("add_bos=True but the tokenizer has no BOS token; pass add_bos=False")
    return bool(add_bos)


def _span_tokens(offs: Sequence[tuple[int, int]], start: int, end: int, first: int) -> tuple[int, ...]:
    """Positions of tokens whose character range overlaps ``[start, end)`` (ignoring BOS)."""
    out = []
    for i in range(first, len(offs)):
        a, b = offs[i]
        if b <= a:
            continue
        # Byte-level BPE offsets may include the leading space: trim whitespace by overlap test.
        if a < end and b > start:
            out.append(i)
    return tuple(out)


def align_triplets(word_triplets: Iterable[WordTriplet], tokenizer: Any, *, add_bos: bool | str = "auto",
                   max_tokens: int | None = None, directions: Sequence[str] = (FORWARD,),
                   strict: bool = True, single_token: bool = False) -> tuple[list[Triplet], AlignmentReport]:
    """Map character-span triplets onto the model tokenizer.

    A word maps to every token whose character offsets overlap the word's span. A triplet is
    dropped (and counted, by reason) when a word maps to no token, when a token is shared by the
    head and the tail word (the tokenizer merged them), or when the sentence is longer than
    ``max_tokens``.

    Args:
        word_triplets: character-level triplets (from :mod:`ablate.triplets.syntax` or :mod:`ablate.triplets.kg`).
        tokenizer: a fast Hugging Face tokenizer.
        add_bos: prepend BOS (``"auto"``: when the tokenizer has one).
        max_tokens: drop sentences with more tokens than this (None: keep all).
        directions: ``("forward",)`` or ``("forward", "reverse")``.
        strict: raise :class:`NoTripletsError` when nothing survives.
        single_token: drop triplets whose head or tail word is not exactly one token (the
            KG convention: entities replaced by single letters; reason "not a single token").

    Returns:
        ``(triplets, report)``; the triplets of each direction, in input order.
    """
    report = AlignmentReport()
    kept: list[Triplet] = []
    cache: dict[str, tuple[list[int], list[tuple[int, int]]]] = {}
    for wt in word_triplets:
        report.n_in += 1
        if wt.text not in cache:
            cache[wt.text] = tokenize_with_offsets(tokenizer, wt.text, add_bos=add_bos)
        ids, offs = cache[wt.text]
        first = 1 if _want_bos(tokenizer, add_bos) else 0
        if max_tokens is not None and len(ids) > max_tokens:
            report.dropped[f"sentence longer than max_tokens={max_tokens}"] += 1
            continue
        hs = _span_tokens(offs, *wt.head, first)
        ts = _span_tokens(offs, *wt.tail, first)
        if not hs or not ts:
            report.dropped["word not covered by any token"] += 1
            continue
        if set(hs) & set(ts):
            report.dropped["head and tail words share a token"] += 1
            continue
        if single_token and (len(hs) > 1 or len(ts) > 1):
            report.dropped["head or tail word is not a single token in this vocabulary"] += 1
            continue
        kept.append(Triplet(tuple(ids), hs, ts, wt.relation, FORWARD, wt.text, wt.head_word, wt.tail_word))
        report.n_kept += 1
    out: list[Triplet] = []
    if FORWARD in directions:
        out.extend(kept)
    if REVERSE in directions:
        out.extend(t.reversed() for t in kept)
    if strict and not out:
        raise NoTripletsError(
            f"no relation triplet survived alignment to the tokenizer: {report.summary()}. "
            "Check that the sentences parse into the requested relations, raise max_tokens, or "
            "pass more sentences."
        )
    return out, report
