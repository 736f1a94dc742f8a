"""TransformerLens as an independent implementation of head ablation: the same random Llama copied
into a HookedTransformer computes the same logits, and zeroing heads through its ``hook_z`` gives the
same logits as the toolkit's nnsight interventions (per-head loop and shared-prefix sweep)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformer_lens", reason="the [bench] extra (setup.sh installs it)")

from ablate.intervene.benchmark import bench_model  # noqa: E402
from ablate.intervene.engine import run_intervention  # noqa: E402
from ablate.intervene.operators import Condition, ZeroAblate  # noqa: E402
from ablate.intervene.sweep import head_sweep, single_heads  # noqa: E402
from ablate.intervene.tl_compare import run_tl, tl_head_sweep, to_hooked_transformer  # noqa: E402
from ablate.model.heads import HeadSet  # noqa: E402


@pytest.fixture(scope="module")
def pair():
    torch.set_num_threads(1)
    h = bench_model(d_model=64, n_layers=3, n_heads=4, vocab=600)
    return h, to_hooked_transformer(h)


def test_same_function_and_same_ablations(pair):
    h, tl = pair
    ids = torch.randint(4, h.adapter.vocab_size, (3, 40), generator=torch.Generator().manual_seed(1))
    b = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        clean = run_intervention(h, b, None, reduce="last_logits")
        assert (tl(ids)[:, -1] - clean).abs().max() < 1e-4
    sets = [*single_heads(h), HeadSet.parse("L0H1,L2H3"), HeadSet.parse("L1H0,L1H2")]
    ref = tl_head_sweep(tl, ids, sets)
    ours = head_sweep(h, b, sets, "zero", reduce="last_logits")
    loop = torch.stack([run_intervention(h, b, Condition(str(s), (ZeroAblate(s),)), reduce="last_logits")
                        for s in sets])
    assert (ours - ref).abs().max() < 1e-4 and (loop - ref).abs().max() < 1e-4
    # and the ablations do something (a test that could not fail would compare clean with clean)
    assert (ref - clean).abs().amax(dim=(1, 2)).min() > 1e-3


def test_bench_prints_the_comparison():
    lines = []
    r = run_tl(threads=1, repeats=1, rows=2, seq=32, print_fn=lines.append)
    assert r["max_abs_diff"] < 1e-4 and r["tl_s"] > 0 and r["shared_s"] > 0
    assert any("TransformerLens (hook_z" in x for x in lines) and "load average" in lines[0]
