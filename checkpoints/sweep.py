"""Fast sweeps over a checkpoint series: one model skeleton, weights swapped per checkpoint.

Building a model (``from_pretrained``) per checkpoint re-reads the config, re-creates every
module, re-initialises and then overwrites the weights. A sweep instead builds the skeleton once
from the first checkpoint's ``config.json`` and, for each checkpoint, reads its tensors with
``safetensors.torch.load_file`` and copies them in with ``load_state_dict`` (in place, so
hooks and references to modules stay valid). With ``prefetch=True`` the next checkpoint's file
is read in a background thread while the caller works on the current one.

Tied weights (``lm_head.weight`` sharing the embedding) are not stored separately in the file;
missing keys are accepted only when they alias a loaded parameter.

``benchmarks/bench_sweep.py`` measures the speed-up against ``from_pretrained`` per checkpoint.
"""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

from checkpoints.series import (
    Checkpoint,
    CheckpointSeries,
    CorruptCheckpointError,
    weights_files,
)

__all__ = ["build_skeleton", "load_weights_into", "read_state_dict", "sweep"]


def build_skeleton(folder: str | Path, attn_implementation: str | None = "eager", dtype=None):
    """A randomly initialised model with a checkpoint's architecture (config only, no weights read).

    Args:
        folder: A checkpoint folder holding ``config.json``.
        attn_implementation: ``"eager"`` (default; attention weights can be returned) or ``"sdpa"``.
        dtype: Optional torch dtype for the skeleton.

    Returns:
        A ``transformers`` causal-LM in eval mode.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(str(folder))
    kwargs = {}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = AutoModelForCausalLM.from_config(cfg, **kwargs)
    return model.eval()


def read_state_dict(folder: str | Path, step: int | None = None) -> dict:
    """Read all weight tensors of a checkpoint folder into a CPU state dict.

    Raises:
        CheckpointNotFoundError: No weight files.
        CorruptCheckpointError: A file cannot be parsed.
    """
    import torch
    from safetensors.torch import load_file

    sd: dict = {}
    for f in weights_files(folder, step):
        try:
            if f.suffix == ".safetensors":
                sd.update(load_file(str(f)))
            else:
                sd.update(torch.load(str(f), map_location="cpu", weights_only=True))
        except Exception as exc:
            raise CorruptCheckpointError(
                f"checkpoint at step {step} ({folder}): cannot read {f.name} ({exc}); re-create "
                "or re-download this checkpoint"
            ) from exc
    return sd


def _tied_groups(model) -> dict[str, set[str]]:
    """name -> all parameter names sharing that parameter's storage (tied weights)."""
    by_id: dict[int, set[str]] = {}
    names: dict[str, int] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), set()).add(name)
        names[name] = id(p)
    return {n: by_id[i] for n, i in names.items()}


def load_weights_into(model, state_dict: dict, step: int | None = None) -> None:
    """Copy a state dict into ``model`` in place, allowing only tied-weight keys to be missing.

    Raises:
        CorruptCheckpointError: Unexpected keys, missing untied keys or shape mismatches
            (the checkpoint is not of this skeleton's architecture).
    """
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as exc:
        raise CorruptCheckpointError(
            f"checkpoint at step {step}: tensors do not fit the model skeleton ({exc}). Sweeps "
            "need one architecture across the series."
        ) from exc
    groups = _tied_groups(model)
    really_missing = [k for k in missing if not any(n in state_dict for n in groups.get(k, ()))]
    if unexpected or really_missing:
        raise CorruptCheckpointError(
            f"checkpoint at step {step}: missing tensors {really_missing[:5]} / unexpected "
            f"{unexpected[:5]} for this skeleton; the series mixes architectures or the file is incomplete"
        )


def sweep(
    series: CheckpointSeries,
    model=None,
    prefetch: bool = True,
    attn_implementation: str | None = "eager",
) -> Iterator[tuple[Checkpoint, object]]:
    """Iterate ``(checkpoint, model)`` over a series, re-using one model skeleton.

    The same model object is yielded every time with new weights; do not keep references to
    its outputs across iterations expecting old weights.

    Args:
        series: The checkpoints to visit, in order.
        model: An existing skeleton to load into (default: built from the first checkpoint).
        prefetch: Read the next checkpoint's tensors in a background thread.
        attn_implementation: Passed to :func:`build_skeleton`.

    Yields:
        ``(checkpoint, model)`` with the model in eval mode holding that checkpoint's weights.

    Raises:
        CheckpointNotFoundError / CorruptCheckpointError: naming the failing step.
    """
    cps = list(series)
    if not cps:
        return
    folders = {}

    def folder_of(cp: Checkpoint) -> Path:
        if cp.step not in folders:
            folders[cp.step] = series.local_path(cp)
        return folders[cp.step]

    if model is None:
        model = build_skeleton(folder_of(cps[0]), attn_implementation=attn_implementation)
    model_type = getattr(model.config, "model_type", None)
    pool = ThreadPoolExecutor(max_workers=1) if prefetch else None
    try:
        pending: Future | None = None
        if pool is not None:
            pending = pool.submit(read_state_dict, folder_of(cps[0]), cps[0].step)
        for i, cp in enumerate(cps):
            if pool is not None:
                sd = pending.result()  # type: ignore[union-attr]
                if i + 1 < len(cps):
                    pending = pool.submit(read_state_dict, folder_of(cps[i + 1]), cps[i + 1].step)
            else:
                sd = read_state_dict(folder_of(cp), cp.step)
            cfg_path = Path(folder_of(cp)) / "config.json"
            if model_type and cfg_path.is_file():
                mt = json.loads(cfg_path.read_text()).get("model_type")
                if mt and mt != model_type:
                    raise CorruptCheckpointError(
                        f"checkpoint at step {cp.step}: model_type {mt!r} differs from the skeleton's "
                        f"{model_type!r}; sweep one architecture at a time"
                    )
            load_weights_into(model, sd, cp.step)
            model.eval()
            yield cp, model
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
