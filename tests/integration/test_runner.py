"""The runner end to end on a tiny trained series: complete run, kill -9 mid-way + resume, errors."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from experiments.runner import run_spec
from experiments.spec import SpecError, load_spec, spec_from_dict
from experiments.store import RunMismatchError

TINY_SPEC = {
    "name": "tiny_sih", "seed": 3,
    "series": {"path": "PLACEHOLDER", "steps": [0, 30]},
    "heads": {"select": "explicit", "explicit": ["L1H0,L0H1"], "k": 2, "induction": True},
    "controls": {"random_sets": 2},
    "operators": {"primary": "mean", "robustness": ["zero", "resample"]},
    "icl": {"tasks": ["binary_fruit_month", "pd_category_letter"], "shots": [0, 2], "items": 4,
            "lr_documents": 3},
}


def _spec(series_dir, **over):
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY_SPEC.items()}
    d["series"]["path"] = str(series_dir)
    for k, v in over.items():
        d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) else v
    return d


def _write_spec(tmp_path, d):
    import json
    lines = []
    for k, v in d.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {json.dumps(v)}")
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines += [f"{kk} = {json.dumps(vv)}" for kk, vv in v.items()]
    p = tmp_path / "spec.toml"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_kill_mid_run_then_resume_equals_uninterrupted(tiny_series, tmp_path):
    spec_path = _write_spec(tmp_path, _spec(tiny_series))
    full = tmp_path / "full"
    s = run_spec(load_spec(spec_path), full, progress=False)
    # per step: scores (read by the induction set), heads, clean lr + 2 clean icl, 3 operators x (lr + 2 icl)
    per_step = 1 + 1 + (1 + 2) + 3 * (1 + 2)
    assert s.cells_failed == 0 and s.cells_done == 2 * per_step
    ref = pd.read_parquet(full / "results.parquet")
    assert set(ref["condition"]) == {"clean", "target", "induction", "random"}
    assert set(ref["operator"]) == {"none", "mean", "zero", "resample"}
    assert {"lr", "fc", "pd", "fc_floor", "pd_floor"} <= set(ref.columns)

    # a second process runs the same spec; we SIGKILL it once a few cells are committed
    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "experiments.cli", "run", str(spec_path), "--out", str(killed),
                          "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:
        n = len(list((killed / "cells").glob("*.parquet"))) if (killed / "cells").exists() else 0
        if n >= 5 or p.poll() is not None:
            break
        time.sleep(0.05)
    assert p.poll() is None, "the run finished before it could be killed; make the spec larger"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    done_before = len(list((killed / "cells").glob("*.parquet")))
    assert 5 <= done_before < 2 * per_step
    s2 = run_spec(load_spec(spec_path), killed, progress=False)
    assert s2.cells_skipped == done_before and s2.cells_done == 2 * per_step - done_before
    got = pd.read_parquet(killed / "results.parquet")
    pd.testing.assert_frame_equal(got, ref)
    pd.testing.assert_frame_equal(pd.read_parquet(killed / "raw_icl.parquet").drop(columns="cell"),
                                  pd.read_parquet(full / "raw_icl.parquet").drop(columns="cell"))

    # a changed spec into the same run folder is refused, and --new starts over
    other = load_spec(_write_spec(tmp_path, _spec(tiny_series, seed=4)))
    with pytest.raises(RunMismatchError, match="other settings .*seed: 3 there, 4 now"):
        run_spec(other, killed, progress=False)


def test_spec_errors_leave_no_run_folder(tiny_series, tmp_path):
    out = tmp_path / "never"
    cases = [
        ({"series": {"path": str(tmp_path / "missing")}}, "does not exist"),
        ({"series": {"steps": [0, 7]}}, r"step\(s\) \[7\] not in the series"),
        ({"heads": {"select": "explicit", "explicit": [""]}}, "empty head set"),
        ({"controls": {"random_sets": 0}}, "random_sets = 0"),
        ({"icl": {"tasks": ["binary_fruit_mnth"]}}, "binary_fruit_month"),
    ]
    for over, msg in cases:
        with pytest.raises(SpecError, match=msg):
            run_spec(spec_from_dict(_spec(tiny_series, **over), "t.toml"), out, progress=False)
        assert not out.exists()


def test_patch_cells_write_a_patching_table(tiny_series, tmp_path):
    """operators.patch adds one cell per (step, task): shuffled-label prompts with each set patched
    from the clean prompt; RUN/patching lines up clean / corrupted / patched values per item."""
    d = _spec(tiny_series, operators={"primary": "mean", "robustness": [], "patch": True},
              icl={"shots": [0, 3]})
    s = run_spec(spec_from_dict(d, "t.toml"), tmp_path / "run", progress=False)
    assert s.cells_failed == 0, s.failed
    assert s.cells_done == 2 * (1 + 1 + 2 * (1 + 2) + 2)  # scores, heads, (clean, mean) x (lr, 2 icl), 2 patch
    pt = pd.read_parquet(tmp_path / "run" / "patching.parquet")
    assert set(pt["condition"]) == {"target", "induction", "random"}
    assert set(pt["shots"]) == {3}  # 0-shot prompts have nothing to shuffle
    # per step and task: 1 target + 1 induction + its distinct random sets (a 2 x 2 model has one
    # matched set per tested set, so fewer than R = 2), 4 items each
    hs = pd.read_parquet(tmp_path / "run" / "head_sets.parquet")
    n_sets = hs[hs["head_set"] != ""].groupby("step").size()
    assert len(pt) == 2 * 4 * n_sets.sum() and (n_sets >= 3).all()
    assert pt[[c for c in pt.columns if c.startswith(("clean_", "corrupted_", "patched_"))]].notna().all().all()
    # the clean prompt's value is the one the ICL cells measured on the same item
    res = pd.read_parquet(tmp_path / "run" / "results.parquet")
    clean = res[(res["condition"] == "clean") & (res["task"] != "lr_docs") & (res["shots"] == 3)]
    m = pt.merge(clean[["step", "task", "shots", "item", "gold_logprob"]], on=["step", "task", "shots", "item"])
    assert len(m) == len(pt)
    assert (m["clean_gold_logprob"] - m["gold_logprob"]).abs().max() < 1e-4
    # patching changed something somewhere, and the corruption changed the clean value
    assert (pt["patched_gold_logprob"] != pt["corrupted_gold_logprob"]).any()
    assert (pt["clean_gold_logprob"] != pt["corrupted_gold_logprob"]).any()
    # the drop analysis never sees patch rows
    assert "patch" not in set(res["operator"])
    # `ablate stats` adds the restoration table
    from stats.api import run_stats

    out = run_stats(tmp_path / "run", n_boot=50, mixed_model=False)
    assert out.patching is not None and set(out.patching.units["condition"]) == {"target", "induction", "random"}
    for f in ("patching.md", "patching.csv", "patching.tex", "patching_tidy.csv", "patching_units.csv"):
        assert (tmp_path / "run" / "tables" / f).is_file(), f
    assert "Patching" in out.summary() or "restored" in out.summary()


def test_induction_set_of_another_size_gets_its_own_random_sets(tiny_series, tmp_path):
    """The statistics match random sets to a tested set by size k. A 1-head explicit target with k = 2
    induction heads: the induction set gets R random sets of its own size and layer histogram, so its
    specific drops have a null (R > 0), and the target keeps its own R."""
    from ablate.model.heads import HeadSet

    d = _spec(tiny_series, heads={"select": "explicit", "explicit": ["L1H0"], "k": 2, "induction": True},
              operators={"primary": "mean", "robustness": []})
    s = run_spec(spec_from_dict(d, "t.toml"), tmp_path / "run", progress=False)
    assert s.cells_failed == 0, s.failed
    hs = pd.read_parquet(tmp_path / "run" / "head_sets.parquet")
    for step, g in hs.groupby("step"):
        ind = HeadSet.parse(g.loc[g.role == "induction", "head_set"].iloc[0])
        rnd = g[g.role == "random"]
        # one matched set each: a 2 x 2 model has exactly one set matched to L1H0 (L1H1) and one to a
        # 2-head set (distinct sets only, ablate/scores/controls.py), so 1 of the R = 2
        assert sorted(rnd["k"]) == [1, 2] and rnd["control_index"].is_unique
        for h in rnd.loc[rnd.k == 2, "head_set"]:
            assert HeadSet.parse(h).layer_histogram() == ind.layer_histogram()
    # every tested set has its (one) ablated random set of its own size in the results the stats read
    res = pd.read_parquet(tmp_path / "run" / "results.parquet")
    res = res[res["condition"].isin(["target", "induction", "random"]) & (res["task"] != "lr_docs")]
    res = res.assign(k=res["head_set"].map(lambda x: len(HeadSet.parse(x))))
    for (step, cond), g in res[res.condition != "random"].groupby(["step", "condition"]):
        k = g["k"].iloc[0]
        r = res[(res.step == step) & (res.condition == "random") & (res.k == k)]
        assert r["control_index"].nunique() == 1, (step, cond, k)
