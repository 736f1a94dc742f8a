"""The built-in trainer: a small causal LM from scratch, saving a checkpoint series.

The model is a Llama, GPT-2 or GPT-NeoX (``TrainConfig.family``) of the preset's shape; data,
tokenizer, optimiser and schedule are the same for every family.

Layout of an output folder ``OUT``::

    OUT/run.json            the TrainConfig, corpus description, torch threads (the run's identity)
    OUT/tokenizer/          the BPE tokenizer (trained once, reused on resume)
    OUT/text_ids.npy        the natural-text corpus as token ids (train part, then eval part)
    OUT/step_N/             HF checkpoint: config.json, model.safetensors, tokenizer files,
                            and trainer_state.pt on the newest checkpoint only
    OUT/series.json         the manifest: step, tokens_seen, path, sha256, loss, eval_loss

**Resume.** Run the same command again: the trainer reads ``series.json``, loads the newest
checkpoint's weights and its ``trainer_state.pt`` (AdamW state, LR scheduler, torch RNG, step,
tokens seen) and continues. Weights are read back through the family's ``from_pretrained``, which
knows its checkpoint key names (tied unembeddings are not stored; transformers 5 writes an untied
NeoX unembedding as ``embed_out.weight`` but names it ``lm_head.weight`` in memory), and every
tensor of the model must come back. The data stream needs no state: batch ``s`` is a pure function of
``(seed, s)`` (:mod:`checkpoints.stream`). A checkpoint folder is written under a temporary
name and renamed, and the manifest is replaced atomically, so a kill at any moment leaves the
previous checkpoint usable. With the same number of torch threads the resumed run's checkpoints
are bitwise identical to an uninterrupted run's (tested on the tiny preset); with a different
thread count, float reductions may be ordered differently, so ``run.json`` records the thread
count and a resume with another one warns.

**Schedule.** Step 0 (initial weights), ``n_log_checkpoints`` log-spaced steps below the first
linear step, then ``n_linear_checkpoints`` evenly spaced steps ending at ``steps``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from checkpoints.corpus import Corpus, parse_corpus_spec
from checkpoints.presets import TrainConfig
from checkpoints.series import Checkpoint, CheckpointSeries, MANIFEST_NAME, hash_checkpoint

__all__ = ["checkpoint_schedule", "train", "TrainerError"]

STATE_NAME = "trainer_state.pt"
RUN_NAME = "run.json"


class TrainerError(RuntimeError):
    """The trainer cannot start or resume (config mismatch, broken output folder)."""


def checkpoint_schedule(steps: int, n_log: int, n_linear: int) -> list[int]:
    """Checkpoint steps: 0, log-spaced early steps, then evenly spaced steps up to ``steps``.

    The linear part is ``round(k * steps / n_linear)`` for k = 1..n_linear; the log part is
    ``n_log`` points evenly spaced in log between 1 and the first linear step (exclusive).
    Duplicates after rounding are merged, so short runs may get fewer checkpoints.

    Args:
        steps: Total optimiser steps (> 0).
        n_log: Number of log-spaced checkpoints.
        n_linear: Number of linear checkpoints (>= 1; the last is ``steps``).

    Returns:
        Sorted unique steps, starting at 0 and ending at ``steps``.
    """
    if steps < 1 or n_linear < 1:
        raise ValueError(f"checkpoint_schedule: need steps >= 1 and n_linear >= 1, got {steps}, {n_linear}")
    linear = [round(k * steps / n_linear) for k in range(1, n_linear + 1)]
    first = max(linear[0], 1)
    logs = [round(math.exp(math.log(first) * i / n_log)) for i in range(n_log)] if n_log > 0 else []
    return sorted({0, *[s for s in logs if 0 < s < first], *linear})


def _lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return f


def _run_identity(cfg: TrainConfig, corpus: Corpus) -> dict:
    return {"config": cfg.to_dict(), "corpus": corpus.describe()}


def _identity_hash(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _prepare_tokenizer_and_text(cfg: TrainConfig, corpus: Corpus, out: Path):
    """Train (or load) the tokenizer and tokenize the natural-text corpus (or load it)."""
    from transformers import PreTrainedTokenizerFast

    from checkpoints.recipe import DocumentGenerator
    from checkpoints.tokenizer import multi_token_words, train_tokenizer

    tok_dir = out / "tokenizer"
    ids_path = out / "text_ids.npy"
    if tok_dir.is_dir() and ids_path.is_file():
        return PreTrainedTokenizerFast.from_pretrained(str(tok_dir)), np.load(ids_path)
    docs = list(corpus.documents())
    if not docs:
        raise TrainerError(f"corpus {corpus.describe()} yielded no text")
    gen_docs = DocumentGenerator(cfg.recipe).tokenizer_training_text(n_docs=3000, seed=cfg.seed)
    tok = train_tokenizer(docs + gen_docs, cfg.vocab_size, single_token_words=cfg.single_token_words)
    if cfg.single_token_words:
        bad = multi_token_words(tok)
        if bad:
            warnings.warn(f"tokenizer: {len(bad)} category word forms are not single tokens: {bad[:10]}")
    enc = tok.backend_tokenizer.encode_batch(docs, add_special_tokens=False)
    ids = np.concatenate([np.array(e.ids + [tok.eos_token_id], dtype=np.int32) for e in enc])
    tmp = out / "tokenizer.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tok.save_pretrained(str(tmp))
    np.save(out / "text_ids.tmp.npy", ids)
    os.replace(out / "text_ids.tmp.npy", ids_path)
    shutil.rmtree(tok_dir, ignore_errors=True)
    os.replace(tmp, tok_dir)
    return tok, ids


def _eval_batch(text_eval: np.ndarray, cfg: TrainConfig, bos: int) -> np.ndarray:
    rng = np.random.default_rng([cfg.seed, 2**31 - 2])
    n = min(16, max(1, (len(text_eval) - 1) // cfg.seq_len))
    rows = []
    for _ in range(n):
        start = int(rng.integers(0, max(1, len(text_eval) - cfg.seq_len)))
        row = [bos] + text_eval[start : start + cfg.seq_len - 1].tolist()
        rows.append(row + [bos] * (cfg.seq_len - len(row)))
    return np.array(rows, dtype=np.int64)


def _load_weights(model, model_cls, folder: str, what: str) -> None:
    """Copy the weights saved in ``folder`` into ``model`` exactly (every tensor, strict).

    ``from_pretrained`` maps the family's on-disk key names to the in-memory ones (tied
    unembeddings are not stored: ``lm_head.weight`` of a tied Llama / GPT-2 / NeoX is rebuilt from
    ``model.embed_tokens`` / ``transformer.wte`` / ``gpt_neox.embed_in``; an untied NeoX stores it
    as ``embed_out.weight``), so no family needs a hand-kept list of tolerated keys.
    """
    import torch

    try:
        saved, info = model_cls.from_pretrained(folder, output_loading_info=True, dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001 - any load failure means the folder cannot be resumed
        raise TrainerError(f"{what} cannot be loaded as {model_cls.__name__}: {exc}") from exc
    bad = {k: sorted(v) for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if (v := info.get(k))}
    if bad:
        raise TrainerError(f"{what} does not match a {model_cls.__name__} of this config: {bad}")
    try:
        model.load_state_dict(saved.state_dict(), strict=True)
    except RuntimeError as exc:
        raise TrainerError(f"{what} does not match this config: {exc}") from exc


def train(
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    corpus: Corpus | str | None = None,
    threads: int | None = None,
    progress: bool = True,
    stop_after_step: int | None = None,
    sleep_per_step: float = 0.0,
) -> CheckpointSeries:
    """Train (or resume) a run and return its checkpoint series.

    Args:
        cfg: The run configuration (a preset, possibly with overrides).
        out_dir: Output folder; re-using it with the same ``cfg`` and corpus resumes.
        corpus: A :class:`~checkpoints.corpus.Corpus`, a ``--corpus`` string, or ``None`` for the
            offline public-domain default.
        threads: ``torch.set_num_threads`` value (default: ``min(2, os.cpu_count())``).
        progress: Show a tqdm bar with loss and tokens/s.
        stop_after_step: Testing aid: return right after saving the checkpoint at the first
            scheduled step >= this value (as if killed after it).
        sleep_per_step: Testing aid: sleep this long per step (gives a kill time to land).

    Returns:
        The series of checkpoints written so far (all of them when the run completed).

    Raises:
        TrainerError: ``out_dir`` holds a different run, or its state is broken.
    """
    import torch
    from tqdm.auto import tqdm
    from checkpoints.stream import BatchStream

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no per-checkpoint "Writing model shards" bars
    threads = threads or min(2, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    if not isinstance(corpus, (str, type(None))):
        corp = corpus
    else:
        corp = parse_corpus_spec(corpus, max_chars=cfg.text_max_chars)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    identity = _run_identity(cfg, corp)
    run_path = out / RUN_NAME
    if run_path.is_file():
        old = json.loads(run_path.read_text())
        if _identity_hash(old["identity"]) != _identity_hash(identity):
            raise TrainerError(
                f"{out} holds a different run (config/corpus differ from this command: "
                f"{old['identity']['config'].get('name')!r} preset, family "
                f"{old['identity']['config'].get('family', 'llama')!r}, corpus {old['identity']['corpus']!r}). "
                "Re-run with the same options to resume, or choose a new --out folder."
            )
        if old.get("threads") != threads:
            warnings.warn(
                f"resuming {out} with {threads} torch threads; it was started with "
                f"{old.get('threads')}: results stay deterministic per thread count but may "
                "differ in the last bits from an uninterrupted run"
            )
    else:
        tmp = run_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"identity": identity, "threads": threads,
                                   "identity_hash": _identity_hash(identity)}, indent=1))
        os.replace(tmp, run_path)

    tok, text_ids = _prepare_tokenizer_and_text(cfg, corp, out)
    n_eval = max(cfg.seq_len * 4, len(text_ids) // 20)
    text_train, text_eval = text_ids[:-n_eval], text_ids[-n_eval:]
    stream = BatchStream(tok, text_train, cfg.recipe, cfg.batch_size, cfg.seq_len, cfg.seed)
    eval_ids = torch.from_numpy(_eval_batch(text_eval, cfg, tok.bos_token_id))

    schedule = checkpoint_schedule(cfg.steps, cfg.n_log_checkpoints, cfg.n_linear_checkpoints)
    tokens_per_step = cfg.batch_size * cfg.seq_len

    torch.manual_seed(cfg.seed)
    model_cls = cfg.model_class()
    model = model_cls(cfg.model_config(tok))
    model.config.architectures = [cfg.architecture]
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=cfg.betas, eps=1e-8,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))

    manifest = out / MANIFEST_NAME
    series = CheckpointSeries.from_local(out) if manifest.is_file() else CheckpointSeries([], root=out)
    start = 0
    if len(series):
        last = series[-1]
        state_path = Path(last.locator) / STATE_NAME
        if not state_path.is_file():
            raise TrainerError(
                f"cannot resume {out}: the newest checkpoint (step {last.step}) has no {STATE_NAME}. "
                "Delete the run folder to start over."
            )
        h = hash_checkpoint(last.locator, last.step)
        if last.sha256 and h != last.sha256:
            raise TrainerError(f"cannot resume {out}: checkpoint at step {last.step} does not match its hash")
        _load_weights(model, model_cls, last.locator, f"cannot resume {out}: checkpoint at step {last.step}")
        state = torch.load(state_path, weights_only=False)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        start = state["step"]
        if start >= cfg.steps:
            return series

    def save(step: int, train_loss: float | None) -> None:
        nonlocal series
        with torch.no_grad():
            model.eval()
            eval_loss = float(model(input_ids=eval_ids, labels=eval_ids).loss)
            model.train()
        final = out / f"step_{step}"
        tmp = out / f".tmp_step_{step}"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "torch_rng": torch.get_rng_state(), "step": step,
                    "tokens_seen": step * tokens_per_step}, tmp / STATE_NAME)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        cp = Checkpoint(step, step * tokens_per_step, str(final), hash_checkpoint(final, step),
                        {"loss": train_loss, "eval_loss": eval_loss})
        prev = [c for c in series if c.step != step]
        series = CheckpointSeries([*prev, cp], root=out, source=f"local:{out}")
        series.save_manifest(out)
        for c in prev:  # keep the resume state only on the newest checkpoint
            p = Path(c.locator) / STATE_NAME
            if p.exists():
                p.unlink()

    if start == 0 and not len(series):
        save(0, None)
    model.train()
    desc = f"train {cfg.name}" + ("" if cfg.family == "llama" else f" ({cfg.family})")
    bar = tqdm(total=cfg.steps, initial=start, disable=not progress, desc=desc, unit="step", dynamic_ncols=True)
    losses: list[float] = []
    t0, tok0 = time.perf_counter(), 0
    for step in range(start, cfg.steps):
        ids = torch.from_numpy(stream.batch(step))
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        tok0 += tokens_per_step
        done = step + 1
        bar.update(1)
        if done % 20 == 0 or done == cfg.steps:
            dt = time.perf_counter() - t0
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", tok_s=f"{tok0 / max(dt, 1e-9):,.0f}")
        if done in schedule:
            save(done, float(np.mean(losses)))
            losses = []
            if stop_after_step is not None and done >= stop_after_step:
                break
        if sleep_per_step:
            time.sleep(sleep_per_step)
    bar.close()
    return series
