"""Loss reduction (LR): the loss on later tokens of a document falls as context accumulates.

Per document and per intervention condition (docs/science.md §5)::

    loss_early = mean loss over tokens [0, 50)       loss_mid  = mean over [50, 100)
    loss_late  = mean loss over tokens [450, 500)
    lr_mid  = loss_early - loss_mid                  (the paper's LR, tokens 0-50 vs 50-100)
    lr_late = loss_early - loss_late                 (the paper's LR, tokens 0-50 vs 450-500)
    olsson  = loss@50 - loss@500                      (Olsson et al.'s ICL score, single tokens,
                                                       negated)

**One sign everywhere: higher = more in-context ability** (later tokens are cheaper), the same sign
as the in-prompt ``lr_prompt`` of :mod:`ablate.icl.metrics` and the ``lr`` / ``lr_doc`` columns of
the runner's results table. (Olsson et al. write the score as loss@500 - loss@50, negative for ICL;
this column is its negation.) The early and late window losses are kept as separate columns
because an ablation can raise the early loss more than the late one (the difference alone would
then look like *more* ICL).

Token index ``t`` is the 0-based position of the *predicted* token in the document; its loss is
``-log p(x_t | x_<t)``. Without BOS the first token has no loss, so ``[0, 50)`` averages
tokens 1..49; with ``add_bos=True`` token 0 is predicted from BOS. ``loss@50`` is the loss of
the 50th token (index 49) and ``loss@500`` of the 500th (index 499).

**Short-context models.** The evaluation length is ``L = min(500, n_ctx)`` tokens (``n_ctx`` from
the model config, minus one for BOS). When ``L < 500`` every window boundary is scaled by
``L / 500`` (rounded), e.g. ``n_ctx = 128``: ``[0, 13)``, ``[13, 26)``, ``[115, 128)``, ``loss@13``
and ``loss@128``. The windows used are reported in the output (``win_early``, ``win_mid``,
``win_late``, ``at_early``, ``at_late``). A document shorter than a window gets NaN there.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ablate.model.errors import AblateError
from ablate.intervene.engine import run_conditions
from ablate.intervene.operators import Condition
from ablate.model.handle import encode_ids, ModelHandle, pad_batch

__all__ = ["LossReductionError", "LRWindows", "lr_windows", "model_context_length", "read_documents",
           "loss_reduction"]


class LossReductionError(AblateError, ValueError):
    """No documents, unreadable document files, or a context too short for the windows."""


@dataclass(frozen=True)
class LRWindows:
    """Token windows (half-open ``[a, b)``) and single-token indices for LR."""

    early: tuple[int, int]
    mid: tuple[int, int]
    late: tuple[int, int]
    at_early: int  # 0-based index of the "50th" token
    at_late: int   # 0-based index of the "500th" token
    length: int    # tokens evaluated per document
    scale: float

    def describe(self) -> dict:
        f = lambda w: f"{w[0]}-{w[1]}"
        return {"win_early": f(self.early), "win_mid": f(self.mid), "win_late": f(self.late),
                "at_early": self.at_early + 1, "at_late": self.at_late + 1, "window_scale": self.scale}


def lr_windows(n_ctx: int, base: int = 500) -> LRWindows:
    """The paper's windows for a model that can read ``n_ctx`` tokens (scaled down if < ``base``).

    Raises:
        LossReductionError: ``n_ctx < 20`` (windows would be empty).
    """
    L = min(base, int(n_ctx))
    if L < 20:
        raise LossReductionError(f"context length {n_ctx} is too short for loss-reduction windows (need >= 20)")
    s = L / base
    r = lambda x: int(round(x * s))
    return LRWindows((0, r(50)), (r(50), r(100)), (r(450), L), r(50) - 1, L - 1, L, s)


def model_context_length(handle: ModelHandle) -> int:
    """Maximum positions of the model (``max_position_embeddings`` / ``n_positions``)."""
    cfg = handle.hf.config
    for k in ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length"):
        v = getattr(cfg, k, None)
        if isinstance(v, int) and v > 0:
            return v
    return 2048


def read_documents(paths: str | os.PathLike | Iterable[str | os.PathLike], *, pattern: str = "*.txt",
                   split_blank_lines: bool = False) -> list[str]:
    """Read documents from text files or a folder of them (sorted by name).

    Args:
        paths: a file, a folder (files matching ``pattern``), or a list of files.
        split_blank_lines: split each file into documents at blank lines.

    Raises:
        LossReductionError: a path does not exist or nothing was read.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files += sorted(p.glob(pattern))
        elif p.is_file():
            files.append(p)
        else:
            raise LossReductionError(f"document path not found: {p}")
    docs: list[str] = []
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        if split_blank_lines:
            docs += [d.strip() for d in text.split("\n\n") if d.strip()]
        elif text.strip():
            docs.append(text)
    if not docs:
        raise LossReductionError(f"no documents read from {[str(f) for f in files] or paths}")
    return docs


def _wmean(x: np.ndarray, valid: np.ndarray, a: int, b: int) -> float:
    if b > len(x) or a >= b:
        return math.nan
    v = valid[a:b]
    return float(x[a:b][v].mean()) if v.any() else math.nan


def loss_reduction(handle: ModelHandle, docs: Sequence[str], conditions: Sequence[Any] = (None,), *,
                   reference: dict | None = None, source: dict | None = None, add_bos: bool = False,
                   batch_size: int = 4, n_ctx: int | None = None, progress: bool = False):
    """Per-document loss-reduction metrics under ``K`` intervention conditions.

    Each batch of documents runs all ``K`` conditions in one traced pass
    (:func:`~ablate.intervene.engine.run_conditions`, left padding, position ids from the mask).

    Args:
        handle: the model.
        docs: document texts (see :func:`read_documents`).
        conditions: e.g. ``[None, target_condition, *random_conditions]``; ``None`` = clean.
        reference: batch for mean ablation; ``source``: for resample ablation.
        add_bos: prepend BOS (then token 0 has a loss too).
        batch_size: documents per condition per pass.
        n_ctx: override the model's context length (windows scale down below 500).
        progress: show a progress bar.

    Returns:
        ``pandas.DataFrame``, one row per (condition, document): ``condition``,
        ``condition_index``, ``doc``, ``n_tokens``, ``loss_early``, ``loss_mid``, ``loss_late``,
        ``lr_mid``, ``lr_late``, ``loss_at_early``, ``loss_at_late``, ``olsson`` and the windows
        used (``win_early`` ...; see :class:`LRWindows`).

    Raises:
        LossReductionError: no documents, or a document with fewer than 2 tokens.
    """
    import pandas as pd

    docs = list(docs)
    if not docs:
        raise LossReductionError("loss_reduction: no documents given")
    conds = [Condition.coerce(c) for c in conditions]
    K = len(conds)
    tok = handle.tokenizer
    ctx = int(n_ctx or model_context_length(handle))
    bos = []
    if add_bos:
        if tok.bos_token_id is None:
            raise LossReductionError("add_bos=True but the tokenizer has no BOS token")
        bos = [tok.bos_token_id]
    win = lr_windows(ctx - len(bos))
    ids = []
    for d, text in enumerate(docs):
        x = bos + encode_ids(tok, text)[:win.length]
        if len(x) < 2:
            raise LossReductionError(f"document {d} has fewer than 2 tokens; drop empty documents")
        ids.append(x)
    # per doc and condition: loss by document token index (NaN where undefined)
    losses = np.full((K, len(docs), win.length), np.nan)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(docs), desc="loss reduction", unit="doc", leave=False)
    for s in range(0, len(docs), batch_size):
        chunk = list(range(s, min(len(docs), s + batch_size)))
        batch = pad_batch([ids[d] for d in chunk], tok.pad_token_id, padding_side="left", device=handle.device)
        T = batch["input_ids"].shape[1]
        tl = run_conditions(handle, batch, conds, reference=reference, source=source,
                            reduce="token_loss").double().cpu().numpy()  # [K, B, T-1]
        for b, d in enumerate(chunk):
            n = len(ids[d])
            off = T - n
            row = tl[:, b, off:]  # losses predicting row tokens 1..n-1
            # row token j (1..n-1) is document token j - len(bos)
            start = 1 - len(bos)
            losses[:, d, start:start + row.shape[1]] = row
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    recs = []
    desc = win.describe()
    for k, c in enumerate(conds):
        for d in range(len(docs)):
            x = losses[k, d]
            n_tok = len(ids[d]) - len(bos)
            valid = ~np.isnan(x)
            valid[n_tok:] = False
            le, lm, ll = (_wmean(x, valid, *w) if w[1] <= n_tok else math.nan
                          for w in (win.early, win.mid, win.late))
            a_e = float(x[win.at_early]) if win.at_early < n_tok else math.nan
            a_l = float(x[win.at_late]) if win.at_late < n_tok else math.nan
            recs.append({"condition": c.name, "condition_index": k, "doc": d, "n_tokens": n_tok,
                         "loss_early": le, "loss_mid": lm, "loss_late": ll,
                         "lr_mid": le - lm, "lr_late": le - ll,
                         "loss_at_early": a_e, "loss_at_late": a_l, "olsson": a_e - a_l, **desc})
    return pd.DataFrame.from_records(recs)
