"""Architecture adapters: one small table entry per model family.

An adapter names, for a Hugging Face causal LM, the modules the toolkit needs (the attention
output projection whose *input* holds the per-head outputs, the pre-attention norm, the final norm,
embedding and unembedding) and extracts per-head OV weights:

* ``W_V[h]``: ``[d_model, d_head]`` so that ``v_h = x_norm @ W_V[h] + b_V[h]``;
* ``W_O[h]``: ``[d_head, d_model]`` so that ``attn_out = sum_h z_h @ W_O[h] + b_O``,
  where ``z_h = A_h v_h`` is slice ``h*d_head:(h+1)*d_head`` of the o_proj input.

Family quirks handled here: GPT-2's ``Conv1D`` stores weights as ``[in, out]`` (so no transpose),
GPT-NeoX fuses Q, K, V per head (``[n_heads, 3, d_head]`` along the output dimension), and
grouped-query attention (Llama-family, e.g. SmolLM2) shares one value head between
``n_heads // n_kv_heads`` query heads.

Adding a family means adding one :class:`FamilySpec` to :data:`FAMILIES` (module paths and a
value-weight layout) and, if its layout is new, one branch in :meth:`ArchAdapter.W_V`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from ablate.model.errors import UnknownArchitectureError


@dataclass(frozen=True)
class FamilySpec:
    """Where a family keeps its modules. ``{l}`` in a path is the layer index."""

    name: str
    layers: str  # path of the ModuleList of blocks
    attn: str  # attention module, relative to a block
    o_proj: str  # attention output projection, relative to a block
    ln_attn: str  # norm applied to the residual stream before attention, relative to a block
    final_norm: str
    embed: str
    unembed: str
    value_layout: str  # "gpt2_conv1d" | "neox_fused" | "separate_v"
    o_proj_layout: str  # "conv1d" ([in, out]) | "linear" ([out, in])
    norm_kind: str  # "layernorm" | "rmsnorm"


_LLAMA_LIKE = dict(
    layers="model.layers",
    attn="self_attn",
    o_proj="self_attn.o_proj",
    ln_attn="input_layernorm",
    final_norm="model.norm",
    embed="model.embed_tokens",
    unembed="lm_head",
    value_layout="separate_v",
    o_proj_layout="linear",
    norm_kind="rmsnorm",
)

#: model_type (from ``config.model_type``) -> where that family keeps its modules.
FAMILIES: dict[str, FamilySpec] = {
    "gpt2": FamilySpec(
        name="gpt2",
        layers="transformer.h",
        attn="attn",
        o_proj="attn.c_proj",
        ln_attn="ln_1",
        final_norm="transformer.ln_f",
        embed="transformer.wte",
        unembed="lm_head",
        value_layout="gpt2_conv1d",
        o_proj_layout="conv1d",
        norm_kind="layernorm",
    ),
    "gpt_neox": FamilySpec(
        name="gpt_neox",
        layers="gpt_neox.layers",
        attn="attention",
        o_proj="attention.dense",
        ln_attn="input_layernorm",
        final_norm="gpt_neox.final_layer_norm",
        embed="gpt_neox.embed_in",
        unembed="lm_head",  # "embed_out" before transformers 5; unembed() falls back to get_output_embeddings()
        value_layout="neox_fused",
        o_proj_layout="linear",
        norm_kind="layernorm",
    ),
    "llama": FamilySpec(name="llama", **_LLAMA_LIKE),
    "mistral": FamilySpec(name="mistral", **_LLAMA_LIKE),
    "qwen2": FamilySpec(name="qwen2", **_LLAMA_LIKE),
    "olmo2": FamilySpec(name="olmo2", **_LLAMA_LIKE),
}

_HOW_TO_ADD = (
    "To add a family, append a FamilySpec to ablate.model.adapters.FAMILIES naming its attention "
    "output projection, pre-attention norm, final norm, embedding and unembedding modules, and its "
    "value-weight layout (see the module docstring)."
)


def module_at(root: Any, path: str) -> Any:
    """The sub-module at dotted ``path`` ("model.layers.3.self_attn.o_proj") of ``root``: a torch
    module or an nnsight envoy (the one path walk of the toolkit)."""
    obj = root
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


class ArchAdapter:
    """Family-independent view of a causal LM's attention heads.

    Args:
        model: a Hugging Face ``*ForCausalLM`` module.

    Raises:
        UnknownArchitectureError: the model's ``config.model_type`` has no entry in :data:`FAMILIES`.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        cfg = model.config
        family = getattr(cfg, "model_type", None)
        if family not in FAMILIES:
            raise UnknownArchitectureError(
                f"no architecture adapter for model_type={family!r} ({type(model).__name__}); "
                f"supported families: {', '.join(sorted(FAMILIES))}. {_HOW_TO_ADD}"
            )
        self.model = model
        self.spec = FAMILIES[family]
        self.family = family
        self.n_layers = int(_first(cfg, "num_hidden_layers", "n_layer"))
        self.n_heads = int(_first(cfg, "num_attention_heads", "n_head"))
        kv = getattr(cfg, "num_key_value_heads", None)
        self.n_kv_heads = int(kv) if kv else self.n_heads
        self.d_model = int(_first(cfg, "hidden_size", "n_embd"))
        hd = getattr(cfg, "head_dim", None)
        self.head_dim = int(hd) if hd else self.d_model // self.n_heads
        self.vocab_size = int(cfg.vocab_size)
        if self.n_heads % self.n_kv_heads:
            raise UnknownArchitectureError(
                f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}"
            )

    # ---- module access -------------------------------------------------------------------
    def block(self, layer: int) -> torch.nn.Module:
        return module_at(self.model, self.spec.layers)[layer]

    def attn(self, layer: int) -> torch.nn.Module:
        return module_at(self.block(layer), self.spec.attn)

    def o_proj(self, layer: int) -> torch.nn.Module:
        """The attention output projection; its *input* is the concatenation of head outputs."""
        return module_at(self.block(layer), self.spec.o_proj)

    def ln_attn(self, layer: int) -> torch.nn.Module:
        return module_at(self.block(layer), self.spec.ln_attn)

    def final_norm(self) -> torch.nn.Module:
        return module_at(self.model, self.spec.final_norm)

    def embed(self) -> torch.nn.Module:
        return module_at(self.model, self.spec.embed)

    def unembed(self) -> torch.nn.Module:
        try:
            return module_at(self.model, self.spec.unembed)
        except AttributeError:
            out = self.model.get_output_embeddings()
            if out is None:
                raise UnknownArchitectureError(
                    f"{self.family}: no unembedding at {self.spec.unembed!r} and get_output_embeddings() is None"
                ) from None
            return out

    def unembed_path(self) -> str:
        """Dotted path of the unembedding module (the spec's, or the one ``get_output_embeddings``
        returns when the spec's path does not exist in this ``transformers`` version)."""
        u = self.unembed()
        return next(n for n, m in self.model.named_modules() if m is u)

    def module_path(self, kind: str, layer: int | None = None) -> str:
        """Dotted path of a module ("o_proj", "attn", "ln_attn", "block") as nnsight/envoys see it."""
        if kind == "block":
            return f"{self.spec.layers}.{layer}"
        rel = getattr(self.spec, kind)
        return f"{self.spec.layers}.{layer}.{rel}"

    def kv_head(self, head: int) -> int:
        """The key/value head a query head reads (GQA: ``head // (n_heads // n_kv_heads)``)."""
        return head // (self.n_heads // self.n_kv_heads)

    # ---- weights -------------------------------------------------------------------------
    @property
    def W_E(self) -> Float[Tensor, "vocab d_model"]:
        """Token embedding ``[vocab, d_model]``."""
        return self.embed().weight

    @property
    def W_U(self) -> Float[Tensor, "d_model vocab"]:
        """Unembedding ``[d_model, vocab]`` (transpose of the LM head's weight)."""
        return self.unembed().weight.T

    @property
    def b_U(self) -> torch.Tensor | None:
        return getattr(self.unembed(), "bias", None)

    def W_V(self, layer: int) -> Float[Tensor, "n_heads d_model d_head"]:
        """Per-head value weights ``[n_heads, d_model, d_head]`` (GQA heads share their KV head)."""
        attn = self.attn(layer)
        H, D, dh = self.n_heads, self.d_model, self.head_dim
        layout = self.spec.value_layout
        if layout == "gpt2_conv1d":
            w = attn.c_attn.weight[:, 2 * D : 3 * D]  # Conv1D: [in, out]
            return w.reshape(D, H, dh).permute(1, 0, 2)
        if layout == "neox_fused":
            w = attn.query_key_value.weight  # Linear: [out = H*3*dh, in = D]
            w = w.reshape(H, 3, dh, D)[:, 2]  # [H, dh, D]
            return w.transpose(1, 2)
        if layout == "separate_v":
            w = attn.v_proj.weight.reshape(self.n_kv_heads, dh, D).transpose(1, 2)  # [kv, D, dh]
            idx = torch.tensor([self.kv_head(h) for h in range(H)])
            return w[idx]
        raise UnknownArchitectureError(f"unknown value layout {layout!r} for family {self.family}")

    def b_V(self, layer: int) -> Float[Tensor, "n_heads d_head"]:
        """Per-head value biases ``[n_heads, d_head]`` (zeros when the family has none)."""
        attn = self.attn(layer)
        H, D, dh = self.n_heads, self.d_model, self.head_dim
        layout = self.spec.value_layout
        ref = self.W_V(layer)
        if layout == "gpt2_conv1d":
            return attn.c_attn.bias[2 * D : 3 * D].reshape(H, dh)
        if layout == "neox_fused":
            b = attn.query_key_value.bias
            if b is None:
                return ref.new_zeros(H, dh)
            return b.reshape(H, 3, dh)[:, 2]
        b = getattr(attn.v_proj, "bias", None)
        if b is None:
            return ref.new_zeros(H, dh)
        b = b.reshape(self.n_kv_heads, dh)
        return b[torch.tensor([self.kv_head(h) for h in range(H)])]

    def W_O(self, layer: int) -> Float[Tensor, "n_heads d_head d_model"]:
        """Per-head output weights ``[n_heads, d_head, d_model]``."""
        o = self.o_proj(layer)
        H, dh = self.n_heads, self.head_dim
        if self.spec.o_proj_layout == "conv1d":
            w = o.weight  # [in = H*dh, out = D]
        else:
            w = o.weight.T  # Linear [out, in] -> [in, out]
        return w.reshape(H, dh, -1)

    def b_O(self, layer: int) -> Float[Tensor, "d_model"]:
        """Output-projection bias ``[d_model]`` (zeros when absent)."""
        o = self.o_proj(layer)
        b = getattr(o, "bias", None)
        if b is None:
            return self.W_O(layer).new_zeros(self.d_model)
        return b

    def o_proj_weight_columns(self, layer: int, head: int) -> tuple[torch.Tensor, slice, int]:
        """The raw o_proj weight, the index range of ``head`` and the dim it lives on (for oracles)."""
        o = self.o_proj(layer)
        sl = slice(head * self.head_dim, (head + 1) * self.head_dim)
        dim = 0 if self.spec.o_proj_layout == "conv1d" else 1
        return o.weight, sl, dim

    def describe(self) -> dict:
        return dict(
            family=self.family,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            n_kv_heads=self.n_kv_heads,
            head_dim=self.head_dim,
            d_model=self.d_model,
            vocab_size=self.vocab_size,
            o_proj=self.module_path("o_proj", 0).replace(".0.", ".{l}."),
        )


def _first(cfg, *names):
    for n in names:
        v = getattr(cfg, n, None)
        if v is not None:
            return v
    raise UnknownArchitectureError(f"config {type(cfg).__name__} has none of {names}")
