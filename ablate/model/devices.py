"""Where a model runs: ``--device auto|cpu|cuda[:N]``, its dtype, and batch sizes from free memory.

* :func:`resolve_device` -- ``auto`` is ``cuda`` when torch sees a CUDA GPU, else ``cpu``; ``cuda``
  (or ``cuda:N``) without such a GPU is one clear error (:class:`DeviceError`);
* :func:`default_dtype` -- fp32 on the CPU (the exact oracles of the tests are fp32), bf16 on a GPU
  that supports it, fp16 on an older GPU;
* :func:`max_rows` -- rows per traced forward pass (the batching rule, README "Scaling"):

  - the forward of one row of ``T`` tokens keeps about
    ``bytes_per_row = T * (4 * V + e * L * (c * d_model + H * T))`` bytes alive: the fp32 logits
    (``4 V`` per token), and per layer ``c = 12`` activations of width ``d_model`` plus the
    ``H x T`` eager attention pattern, at ``e`` bytes per element of the model's dtype;
  - on a GPU: ``rows = floor(0.5 * free_bytes / bytes_per_row)`` with ``free_bytes`` from
    ``torch.cuda.mem_get_info`` (half the free memory, the rest headroom for the allocator and the
    captured head outputs);
  - on the CPU: the same rule on ``MemAvailable`` of ``/proc/meminfo``, but never above the rows
    that keep a chunk's logits near 64 MB (bigger chunks only add memory traffic on a CPU; this
    was the toolkit's only rule before, so CPU results are unchanged);
  - always at least 1 row and at most the rows asked for.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ablate.model.errors import AblateError


class DeviceError(AblateError):
    """A device or dtype that this machine cannot provide."""


#: activations of width d_model kept per layer and token (residual, attention in/out, MLP 4x, norms)
ACTS_PER_LAYER = 12
#: fraction of the free memory one forward pass may use
MEMORY_FRACTION = 0.5
#: CPU cap: logits per chunk near 64 MB (fp32)
CPU_LOGIT_ELEMENTS = 2**24


def cuda_count() -> int:
    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken driver reads as no GPU
        return 0


def resolve_device(device: str | None) -> str:
    """``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` -> a torch device string this machine has."""
    d = (device or "auto").strip().lower()
    if d == "auto":
        return "cuda" if cuda_count() else "cpu"
    if d == "cpu":
        return "cpu"
    if d == "cuda" or d.startswith("cuda:"):
        n = cuda_count()
        if n == 0:
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise DeviceError(f"--device {device}: no CUDA GPU is visible here (torch {torch.__version__} is {build}, "
                              "torch.cuda.is_available() is False); use --device cpu, or --device auto to take a "
                              "GPU when there is one")
        if d.startswith("cuda:"):
            idx = d.split(":", 1)[1]
            if not idx.isdigit() or int(idx) >= n:
                raise DeviceError(f"--device {device}: this machine has {n} CUDA GPU(s) (cuda:0 .. cuda:{n - 1})")
        return d
    raise DeviceError(f"--device {device!r}: not a device; use auto, cpu, cuda or cuda:N")


def default_dtype(device: str) -> str:
    """fp32 on the CPU; bf16 on a GPU that supports it, else fp16."""
    if not str(device).startswith("cuda"):
        return "float32"
    try:
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    except Exception:
        return "float16"


def resolve_dtype_name(dtype: str | None, device: str) -> str:
    """``auto`` (or None) -> :func:`default_dtype`; otherwise the name, checked."""
    from ablate.model.handle import _DTYPES

    if dtype in (None, "", "auto"):
        return default_dtype(device)
    if dtype not in _DTYPES:
        raise DeviceError(f"--dtype {dtype!r}: use auto, {', '.join(sorted(_DTYPES))}")
    name = str(_DTYPES[dtype]).replace("torch.", "")
    if name != "float32" and not str(device).startswith("cuda"):
        raise DeviceError(f"--dtype {dtype}: on the CPU the toolkit runs float32 only (half precision on a CPU "
                          "is slower and breaks the fp32 oracles); use --dtype auto or float32")
    return name


def free_memory_bytes(device: str | torch.device) -> int | None:
    """Free memory of ``device`` in bytes (None: unknown)."""
    d = torch.device(device)
    if d.type == "cuda":
        try:
            free, _total = torch.cuda.mem_get_info(d)
            return int(free)
        except Exception:
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def bytes_per_row(T: int, *, vocab: int, n_layers: int, d_model: int, n_heads: int, elem_bytes: int) -> int:
    """Memory one row of ``T`` tokens keeps alive in a forward pass (see the module docstring)."""
    return int(T * (4 * vocab + elem_bytes * n_layers * (ACTS_PER_LAYER * d_model + n_heads * T)))


def max_rows(handle: Any, T: int, wanted: int, *, free_bytes: int | None = None) -> int:
    """Rows per forward pass for a batch of ``wanted`` rows of ``T`` tokens on ``handle``'s device."""
    a = handle.adapter
    dev = handle.device
    elem = torch.finfo(handle.dtype).bits // 8 if handle.dtype.is_floating_point else 4
    per = bytes_per_row(T, vocab=a.vocab_size, n_layers=a.n_layers, d_model=a.d_model, n_heads=a.n_heads,
                        elem_bytes=elem)
    free = free_memory_bytes(dev) if free_bytes is None else free_bytes
    by_memory = wanted if free is None else int(MEMORY_FRACTION * free // max(1, per))
    rows = by_memory
    if torch.device(dev).type != "cuda":
        rows = min(rows, int(CPU_LOGIT_ELEMENTS // max(1, T * a.vocab_size)))
    return max(1, min(wanted, rows))


def worker_threads(default: int = 1) -> int:
    """Torch threads for a worker: ``OMP_NUM_THREADS`` when set, else ``default``."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", default)))
    except ValueError:
        return default
