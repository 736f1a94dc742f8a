"""The model handle: any Hugging Face causal LM wrapped with nnsight plus its architecture adapter.

Load from a local folder, a hub name + revision (the real path for users with network access), or
a GGUF file::

    from ablate import load_model
    m = load_model("runs/series/step_1000")                 # local HF folder
    m = load_model("EleutherAI/pythia-160m", revision="step3000")  # hub (needs network)
    m = load_model("path/to/model.Q4_1.gguf")              # GGUF, dequantised by transformers

``ModelHandle.from_hf(model, tokenizer)`` wraps an in-memory model (tests, trainers).
Everything runs under ``torch.inference_mode`` unless asked otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Shaped
from torch import Tensor

from ablate.model.adapters import ArchAdapter
from ablate.model.errors import ModelLoadError, NumericalError

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
           "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def _resolve_dtype(dtype: Any) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


class ModelHandle:
    """A causal LM, its tokenizer, its nnsight wrapper and its architecture adapter.

    Attributes:
        hf: the underlying ``transformers`` module (eval mode).
        nn: the nnsight ``TransformersModel`` wrapping ``hf`` (used for interventions).
        tokenizer: the model's tokenizer.
        adapter: the :class:`~ablate.model.adapters.ArchAdapter` for its family.
        locator: where it was loaded from (for manifests).
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, locator: str = "<in-memory>") -> None:
        from nnsight.modeling.transformers import TransformersModel

        self.adapter = ArchAdapter(model)  # fails early for unknown families
        model.eval()
        self.hf = model
        self.tokenizer = tokenizer
        if tokenizer is not None and tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        self.nn = TransformersModel(model, task="text-generation", tokenizer=tokenizer)
        self.locator = locator

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def from_hf(cls, model: torch.nn.Module, tokenizer: Any, *, eager: bool = True,
                locator: str = "<in-memory>") -> "ModelHandle":
        """Wrap an in-memory model; ``eager=True`` switches to eager attention (patterns readable)."""
        if eager:
            set_attn_implementation(model, "eager")
        return cls(model, tokenizer, locator=locator)

    # ---- convenience ---------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf.parameters()).dtype

    @property
    def n_layers(self) -> int:
        return self.adapter.n_layers

    @property
    def n_heads(self) -> int:
        return self.adapter.n_heads

    def encode(self, texts: list[str], *, add_bos: bool = False, padding_side: str = "left",
               max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Tokenise ``texts`` into a padded batch ``{"input_ids", "attention_mask"}``."""
        tok = self.tokenizer
        ids = [encode_ids(tok, t) for t in texts]
        if add_bos:
            if tok.bos_token_id is None:
                raise ModelLoadError("add_bos=True but the tokenizer has no BOS token")
            ids = [[tok.bos_token_id] + x for x in ids]
        if max_length is not None:
            ids = [x[:max_length] for x in ids]
        return pad_batch(ids, tok.pad_token_id, padding_side=padding_side, device=self.device)

    def forward(self, batch: dict[str, torch.Tensor], *, output_attentions: bool = False) -> Any:
        """Plain HF forward (no intervention) under inference mode, with NaN checking."""
        with torch.inference_mode():
            out = self.hf(**prepare_inputs(batch), output_attentions=output_attentions)
        check_finite(out.logits, "logits of the clean forward pass")
        return out

    def describe(self) -> dict:
        d = self.adapter.describe()
        d["locator"] = self.locator
        d["dtype"] = str(self.dtype).replace("torch.", "")
        return d

    def __repr__(self) -> str:
        a = self.adapter
        return (f"ModelHandle({self.locator!r}, family={a.family}, layers={a.n_layers}, "
                f"heads={a.n_heads} (kv {a.n_kv_heads}), d_head={a.head_dim})")


def set_attn_implementation(model: torch.nn.Module, impl: str) -> None:
    """Switch attention implementation in place (eager is needed to read attention patterns)."""
    if hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation(impl)
            return
        except Exception:  # pragma: no cover - older transformers
            pass
    model.config._attn_implementation = impl


def encode_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens (the one prompt encoder; BOS is added by callers)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def pad_batch(ids: list[list[int]], pad_id: int, *, padding_side: str = "left",
              device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Pad lists of token ids into ``input_ids`` / ``attention_mask`` tensors ``[batch, seq]``."""
    if not ids:
        raise ValueError("pad_batch got an empty list of sequences")
    T = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), T), dtype=torch.long)
    for i, x in enumerate(ids):
        if padding_side == "left":
            input_ids[i, T - len(x):] = torch.tensor(x, dtype=torch.long)
            mask[i, T - len(x):] = 1
        else:
            input_ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
            mask[i, : len(x)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}


def prepare_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add ``position_ids`` derived from the attention mask so left padding is handled correctly.

    Position of token t in row b = (number of real tokens before it); padded slots get position 0.
    """
    out = dict(batch)
    mask = out.get("attention_mask")
    if mask is None:
        out["attention_mask"] = torch.ones_like(out["input_ids"])
        mask = out["attention_mask"]
    if "position_ids" not in out:
        pos = mask.long().cumsum(-1) - 1
        out["position_ids"] = pos.clamp(min=0)
    return out


def check_finite(t: Shaped[Tensor, "..."], what: str) -> None:
    if not torch.isfinite(t).all():
        n = (~torch.isfinite(t)).sum().item()
        raise NumericalError(
            f"{n} non-finite values in {what}; check the dtype (fp16 overflow? try dtype='float32') "
            "and the checkpoint's weights"
        )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def load_model(locator: str | os.PathLike, *, revision: str | None = None, gguf_file: str | None = None,
               dtype: Any = "float32", device: str = "cpu", eager: bool = True,
               tokenizer: str | os.PathLike | None = None, **kwargs: Any) -> ModelHandle:
    """Load a causal LM into a :class:`ModelHandle`.

    Args:
        locator: a local HF folder, a ``.gguf`` file, or a hub name (``org/name``).
        revision: hub revision (branch, tag such as Pythia's ``step3000``, or commit).
        gguf_file: GGUF file name inside ``locator`` (alternatively pass the file path as locator).
        dtype: ``float32`` (default; needed for exact oracles), ``bfloat16`` or ``float16``.
        device: torch device string.
        eager: use eager attention so attention patterns can be read (needed by head scores).
        tokenizer: where to load the tokenizer from when it is not beside the weights.

    Raises:
        ModelLoadError: the folder is missing or incomplete, the hub is unreachable (offline),
            or the GGUF file cannot be read.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loc = str(locator)
    path = Path(loc).expanduser()
    load_kw: dict[str, Any] = dict(dtype=_resolve_dtype(dtype), **kwargs)
    if eager:
        load_kw["attn_implementation"] = "eager"
    tok_src = str(tokenizer) if tokenizer is not None else None
    if path.suffix == ".gguf" or gguf_file is not None:
        if path.suffix == ".gguf":
            if not path.is_file():
                raise ModelLoadError(f"GGUF file not found: {path}")
            folder, gguf_file = str(path.parent), path.name
        else:
            folder = loc
        load_kw["gguf_file"] = gguf_file
        src = folder
        tok_kw = dict(gguf_file=gguf_file) if tok_src is None else {}
        local = True
    elif path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path} is a file, not a model folder; pass the folder holding config.json")
        if not (path / "config.json").exists():
            raise ModelLoadError(
                f"{path} has no config.json: not a Hugging Face model folder (save one with "
                "model.save_pretrained(folder) and tokenizer.save_pretrained(folder))"
            )
        src, tok_kw, local = str(path), {}, True
    else:
        if loc.startswith((".", "/", "~")) or os.sep in loc and loc.count("/") != 1:
            raise ModelLoadError(f"model folder not found: {path}")
        src, tok_kw, local = loc, {}, False
        if revision is not None:
            load_kw["revision"] = revision
            tok_kw["revision"] = revision
    try:
        model = AutoModelForCausalLM.from_pretrained(src, **load_kw)
        tok = AutoTokenizer.from_pretrained(tok_src or src, **tok_kw)
    except OSError as e:
        if local:
            raise ModelLoadError(f"could not load the model in {src}: {e}") from e
        raise ModelLoadError(
            f"could not fetch {loc!r}" + (f" at revision {revision!r}" if revision else "")
            + f" from the model hub ({'HF_HUB_OFFLINE is set' if _offline() else 'hub unreachable or name unknown'}). "
            "If you are offline, download it elsewhere and pass the local folder instead, e.g. "
            "load_model('/path/to/model_folder')."
        ) from e
    model.to(device)
    name = loc + (f"@{revision}" if revision else "")
    return ModelHandle(model, tok, locator=name)
