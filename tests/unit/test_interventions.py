"""Interventions against independent oracles (weights edited by hand, plain HF forwards)."""

import copy

import pytest
import torch

from ablate.model.errors import HeadIndexError, InterventionError, PositionError
from ablate.model.heads import HeadSet
from ablate.intervene.engine import capture_head_outputs, position_mask, run_conditions
from ablate.intervene.operators import Condition, Intervention, MeanAblate, Patch, ResampleAblate, ZeroAblate
from ablate.model.handle import ModelHandle
from ablate.testing.tiny import tiny_handle

TEXTS = ["the cat sat on the big red house", "a dog ran over the road", "she saw a quick brown fox"]


def _batch(h, padding_side="left"):
    return h.encode(TEXTS, padding_side=padding_side)


def _edited_logits(h, batch, edit):
    """Logits of a deep copy of the model after ``edit(adapter_of_copy)`` changed its weights."""
    m = copy.deepcopy(h.hf)
    hh = ModelHandle.from_hf(m, h.tokenizer)
    with torch.no_grad():
        edit(hh.adapter)
    return hh.forward(batch).logits


def _zero_cols(a, layer, head):
    w, sl, dim = a.o_proj_weight_columns(layer, head)
    if dim == 0:
        w[sl, :] = 0
    else:
        w[:, sl] = 0


def check_zero_ablation_oracle(handle, heads: str) -> torch.Tensor:
    """Assert ZeroAblate(heads) == the model with those heads' o_proj input columns zeroed;
    returns the ablated logits."""
    b = _batch(handle)
    hs = HeadSet.parse(heads)
    got = run_conditions(handle, b, [ZeroAblate(hs)])[0]

    def edit(a):
        for hd in hs:
            _zero_cols(a, hd.layer, hd.head)

    want = _edited_logits(handle, b, edit)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    return got


@pytest.mark.parametrize("heads", ["L0H1", "L1H0,L1H3", "L0H2,L1H1"])
def test_zero_ablation_equals_zeroed_output_weights(handle, heads):
    got = check_zero_ablation_oracle(handle, heads)
    assert not torch.allclose(got, handle.forward(_batch(handle)).logits, atol=1e-4)


def test_mean_ablation_equals_bias_adjustment(handle):
    b = _batch(handle)
    ref = handle.encode(["the dog ate a plum", "a bird saw the tree", "he ran to the car", "it was big"])
    hs = HeadSet.parse("L0H3,L1H1")
    got = run_conditions(handle, b, [MeanAblate(hs)], reference=ref)[0]
    acts = capture_head_outputs(handle, ref, hs.layers())
    m = ref["attention_mask"].bool()

    def edit(a):
        for hd in hs:
            mu = acts[hd.layer][m][:, hd.head].mean(0)  # [dh], independent of the operator's code path
            W_O = a.W_O(hd.layer)[hd.head].clone()  # [dh, d_model]
            _zero_cols(a, hd.layer, hd.head)
            a.o_proj(hd.layer).bias += mu @ W_O

    want = _edited_logits(handle, b, edit)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_patching_every_head_with_itself_is_exactly_clean(handle):
    b = _batch(handle)
    all_heads = HeadSet.all_heads(handle.n_layers, handle.n_heads)
    got = run_conditions(handle, b, [Patch(all_heads)], source=b)[0]
    assert torch.equal(got, handle.forward(b).logits)


def test_patch_from_clean_into_corrupted_moves_towards_clean(handle):
    clean = handle.encode(["the cat sat on the big red house"])
    corrupt = handle.encode(["the dog ran on the big red house"])
    all_heads = HeadSet.all_heads(handle.n_layers, handle.n_heads)
    # the source rows are really written: patching from the clean run changes the corrupted run, and
    # patching the corrupted run with its own activations changes nothing
    got = run_conditions(handle, corrupt, [None, Patch(all_heads)], source=clean)
    assert not torch.equal(got[0], got[1])
    same = run_conditions(handle, corrupt, [None, Patch(all_heads)], source=corrupt)
    assert torch.equal(same[0], same[1])


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_condition_in_batch_equals_condition_alone(handle, padding_side):
    b = _batch(handle, padding_side)
    ref = handle.encode(["the dog ate a plum", "a bird saw the tree"], padding_side=padding_side)
    conds = [
        None,
        ZeroAblate("L0H1,L1H2"),
        MeanAblate("L1H0", positions="last"),
        Condition("two", (ZeroAblate("L0H0"), MeanAblate("L1H3"))),
        ResampleAblate("L0H2,L1H1", seed=3),
        Patch("L1H0,L1H1", positions=(-1, -2)),
        ZeroAblate("L0H3", positions=(2,)),
    ]
    kw = dict(reference=ref, source=handle.encode(TEXTS[::-1], padding_side=padding_side))
    together = run_conditions(handle, b, conds, **kw)
    for k, c in enumerate(conds):
        alone = run_conditions(handle, b, [c], **kw)[0]
        torch.testing.assert_close(together[k], alone, atol=1e-5, rtol=1e-5)
    # chunking rows across several forward passes gives the same numbers
    chunked = run_conditions(handle, b, conds, max_rows=4, **kw)
    torch.testing.assert_close(chunked, together, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together[0], handle.forward(b).logits, atol=1e-5, rtol=1e-5)


def test_positions_last_is_padding_aware():
    h = tiny_handle("llama")
    left = h.encode(TEXTS, padding_side="left")
    right = h.encode(TEXTS, padding_side="right")
    pl = position_mask("last", left["attention_mask"])
    pr = position_mask("last", right["attention_mask"])
    assert pl[:, -1].all() and pl.sum() == 3
    lengths = right["attention_mask"].sum(1)
    assert all(pr[i, lengths[i] - 1] for i in range(3)) and pr.sum() == 3
    # last-position ablation is the same operation whichever side is padded
    a = run_conditions(h, left, [ZeroAblate("L0H1,L1H1", positions="last")], reduce="last_logits")[0]
    r = run_conditions(h, right, [ZeroAblate("L0H1,L1H1", positions="last")], reduce="last_logits")[0]
    torch.testing.assert_close(a, r, atol=1e-5, rtol=1e-5)


def test_last_position_ablation_only_changes_last_position(handle):
    b = handle.encode(TEXTS[:1])
    clean = handle.forward(b).logits
    got = run_conditions(handle, b, [ZeroAblate("L0H0,L1H2", positions="last")])[0]
    torch.testing.assert_close(got[:, :-1], clean[:, :-1], atol=1e-6, rtol=0)
    assert not torch.allclose(got[:, -1], clean[:, -1], atol=1e-4)


def test_resample_is_seeded_and_never_uses_own_row(handle):
    b = _batch(handle, "right")
    c1 = run_conditions(handle, b, [ResampleAblate("L1H0", seed=1)] * 2)
    torch.testing.assert_close(c1[0], c1[1])
    with pytest.raises(InterventionError, match=">= 2 rows"):
        run_conditions(handle, handle.encode(TEXTS[:1]), [ResampleAblate("L1H0")])


def test_reduce_token_loss_matches_hf_loss(handle):
    b = handle.encode(TEXTS[:1])
    loss = run_conditions(handle, b, [None], reduce="token_loss")[0]
    ids = b["input_ids"]
    with torch.no_grad():
        ref = handle.hf(input_ids=ids, labels=ids).loss
    torch.testing.assert_close(loss.mean(), ref, atol=1e-5, rtol=1e-5)


def test_serialisation_roundtrip():
    ivs = [ZeroAblate("L1H2", positions="last"), MeanAblate("L0H0,L2H1", per_position=True),
           ResampleAblate("L3H3", positions=(1, 2), seed=9), Patch("L0H1")]
    for iv in ivs:
        d = iv.to_dict()
        assert Intervention.from_dict(d) == iv
    assert ivs[0].to_dict() == {"kind": "zero", "heads": "L1H2", "positions": "last"}


def test_clear_errors(handle):
    b = _batch(handle)
    T = b["input_ids"].shape[1]
    with pytest.raises(HeadIndexError, match="out of range"):
        run_conditions(handle, b, [ZeroAblate("L9H0")])
    with pytest.raises(HeadIndexError, match="heads"):
        run_conditions(handle, b, [ZeroAblate("L0H7")])
    with pytest.raises(PositionError, match=f"length {T}"):
        run_conditions(handle, b, [ZeroAblate("L0H0", positions=(T + 3,))])
    with pytest.raises(PositionError):
        ZeroAblate("L0H0", positions="first")
    with pytest.raises(InterventionError, match="reference"):
        run_conditions(handle, b, [MeanAblate("L0H0")])
    with pytest.raises(InterventionError, match="source"):
        run_conditions(handle, b, [Patch("L0H0")])
    with pytest.raises(InterventionError, match="rows"):
        run_conditions(handle, b, [Patch("L0H0")], source=handle.encode(TEXTS[:1]))
    with pytest.raises(InterventionError, match="unknown intervention kind"):
        Intervention.from_dict({"kind": "scramble", "heads": "L0H0"})


# ---------------------------------------------------------------------------------------------
# several operators on one layer in one condition, chunk boundaries inside condition blocks:
# checked against an independent oracle (plain HF forward, a pre-hook editing the o_proj input)


def _hooked_logits(h, batch, edits):
    """Logits of a plain HF forward whose o_proj inputs get ``edits`` ``{layer: [(heads, pos [B, T]
    bool, value [B, T, len(heads), dh])]}`` written in order (later edits win where they overlap)."""
    a = h.adapter
    hooks = []

    def make(layer):
        def pre(module, args):
            x = args[0].clone()
            xv = x.view(*x.shape[:2], a.n_heads, a.head_dim)
            for heads, pos, val in edits[layer]:
                for j, hd in enumerate(heads):
                    xv[:, :, hd][pos] = val[:, :, j][pos].to(x.dtype)
            return (x,) + tuple(args[1:])
        return pre

    try:
        for layer in edits:
            hooks.append(a.o_proj(layer).register_forward_pre_hook(make(layer)))
        return h.forward(batch).logits
    finally:
        for hk in hooks:
            hk.remove()


def _pos_mask(spec, mask):
    B, T = mask.shape
    if spec == "all":
        return torch.ones(B, T, dtype=torch.bool)
    out = torch.zeros(B, T, dtype=torch.bool)
    if spec == "last":
        lengths = mask.sum(1)
        for i in range(B):
            # the last real token: the final slot under left padding, length-1 under right padding
            out[i, T - 1 if mask[i, -1] else lengths[i] - 1] = True
        return out
    for p in spec:
        out[:, p] = True
    return out


def _last_values(acts, mask, B):
    """``[B, T, H, dh]`` holding, at every position, row i's activation at its last real token."""
    T = mask.shape[1]
    last = [T - 1 if mask[i, -1] else int(mask[i].sum()) - 1 for i in range(acts.shape[0])]
    v = torch.stack([acts[i, last[i]] for i in range(acts.shape[0])])  # [Bs, H, dh]
    return v[:, None].expand(B, T, *v.shape[1:])


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_mixed_operators_on_one_layer_with_split_chunks_match_hooked_forward(handle, padding_side):
    h = handle
    b = _batch(h, padding_side)
    B, T = b["input_ids"].shape
    m = b["attention_mask"]
    ref = h.encode(["the dog ate a plum", "a bird saw the tree", "he ran to the car", "it was big"],
                   padding_side=padding_side)
    # a source whose rows are all the same: resample then writes row 0's activations whichever row it
    # draws, so the oracle needs no knowledge of the sampler; patch is row-aligned with a real source
    same = {k: v[:1].repeat(B, 1) for k, v in b.items()}
    src = h.encode(TEXTS[::-1], padding_side=padding_side)
    ref_acts = capture_head_outputs(h, ref, [0, 1])
    same_acts = capture_head_outputs(h, same, [0, 1])
    src_acts = capture_head_outputs(h, src, [0, 1])
    rm = ref["attention_mask"].bool()
    zeros = torch.zeros(B, T, h.n_heads, h.adapter.head_dim)

    def mean(layer):  # position-averaged mean over the reference's real tokens, every head
        return ref_acts[layer][rm].mean(0).expand(B, T, -1, -1)

    # (condition, oracle edits); heads and positions cover slice/slice, slice/index, index/slice,
    # index/index and 'last', and overlapping writes on the same heads
    cases = [
        (Condition("zero+mean+resample", (ZeroAblate("L1H0,L1H2", positions=(0, 2)),
                                          MeanAblate("L1H1,L1H3"),
                                          ResampleAblate("L1H2,L1H3", positions="last", seed=5))),
         {1: [([0, 2], _pos_mask((0, 2), m), zeros[:, :, [0, 2]]),
              ([1, 3], _pos_mask("all", m), mean(1)[:, :, [1, 3]]),
              ([2, 3], _pos_mask("last", m), _last_values(same_acts[1], same["attention_mask"], B)[:, :, [2, 3]])]}),
        (Condition("overlap", (ZeroAblate("L0H0,L0H1,L0H2,L0H3"),
                               MeanAblate("L0H1,L0H3", positions="last"),
                               ResampleAblate("L0H0,L0H1", positions=(-1, 1), seed=2),
                               ZeroAblate("L1H3", positions="last"))),
         {0: [([0, 1, 2, 3], _pos_mask("all", m), zeros[:, :, :4]),
              ([1, 3], _pos_mask("last", m), mean(0)[:, :, [1, 3]]),
              ([0, 1], _pos_mask((T - 1, 1), m), same_acts[0][:, :, [0, 1]])],
          1: [([3], _pos_mask("last", m), zeros[:, :, [3]])]}),
        (Condition("pp-mean+resample-all", (MeanAblate("L0H2,L0H3", per_position=True, positions=(1, 2)),
                                            ResampleAblate("L0H3", seed=1))),
         None),  # oracle filled in below (per-position mean needs a reference of the run's length)
    ]
    # per-position mean: the reference is the run's own batch (same length), averaged over real rows
    pp_ref_acts = capture_head_outputs(h, b, [0])[0]
    w = m.float()[:, :, None, None]
    pp_mu = ((pp_ref_acts * w).sum(0) / w.sum(0).clamp(min=1)).expand(B, -1, -1, -1)
    cases[2] = (cases[2][0], {0: [([2, 3], _pos_mask((1, 2), m), pp_mu[:, :, [2, 3]]),
                                  ([3], _pos_mask("all", m), same_acts[0][:, :, [3]])]})

    for cond, edits in cases:
        reference = b if cond.name.startswith("pp") else ref
        want = _hooked_logits(h, b, edits)
        # B = 3 rows per block; chunks of 2 and 4 rows split blocks, 1 row per pass splits all of them
        got = [run_conditions(h, b, [None, cond, ZeroAblate("L0H1"), cond], reference=reference,
                              source=same, max_rows=r) for r in (None, 1, 2, 4)]
        for g in got:
            torch.testing.assert_close(g[1], want, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(g[3], want, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(g[0], h.forward(b).logits, atol=1e-5, rtol=1e-5)
        alone = run_conditions(h, b, [cond], reference=reference, source=same)[0]
        torch.testing.assert_close(alone, want, atol=1e-5, rtol=1e-5)

    # patch (row-aligned, a real source) next to zero and mean on the same layer, blocks split
    cond = Condition("patch+zero+mean", (Patch("L1H0,L1H1,L1H2", positions=(0, 2)),
                                         ZeroAblate("L1H1"), MeanAblate("L1H2,L1H3", positions="last")))
    want = _hooked_logits(h, b, {1: [([0, 1, 2], _pos_mask((0, 2), m), src_acts[1][:, :, [0, 1, 2]]),
                                      ([1], _pos_mask("all", m), zeros[:, :, [1]]),
                                      ([2, 3], _pos_mask("last", m), mean(1)[:, :, [2, 3]])]})
    for r in (None, 2, 4):
        got = run_conditions(h, b, [Patch("L0H0"), cond, None], reference=ref, source=src, max_rows=r)
        torch.testing.assert_close(got[1], want, atol=1e-5, rtol=1e-5)


def test_patch_at_last_position_uses_each_source_rows_last_token(handle):
    # run and source padded on opposite sides: the source's last real token is found per row
    b = handle.encode(TEXTS, padding_side="left")
    src = handle.encode(TEXTS[::-1], padding_side="right")
    B = b["input_ids"].shape[0]
    acts = capture_head_outputs(handle, src, [1])[1]
    want = _hooked_logits(handle, b, {1: [([1, 3], _pos_mask("last", b["attention_mask"]),
                                           _last_values(acts, src["attention_mask"], B)[:, :, [1, 3]])]})
    for r in (None, 2):
        got = run_conditions(handle, b, [None, Patch("L1H1,L1H3", positions="last")], source=src, max_rows=r)
        torch.testing.assert_close(got[1], want, atol=1e-5, rtol=1e-5)


def test_plan_holds_no_dense_replacements(handle):
    from ablate.intervene.engine import plan_writes

    b = _batch(handle)
    conds = [Condition.coerce(c) for c in (ZeroAblate("L0H1,L1H2"), MeanAblate("L1H0,L1H3", positions="last"),
                                           MeanAblate("L0H2", per_position=True, positions=(0, 2)))]
    acts = {"reference": {"acts": capture_head_outputs(handle, b, [0, 1]), "mask": b["attention_mask"]}}
    plan = plan_writes(b, conds, acts)
    dh = handle.adapter.head_dim
    kinds = {(w.cond, layer): w for layer, ws in plan.items() for w in ws}
    assert kinds[0, 0].kind == "zero" and kinds[0, 0].value is None
    assert kinds[1, 1].kind == "const" and tuple(kinds[1, 1].value.shape) == (2, dh)
    assert tuple(kinds[2, 0].value.shape) == (2, 1, dh)  # [positions, heads, dh]


def test_nan_check_catches_non_finite_and_tolerates_an_overflowing_sum():
    from ablate.model.errors import NumericalError

    h = tiny_handle("llama")
    b = _batch(h)

    def const(v, dtype=torch.float32):
        return lambda logits, rows: torch.full((rows.stop - rows.start, 4), v, dtype=dtype)

    for bad in (float("nan"), float("inf")):
        with pytest.raises(NumericalError, match="non-finite"):
            run_conditions(h, b, [None, ZeroAblate("L0H0")], reduce=const(bad))
    # every value finite but their fp16 sum overflows: the cheap check falls back to the exact one
    out = run_conditions(h, b, [None], reduce=const(60000.0, torch.float16))
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert run_conditions(h, b, [None], reduce=const(float("nan")), check_nan=False).isnan().all()
