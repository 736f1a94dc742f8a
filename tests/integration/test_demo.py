"""``ablate demo --preset tiny`` end to end: every promised output exists and parses."""

import json
import os
import subprocess
import sys

import pandas as pd


def test_tiny_demo_writes_every_promised_output(tmp_path):
    env = dict(os.environ, SIH_ABLATE_CACHE=str(tmp_path / "cache"), MPLBACKEND="Agg")
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "experiments.cli", "demo", "--preset", "tiny", "--out", str(out),
                        "--no-progress"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    for part in ("training", "pretrained"):
        run = out / part
        for name in ("head_scores", "icl_items", "icl_summary", "results", "raw_icl", "raw_lr", "head_sets"):
            df = pd.read_parquet(run / f"{name}.parquet")
            assert len(df) > 0, (part, name)
        assert json.loads((run / "manifest.json").read_text())["spec_hash"]
        for t in ("significance.csv", "significance.md", "significance.tex", "summary.md"):
            assert (run / "tables" / t).stat().st_size > 0, (part, t)
        pd.read_csv(run / "tables" / "significance.csv")
        pngs = sorted((run / "figures").glob("*.png"))
        assert any(p.name.startswith("ri_heatmaps") for p in pngs)
        for p in pngs:
            import matplotlib.image as mpimg

            img = mpimg.imread(p)
            assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0, p
            assert p.with_suffix(".pdf").stat().st_size > 1000
    assert (out / "training" / "tables" / "emergence.csv").exists()
    # part A also patches (clean -> shuffled-label prompts) and reports restoration
    assert len(pd.read_parquet(out / "training" / "patching.parquet")) > 0
    assert (out / "training" / "tables" / "patching.md").stat().st_size > 0
    assert any(p.name.startswith("score_curves") for p in (out / "training" / "figures").glob("*.png"))
    md = (out / "report.md").read_text()
    assert "Across training" in md and "pretrained model" in md and "![" in md
    assert "**Pattern discovery by checkpoint**" in md  # per checkpoint and task, with exact binomial CIs
    html = (out / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "<table>" in html and "<img" in html
    timings = json.loads((out / "demo_timings.json").read_text())
    assert "A1 train or reuse the 'tiny' series" in timings
    # re-running resumes: nothing is recomputed, the tables stay identical
    before = pd.read_parquet(out / "training" / "results.parquet")
    r2 = subprocess.run([sys.executable, "-m", "experiments.cli", "demo", "--preset", "tiny", "--out", str(out),
                         "--no-progress"], env=env, capture_output=True, text=True)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "reusing the trained series" in r2.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out / "training" / "results.parquet"), before)
