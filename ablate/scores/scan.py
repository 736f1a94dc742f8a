"""Scan head scores of one model or of every checkpoint of a series into tidy tables.

Scores per head: relation index per (relation, direction), its null(s) (``baseline``: fake tail;
optionally ``shuffled``), ``copying`` and ``prefix_matching``. Output columns:
``step, tokens_seen, score, relation, direction, layer, head, value, n_events``.

Series scan (:func:`scan_series`) writes ``RUN/parts/step_<N>.parquet`` per checkpoint, each
committed atomically (temporary file + ``os.replace``), skips checkpoints whose part exists
(resumable: a killed scan loses at most the checkpoint in progress), then combines the parts
into ``RUN/head_scores.parquet`` (also atomic). ``RUN/scan_config.json`` records the settings;
resuming with different settings is refused.

Series discovery uses :class:`checkpoints.series.CheckpointSeries` (``series.json`` manifest or
``step_N`` folders) through :func:`experiments.run_files.local_series`, as ``ablate icl`` does.

Sentences are parsed with spaCy once per scan; the word-level triplets are re-aligned to each
checkpoint's tokenizer (cached by vocabulary), so the parse cost is paid once.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ablate.model.errors import AblateError
from experiments.run_files import atomic_write_parquet, check_run_config, local_series
from ablate.triplets.relations import FORWARD, REVERSE, WordTriplet, align_triplets

__all__ = ["ScanConfig", "COLUMNS", "parse_for_scan", "scan_model", "discover_series", "scan_series",
           "atomic_write_parquet"]

COLUMNS = ["step", "tokens_seen", "score", "relation", "direction", "layer", "head", "value", "n_events"]


@dataclass
class ScanConfig:
    """Settings of a scan (all stored in ``scan_config.json``).

    Attributes:
        sentences: sentence source for :func:`ablate.triplets.syntax.load_sentences` (None: shipped file).
        n_sentences: seeded subsample size (None: all).
        relations: syntactic relations (None: subj, obj, mod).
        directions: ``("forward", "reverse")`` by default.
        tau, tau_percentile: the QK gate (see :func:`ablate.scores.relation_index.relation_index`).
        nulls: RI nulls to compute (``baseline`` always recommended).
        copying, prefix_matching: also compute these scores.
        n_random, random_length: random sequences for copying / prefix matching.
        max_tokens: drop longer sentences.
        batch_size: sentences per forward pass.
        pipeline: spaCy pipeline name (None: default).
        seed: sentence subsample, shuffled-tail null and random sequences.
    """

    sentences: str | None = None
    n_sentences: int | None = None
    relations: list[str] | None = None
    directions: list[str] = field(default_factory=lambda: [FORWARD, REVERSE])
    tau: float | None = 2.2
    tau_percentile: float | None = None
    nulls: list[str] = field(default_factory=lambda: ["baseline"])
    copying: bool = True
    prefix_matching: bool = True
    n_random: int = 32
    random_length: int = 24
    max_tokens: int = 64
    batch_size: int = 16
    pipeline: str | None = None
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def parse_for_scan(config: ScanConfig) -> list[WordTriplet]:
    """Load and parse the configured sentences once (tokenizer-independent triplets)."""
    from ablate.triplets.syntax import load_sentences, parse_word_triplets

    sents = load_sentences(config.sentences, n=config.n_sentences, seed=config.seed)
    return parse_word_triplets(sents, relations=config.relations, pipeline=config.pipeline)


def scan_model(handle: Any, word_triplets: Sequence[WordTriplet], config: ScanConfig = ScanConfig(),
               *, progress: bool = False) -> pd.DataFrame:
    """All head scores of one model as a tidy frame (columns :data:`COLUMNS` minus step/tokens_seen)."""
    from ablate.scores.copying import copying_score, prefix_matching_score
    from ablate.scores.relation_index import relation_index

    triplets, report = align_triplets(word_triplets, handle.tokenizer, max_tokens=config.max_tokens,
                                      directions=tuple(config.directions))
    res = relation_index(handle, triplets, tau=config.tau, tau_percentile=config.tau_percentile,
                         nulls=tuple(config.nulls), batch_size=config.batch_size, seed=config.seed,
                         progress=progress)
    frames = [res.frame()]
    if config.copying:
        frames.append(copying_score(handle, n_sequences=config.n_random, length=config.random_length,
                                    seed=config.seed, batch_size=config.batch_size).frame())
    if config.prefix_matching:
        frames.append(prefix_matching_score(handle, n_sequences=config.n_random, length=config.random_length,
                                            seed=config.seed, batch_size=config.batch_size).frame())
    df = pd.concat(frames, ignore_index=True)
    df.attrs["alignment"] = report.summary()
    return df


def discover_series(folder: str | os.PathLike) -> list[tuple[int, int | None, Path]]:
    """``(step, tokens_seen, path)`` of a series folder (see :class:`checkpoints.series.CheckpointSeries`).

    Raises:
        AblateError: the folder is missing or holds no checkpoints.
    """
    return local_series(folder)


def _check_config(out: Path, config: ScanConfig) -> None:
    check_run_config(out / "scan_config.json", config.as_dict(), "a scan")


def _vocab_key(tok: Any) -> str:
    return hashlib.sha1(json.dumps(sorted(tok.get_vocab().items())).encode()).hexdigest()


def scan_series(series: str | os.PathLike | None, out: str | os.PathLike, config: ScanConfig = ScanConfig(), *,
                steps: Sequence[int] | None = None, model: str | os.PathLike | None = None,
                progress: bool = True) -> Path:
    """Scan every checkpoint (or one ``model``) into ``out/head_scores.parquet``; resumable.

    Args:
        series: series folder (``step_N`` folders and/or ``series.json``); None with ``model``.
        out: run folder.
        config: :class:`ScanConfig`.
        steps: only these steps (default all).
        model: a single model (folder or GGUF file) instead of a series (step 0).

    Returns:
        Path of the combined ``head_scores.parquet``.
    """
    from tqdm.auto import tqdm

    from ablate.model.handle import load_model

    out = Path(out)
    if (series is None) == (model is None):
        raise AblateError("pass exactly one of a series folder (--series) or a single model (--model)")
    if model is not None:
        cps = [(0, None, Path(model))]
    else:
        cps = discover_series(series)
        if steps is not None:
            have = {s for s, _, _ in cps}
            missing = sorted(set(steps) - have)
            if missing:
                raise AblateError(f"steps {missing} are not in the series {series} (has {sorted(have)})")
            cps = [c for c in cps if c[0] in set(steps)]
    _check_config(out, config)
    parts = out / "parts"
    words: list[WordTriplet] | None = None
    bar = tqdm(cps, desc="checkpoints", disable=not progress)
    for step, tokens_seen, path in bar:
        part = parts / f"step_{step}.parquet"
        if part.exists():
            continue
        bar.set_postfix_str(f"step {step}")
        if words is None:
            words = parse_for_scan(config)
        handle = load_model(path)
        df = scan_model(handle, words, config, progress=progress)
        df.insert(0, "tokens_seen", tokens_seen)
        df.insert(0, "step", step)
        df["tokens_seen"] = df["tokens_seen"].astype("Int64")
        atomic_write_parquet(df[COLUMNS], part)
    frames = [pd.read_parquet(parts / f"step_{s}.parquet") for s, _, _ in cps]
    combined = pd.concat(frames, ignore_index=True)
    dest = out / "head_scores.parquet"
    atomic_write_parquet(combined, dest)
    return dest
