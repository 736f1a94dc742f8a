"""Devices (``--device``, dtypes, the batching rule), the Ray-less ``--executor ray`` message and the
NDIF path: offline it fails at once; nnsight's local simulation of the remote path gives the local
numbers with every condition of a batch in one request."""

import http.server
import importlib.util
import sys
import threading
import time
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from ablate.model import devices
from ablate.model.devices import DeviceError, max_rows, resolve_device, resolve_dtype_name
from ablate.model.handle import NDIFError, check_ndif, load_model

NO_GPU = not torch.cuda.is_available()


# ---- devices ------------------------------------------------------------------------------------

def test_cpu_and_auto_resolve_here():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cpu" if NO_GPU else "cuda")
    assert resolve_dtype_name("auto", "cpu") == "float32"
    with pytest.raises(DeviceError, match="--device .tpu.: not a device"):
        resolve_device("tpu")
    with pytest.raises(DeviceError, match="float32 only"):
        resolve_dtype_name("bf16", "cpu")


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_cuda_without_gpu_is_one_clear_error():
    for d in ("cuda", "cuda:1"):
        with pytest.raises(DeviceError, match=r"no CUDA GPU is visible here .*use --device cpu"):
            resolve_device(d)


def test_gpu_dtype_is_bf16_when_supported(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_dtype_name("auto", "cuda") == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_dtype_name("auto", "cuda:0") == "float16"


def _fake_handle(device, dtype, V=50304, L=12, d=768, H=12):
    return SimpleNamespace(adapter=SimpleNamespace(vocab_size=V, n_layers=L, d_model=d, n_heads=H),
                           device=torch.device(device), dtype=dtype)


def test_batching_rule_by_hand():
    # Pythia-160M's shape in bf16, 256 tokens: per row 256 * (4*50304 + 2*12*(12*768 + 12*256))
    # = 256 * 496128 = 127,008,768 bytes; half of 80 GB free -> floor(4e10 / 127008768) = 314 rows
    h = _fake_handle("cuda", torch.bfloat16)
    assert max_rows(h, 256, 10_000, free_bytes=80 * 10**9) == 314
    assert max_rows(h, 256, 100, free_bytes=80 * 10**9) == 100  # never more than asked
    assert max_rows(h, 256, 100, free_bytes=10**6) == 1  # always at least one row
    # CPU: the old ~64 MB-of-logits cap (2**24 // (T * V)) unless memory is shorter
    c = _fake_handle("cpu", torch.float32)
    assert max_rows(c, 256, 10_000, free_bytes=10**12) == 2**24 // (256 * 50304) == 1
    c = _fake_handle("cpu", torch.float32, V=512)
    assert max_rows(c, 64, 10_000, free_bytes=10**12) == 2**24 // (64 * 512) == 512
    per = devices.bytes_per_row(64, vocab=512, n_layers=12, d_model=768, n_heads=12, elem_bytes=4)
    assert max_rows(c, 64, 10_000, free_bytes=10 * per) == 5


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_run_device_cuda_without_gpu_fails_before_writing(tiny_series, tmp_path):
    from experiments.cli import main

    spec = tmp_path / "s.toml"
    spec.write_text(f'name = "t"\n[series]\npath = "{tiny_series}"\nsteps = [30]\n[heads]\nselect = "explicit"\n'
                    'explicit = ["L1H0"]\ninduction = false\n[icl]\ntasks = ["pd_category_letter"]\nshots = [0]\n'
                    'items = 2\nlr_documents = 2\n')
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["run", str(spec), "--out", str(out), "--device", "cuda", "--no-progress"])
    assert r.exit_code == 1
    assert "--device cuda: no CUDA GPU is visible here" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not out.exists()


def test_executor_ray_without_ray_says_how_to_install(monkeypatch, tmp_path):
    from experiments.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    r = CliRunner().invoke(main, ["run", "sih_ablation", "--out", str(tmp_path / "run"), "--executor", "ray"])
    assert r.exit_code == 1
    assert "pip install 'sih-ablate[ray]'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "run").exists()


# ---- NDIF ---------------------------------------------------------------------------------------

@pytest.fixture
def ndif_host(monkeypatch):
    from nnsight import CONFIG

    def set_host(host, key=None):
        monkeypatch.setattr(CONFIG.API, "HOST", host)
        monkeypatch.setattr(CONFIG.API, "APIKEY", key)
    return set_host


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed once the socket is: connections are refused


def test_ndif_offline_fails_at_once(ndif_host):
    ndif_host(f"http://127.0.0.1:{_closed_port()}", key="k")
    t = time.perf_counter()
    with pytest.raises(NDIFError, match=r"unreachable within 1 s .*drop --remote"):
        check_ndif(timeout=1.0)
    # a hub name with remote=True: the same message, before any hub or websocket call
    with pytest.raises(NDIFError, match="unreachable"):
        load_model("EleutherAI/pythia-160m", revision="step3000", remote=True)
    assert time.perf_counter() - t < 5


def test_ndif_silent_host_times_out_in_the_limit(ndif_host):
    import socket

    silent = socket.socket()  # listens (the kernel completes the connection) but never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        ndif_host(f"http://127.0.0.1:{silent.getsockname()[1]}", key="k")
        t = time.perf_counter()
        with pytest.raises(NDIFError, match="unreachable within 1 s"):
            check_ndif(timeout=1.0)
        assert time.perf_counter() - t < 3  # no retry loop: one attempt, one limit
    finally:
        silent.close()


def test_ndif_without_api_key_says_how_to_set_it(ndif_host):
    srv = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)  # answers 501
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        ndif_host(f"http://127.0.0.1:{srv.server_port}", key=None)
        with pytest.raises(NDIFError, match=r"API key .*NDIF_API_KEY.*set_default_api_key"):
            check_ndif(timeout=2.0)
        ndif_host(f"http://127.0.0.1:{srv.server_port}", key="k")
        assert check_ndif(timeout=2.0) == f"http://127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()


def test_remote_refuses_local_files(tmp_path):
    with pytest.raises(NDIFError, match="local model"):
        load_model(str(tmp_path), remote=True)


SIMULATION = r"""
import sys, torch, pandas as pd
from ablate import load_model, HeadSet, MeanAblate, ResampleAblate, ZeroAblate, run_conditions
from ablate.icl.metrics import evaluate_items
from ablate.icl.tasks import make_items

h = load_model(sys.argv[1])  # a checkpoint of the tiny series
g = torch.Generator().manual_seed(0)
ids = torch.randint(0, h.adapter.vocab_size, (3, 9), generator=g)
batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
heads = HeadSet.parse("L1H0,L0H1")
conds = [None, ZeroAblate(heads), MeanAblate(heads), ResampleAblate(heads, seed=1)]
local = run_conditions(h, batch, conds, reference=batch, reduce="token_loss", max_rows=2)
calls = []
orig = h.nn.trace
def counting(*a, **kw):
    calls.append(kw.get("remote"))
    return orig(*a, **kw)
h.nn.trace = counting
h.remote = "local"
sim = run_conditions(h, batch, conds, reference=batch, reduce="token_loss")
assert torch.equal(local, sim), (local - sim).abs().max()
# one capture pass per source batch (mean: the reference; resample: the run's own batch) + ONE pass
# for all 4 conditions x 3 rows, each sent the remote way
assert calls == ["local", "local", "local"], calls
h.nn.trace = orig
items = make_items("pd_category_letter", shots=[0, 2], n_items=3)
h.remote = False
a = evaluate_items(h, items, [None, ZeroAblate(heads)])
h.remote = "local"
b = evaluate_items(h, items, [None, ZeroAblate(heads)])
pd.testing.assert_frame_equal(a, b)
print("SIMULATED OK")
"""


def test_remote_path_simulated_equals_local_in_one_request(tiny_series):
    """nnsight's ``remote="local"`` serialises each trace as for NDIF (local modules hidden) and runs
    it here: the interventions survive the trip (same numbers) and a batch's conditions go in one
    request. In a plain interpreter: pytest's jaxtyping import hook breaks nnsight's module hiding."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-c", SIMULATION, str(tiny_series / "step_30")], capture_output=True, text=True, cwd=root, timeout=300,
                       env=dict(os.environ, PYTHONPATH=str(root)))
    assert r.returncode == 0 and "SIMULATED OK" in r.stdout, r.stderr[-3000:]


def test_run_remote_refuses_scored_specs(tiny_series, tmp_path):
    from experiments.runner import run_spec
    from experiments.spec import spec_from_dict

    d = {"name": "t", "series": {"path": str(tiny_series), "steps": [30]},
         "heads": {"select": "explicit", "explicit": ["L1H0"], "induction": True},
         "icl": {"tasks": ["pd_category_letter"], "shots": [0], "items": 2, "lr_documents": 2}}
    with pytest.raises(NDIFError, match="scores heads"):
        run_spec(spec_from_dict(d, "t.toml"), tmp_path / "run", progress=False, remote=True)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")
def test_unreachable_ray_head_is_one_message_at_once():
    from ablate.model.errors import AblateError
    from experiments.ray_executor import RayExecutor

    t = time.perf_counter()
    with pytest.raises(AblateError, match=r"--address 127\.0\.0\.1:\d+: no Ray head answers there"):
        RayExecutor(address=f"127.0.0.1:{_closed_port()}").start()
    with pytest.raises(AblateError, match="give HOST:PORT"):
        RayExecutor(address="nohostport").start()
    assert time.perf_counter() - t < 6  # ray.init alone retries such an address for minutes


def test_run_remote_offline_is_one_message(ndif_host, tmp_path):
    from experiments.cli import main

    ndif_host(f"http://127.0.0.1:{_closed_port()}", key="k")
    spec = tmp_path / "s.toml"
    spec.write_text('name = "t"\n[series]\nmodel = "EleutherAI/pythia-160m"\nrevision = "step3000"\n[heads]\n'
                    'select = "explicit"\nexplicit = ["L3H5"]\ninduction = false\n[icl]\n'
                    'tasks = ["pd_category_letter"]\nshots = [0]\nitems = 2\nlr_documents = 2\n')
    t = time.perf_counter()
    r = CliRunner().invoke(main, ["run", str(spec), "--out", str(tmp_path / "run"), "--remote", "--no-progress"])
    assert r.exit_code == 1, r.output
    assert "unreachable" in r.output and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert time.perf_counter() - t < 10 and not (tmp_path / "run").exists()


def test_remote_handle_holds_no_weights_and_sends_cpu_inputs(tiny_series):
    """What ``load_model(NAME, remote=True)`` builds, from a local folder (no hub here): nnsight's
    meta-device model (no weights loaded), the toolkit's adapter over it, CPU inputs for the request."""
    from nnsight.modeling.transformers import TransformersModel
    from transformers import AutoTokenizer

    from ablate.model.handle import ModelHandle

    nn_model = TransformersModel(str(tiny_series / "step_30"), task="text-generation",
                                 tokenizer=AutoTokenizer.from_pretrained(tiny_series / "tokenizer"))
    h = ModelHandle.from_nnsight(nn_model, locator="tiny@step_30", remote=True)
    assert {p.device.type for p in h.hf.parameters()} == {"meta"}
    assert (h.n_layers, h.n_heads) == (2, 2) and h.trace_kwargs() == {"remote": True}
    assert h.encode(["the cat"])["input_ids"].device.type == "cpu"
    with pytest.raises(NDIFError, match="plain forward pass"):
        h.forward(h.encode(["the cat"]))


REMOTE_RUN = r"""
import sys, pandas as pd, time
from experiments.runner import run_spec
from experiments.spec import spec_from_dict
series, out = sys.argv[1], sys.argv[2]
from nnsight.intervention.backends.local import LocalSimulationBackend
sent = []
_call = LocalSimulationBackend.__call__
def counting(self, tracer):
    sent.append(1)
    return _call(self, tracer)
LocalSimulationBackend.__call__ = counting
d = {"name": "t", "seed": 3, "series": {"path": series, "steps": [30]},
     "heads": {"select": "explicit", "explicit": ["L1H0,L0H1"], "induction": False},
     "controls": {"random_sets": 2}, "operators": {"primary": "mean", "robustness": ["zero", "resample"]},
     "icl": {"tasks": ["pd_category_letter"], "shots": [0, 2], "items": 4, "lr_documents": 3}}
t = time.perf_counter()
a = run_spec(spec_from_dict(d, "t.toml"), out + "/local", progress=False)
t1 = time.perf_counter()
assert not sent  # the local run sends nothing
b = run_spec(spec_from_dict(d, "t.toml"), out + "/sim", progress=False, remote="local")
t2 = time.perf_counter()
assert a.cells_failed == 0 and b.cells_failed == 0, (a.failed, b.failed)
for tb in ("results", "raw_icl", "raw_lr"):
    pd.testing.assert_frame_equal(pd.read_parquet(f"{out}/local/{tb}.parquet"), pd.read_parquet(f"{out}/sim/{tb}.parquet"))
assert len(sent) >= b.cells_done - 1, len(sent)  # every intervention cell went the remote way
print("simulated requests", len(sent))
print("REMOTE-SIM RUN EQUAL", a.cells_done, f"{t1-t:.1f}s local, {t2-t1:.1f}s simulated")
"""


def test_run_remote_simulated_equals_local_run(tiny_series, tmp_path):
    """``run_spec(..., remote="local")``: every cell's traces go through nnsight's serialisation for
    NDIF (Plan.load -> load_remote_model -> trace(remote=...)); the tables equal the local run's."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-c", REMOTE_RUN, str(tiny_series), str(tmp_path)], capture_output=True,
                       text=True, cwd=root, timeout=300, env=dict(os.environ, PYTHONPATH=str(root)))
    assert r.returncode == 0 and "REMOTE-SIM RUN EQUAL 9" in r.stdout, r.stderr[-3000:]
