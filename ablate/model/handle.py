"""The model handle: any Hugging Face causal LM wrapped with nnsight plus its architecture adapter.

Load from a local folder, a hub name + revision (the real path for users with network access), or
a GGUF file::

    from ablate import load_model
    m = load_model("runs/series/step_1000")                 # local HF folder
    m = load_model("EleutherAI/pythia-160m", revision="step3000")  # hub (needs network)
    m = load_model("path/to/model.Q4_1.gguf")              # GGUF, dequantised by transformers
    m = load_model("EleutherAI/pythia-6.9b", revision="step3000", remote=True)  # traces run on NDIF

``ModelHandle.from_hf(model, tokenizer)`` wraps an in-memory model (tests, trainers).
Everything runs under ``torch.inference_mode`` unless asked otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
from jaxtyping import Shaped
from torch import Tensor

from ablate.model.adapters import ArchAdapter
from ablate.model.errors import AblateError, ModelLoadError, NumericalError

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
        #: False: traces run here; True: on NDIF (nnsight ``trace(..., remote=True)``); "local":
        #: nnsight's local simulation of the remote path (serialise, hide local modules, run here)
        self.remote: bool | str = False

    @classmethod
    def from_nnsight(cls, nn_model: Any, *, locator: str, remote: bool | str) -> "ModelHandle":
        """Wrap an nnsight model built from a hub name (weights on the meta device: NDIF holds them)."""
        self = cls.__new__(cls)
        self.adapter = ArchAdapter(nn_model._module)  # the meta-device transformers module
        self.hf = nn_model._module
        self.tokenizer = nn_model.tokenizer
        if self.tokenizer is not None and self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.nn = nn_model
        self.locator = locator
        self.remote = remote
        return self

    def trace_kwargs(self) -> dict:
        """Keyword arguments of every ``handle.nn.trace`` call: ``remote=`` when the model is remote."""
        return {"remote": self.remote} if self.remote else {}

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
        if self.remote is True:  # weights on the meta device; the inputs travel to NDIF from here
            return torch.device("cpu")
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
        if self.remote is True:
            raise NDIFError(
                f"{self.locator}: this step reads attention patterns with a plain forward pass, which the toolkit "
                "does not send to NDIF (head scores, relation index); on NDIF run the ablation with explicit heads "
                "(heads.select = \"explicit\") or score the heads on a local copy first")
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


def encode_many(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """:func:`encode_ids` of every text in one tokenizer call (a fast tokenizer encodes the batch in
    Rust; per-text calls cost ~60 us of Python each, which dominated preparing few-shot prompts)."""
    texts = list(texts)
    if not texts:
        return []
    return [list(x) for x in tokenizer(texts, add_special_tokens=False)["input_ids"]]


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


class NDIFError(AblateError):
    """A remote (NDIF) run cannot start: no network, no API key, or a model NDIF does not serve."""


#: how to give nnsight the NDIF API key (README "On NDIF")
NDIF_KEY_HELP = ("get a key at https://login.ndif.us, then `export NDIF_API_KEY=...` or, once, "
                 "`python -c \"from nnsight import CONFIG; CONFIG.set_default_api_key('...')\"`")


def check_ndif(timeout: float = 5.0) -> str:
    """Fail at once, with one message, when NDIF cannot be reached or no API key is set.

    One HTTP GET of nnsight's configured host (``CONFIG.API.HOST``, env ``NDIF_HOST``) with a
    ``timeout``-second connect and read limit, no retries; returns the host. nnsight's own websocket
    has no connect timeout, so an unreachable host would otherwise hang the first trace.
    """
    import httpx
    from nnsight import CONFIG

    host = CONFIG.API.HOST
    try:
        httpx.get(host, timeout=httpx.Timeout(timeout), follow_redirects=False)
    except httpx.HTTPError as e:
        raise NDIFError(f"NDIF ({host}) is unreachable within {timeout:g} s ({type(e).__name__}: {e}); remote runs "
                        "need the network. Run locally instead (drop --remote), or set NDIF_HOST if your NDIF "
                        "server lives elsewhere") from None
    if not CONFIG.API.APIKEY:
        raise NDIFError(f"NDIF ({host}) needs an API key and none is set: {NDIF_KEY_HELP}")
    return host


def load_remote_model(name: str, *, revision: str | None = None, timeout: float = 5.0,
                      remote: bool | str = True) -> ModelHandle:
    """A hub model whose traces run on NDIF: built on the meta device (config and tokenizer only, no
    weights here), every ``trace`` sent with ``remote=True``. ``remote="local"`` runs nnsight's local
    simulation of the remote path on a real local copy instead (for tests)."""
    p = Path(str(name)).expanduser()
    if remote == "local":  # the same traces through nnsight's serialise / deserialise path, run here
        handle = load_model(name, revision=revision)
        handle.remote = "local"
        return handle
    if remote is True:
        if p.exists() or str(name).endswith(".gguf"):
            raise NDIFError(f"--remote: {name} is a local model; NDIF runs hub models it serves (e.g. "
                            "EleutherAI/pythia-160m with revision step3000), not local files. Drop --remote to run "
                            "it here")
        check_ndif(timeout)
    from nnsight.modeling.transformers import TransformersModel

    kw = {"revision": revision} if revision else {}
    try:
        nn_model = TransformersModel(str(name), task="text-generation", **kw)
    except Exception as e:
        raise NDIFError(f"could not read the config and tokenizer of {name!r}"
                        + (f" at revision {revision!r}" if revision else "")
                        + f" from the hub ({type(e).__name__}: {e}); remote runs need hub access for them") from None
    return ModelHandle.from_nnsight(nn_model, locator=str(name) + (f"@{revision}" if revision else ""),
                                    remote=remote)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def load_model(locator: str | os.PathLike, *, revision: str | None = None, gguf_file: str | None = None,
               dtype: Any = "float32", device: str = "cpu", eager: bool = True,
               tokenizer: str | os.PathLike | None = None, remote: bool = False, **kwargs: Any) -> ModelHandle:
    """Load a causal LM into a :class:`ModelHandle`.

    Args:
        locator: a local HF folder, a ``.gguf`` file, or a hub name (``org/name``).
        revision: hub revision (branch, tag such as Pythia's ``step3000``, or commit).
        gguf_file: GGUF file name inside ``locator`` (alternatively pass the file path as locator).
        dtype: ``float32`` (default; needed for exact oracles), ``bfloat16`` or ``float16``.
        device: torch device string.
        eager: use eager attention so attention patterns can be read (needed by head scores).
        tokenizer: where to load the tokenizer from when it is not beside the weights.
        remote: run the traces on NDIF (:func:`load_remote_model`; a hub name, needs the network and
            an API key -- it fails at once, with one message, without them).

    Raises:
        ModelLoadError: the folder is missing or incomplete, the hub is unreachable (offline),
            or the GGUF file cannot be read.
    """
    if remote:
        return load_remote_model(str(locator), revision=revision)
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
