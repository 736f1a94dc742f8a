"""Head scores of one model as one tidy table: the computation of a ``scores/step=S`` cell.

Scores per head: relation index per (relation, direction), its null(s) (``baseline``: fake tail;
optionally ``shuffled``), ``copying`` and ``prefix_matching``, and (when nulls are computed) the
null-FDR selection tests per head (``sih_test_p``, ``sih_test_effect``;
:func:`ablate.scores.selection.null_tests`), which are selection statistics, not scores to draw. Output columns (:data:`COLUMNS`):
``step, tokens_seen, score, relation, direction, layer, head, value, n_events``.

:class:`ScanConfig` is the one declaration of the scan settings: the ``[scores]`` section of an
experiment spec is this dataclass (:mod:`experiments.spec`), so ``ablate scan``, the heatmaps and the
head selection of ``ablate run`` all use one set of settings. Looping over checkpoints, resuming and
writing ``RUN/head_scores.parquet`` are the runner's (:mod:`experiments.runner`).

Stages of :func:`scan_model`: :func:`parse_for_scan` (spaCy, once per process for a given sentence
source: the word-level triplets are tokenizer-independent) -> :func:`relation_index_of` (align to
the model's tokenizer, relation index with its nulls) -> copying and prefix matching.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Literal, Sequence

import pandas as pd

from ablate.triplets.relations import WordTriplet, align_triplets

__all__ = ["ScanConfig", "COLUMNS", "parse_for_scan", "relation_index_of", "scan_model"]

COLUMNS = ["step", "tokens_seen", "score", "relation", "direction", "layer", "head", "value", "n_events"]

Direction = Literal["forward", "reverse"]
Null = Literal["baseline", "shuffled"]
OvInput = Literal["normed", "raw"]


@dataclass(frozen=True)
class ScanConfig:
    """Settings of a scan (the ``[scores]`` section of a spec).

    Attributes:
        sentences: sentence source for :func:`ablate.triplets.syntax.load_sentences` (None: shipped file).
        n_sentences: seeded subsample size (None: all).
        relations: syntactic relations (may be empty when ``kg`` names a source).
        kg: knowledge-graph sources scored beside them (:func:`ablate.triplets.kg.kg_word_triplets`:
            ``"wordnet"``, ``"builtin"``, ``"templates"``, ``"tsv:PATH"``); their relation names
            (``Hyponym-of``, ``Part-of``, ``Antonym-of``, ``Category-of``, a TSV's own) become
            relation groups of the scores table like the syntactic ones.
        kg_pairs: pairs per KG relation (seeded draw; ``builtin`` and TSV sources are used whole).
        directions: ``("forward", "reverse")`` by default.
        tau, tau_percentile: the QK gate (see :func:`ablate.scores.relation_index.relation_index`);
            ``tau`` 0 or None = argmax only.
        nulls: RI nulls to compute (``baseline`` always recommended).
        ov: what enters the OV raise (:class:`ablate.scores.relation_index.OVConfig` ``x``).
        max_tokens: drop longer sentences.
        copying, prefix_matching: also compute these scores.
        n_random, random_length: random sequences for copying / prefix matching.
        batch_size: sentences per forward pass.
        pipeline: spaCy pipeline name (None: default).

    The seed (sentence subsample, shuffled-tail null, random sequences) is the spec's, passed apart.
    """

    sentences: str | None = None
    n_sentences: int | None = None
    relations: tuple[str, ...] = ("subj", "obj", "mod")
    kg: tuple[str, ...] = ()
    kg_pairs: int = 100
    directions: tuple[Direction, ...] = ("forward", "reverse")
    tau: float | None = 2.2
    tau_percentile: float | None = None
    nulls: tuple[Null, ...] = ("baseline",)
    ov: OvInput = "normed"
    max_tokens: int = 64
    copying: bool = True
    prefix_matching: bool = True
    n_random: int = 32
    random_length: int = 24
    batch_size: int = 16
    pipeline: str | None = None

    def __post_init__(self) -> None:
        for name in ("relations", "kg", "directions", "nulls"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def gate(self) -> float | None:
        """The tau handed to :func:`relation_index` (None: argmax only)."""
        return self.tau if self.tau else None


@lru_cache(maxsize=8)
def _parse(sentences: str | None, n_sentences: int | None, relations: tuple[str, ...], pipeline: str | None,
           seed: int) -> tuple[WordTriplet, ...]:
    from ablate.triplets.syntax import load_sentences, parse_word_triplets

    if not relations:
        return ()
    sents = load_sentences(sentences, n=n_sentences, seed=seed)
    return tuple(parse_word_triplets(sents, relations=list(relations), pipeline=pipeline))


@lru_cache(maxsize=8)
def _kg(sources: tuple[str, ...], max_pairs: int, seed: int) -> tuple[WordTriplet, ...]:
    from ablate.triplets.kg import kg_word_triplets

    return tuple(kg_word_triplets(sources, max_pairs=max_pairs, seed=seed)) if sources else ()


def parse_for_scan(config: ScanConfig, seed: int = 0) -> list[WordTriplet]:
    """The configured sentences parsed (syntactic relations) plus the configured KG sources' triplets
    (tokenizer-independent; cached per process)."""
    return (list(_parse(config.sentences, config.n_sentences, config.relations, config.pipeline, seed))
            + list(_kg(config.kg, config.kg_pairs, seed)))


def relation_index_of(handle: Any, config: ScanConfig, *, seed: int = 0, word_triplets: Sequence[WordTriplet] | None = None,
                      progress: bool = False):
    """``(RelationIndexResult, AlignmentReport)`` of one model under ``config``."""
    from ablate.scores.relation_index import OVConfig, relation_index

    words = parse_for_scan(config, seed) if word_triplets is None else list(word_triplets)
    triplets, report = align_triplets(words, handle.tokenizer, max_tokens=config.max_tokens,
                                      directions=config.directions)
    res = relation_index(handle, triplets, tau=config.gate, tau_percentile=config.tau_percentile,
                         nulls=config.nulls, ov=OVConfig(x=config.ov), batch_size=config.batch_size, seed=seed,
                         progress=progress)
    return res, report


def scan_model(handle: Any, word_triplets: Sequence[WordTriplet] | None = None, config: ScanConfig = ScanConfig(),
               *, seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """All head scores of one model as a tidy frame (columns :data:`COLUMNS` minus step/tokens_seen).

    ``word_triplets``: parsed sentences (default: :func:`parse_for_scan` of ``config``).
    """
    from ablate.scores.copying import copying_score, prefix_matching_score
    from ablate.scores.relation_index import OVConfig

    from ablate.scores.selection import null_tests, selection_test_rows

    res, report = relation_index_of(handle, config, seed=seed, word_triplets=word_triplets, progress=progress)
    frames = [res.frame()]
    if config.nulls:  # the null-FDR rule's per-head tests, so selection never recomputes the RI
        frames.append(selection_test_rows(null_tests(res, nulls=tuple(config.nulls))))
    rnd = dict(n_sequences=config.n_random, length=config.random_length, seed=seed, batch_size=config.batch_size)
    if config.copying:
        frames.append(copying_score(handle, ov=OVConfig(x=config.ov), **rnd).frame())
    if config.prefix_matching:
        frames.append(prefix_matching_score(handle, **rnd).frame())
    df = pd.concat(frames, ignore_index=True)
    df.attrs["alignment"] = report.summary()
    return df
