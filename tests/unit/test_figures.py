"""paper_figures: every figure function draws from realistic synthetic tables and writes PDF + PNG;
render_run renders the tables present in a run folder and skips the absent ones."""

from __future__ import annotations

import logging

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from paper_figures import (ablation_drops, accuracy_vs_shots, emergence_timeline, icl_levels,  # noqa: E402
                           render_run, ri_heatmaps, save_figure, score_curves)
from experiments.commands.figures import figures_command  # noqa: E402
from paper_figures.emergence import normalise_emergence  # noqa: E402
from paper_figures.icl import icl_from_results  # noqa: E402
from stats.simulate import simulate_curves, simulate_results  # noqa: E402
from stats.tables import emergence_display  # noqa: E402

STEPS = [0, 250, 500, 1000, 2000, 4000]
TOK_PER_STEP = 2_000_000


def make_head_scores(layers: int = 4, heads: int = 6, seed: int = 0) -> pd.DataFrame:
    """head_scores in the ablate.scores.scan contract, with a planted SIH (L2H3 on subj) and rising copying."""
    rng = np.random.default_rng(seed)
    rows = []
    for si, step in enumerate(STEPS):
        grow = si / (len(STEPS) - 1)
        for layer in range(layers):
            for head in range(heads):
                for rel in ("subj", "obj", "Part-of"):
                    for dr in ("forward", "reverse"):
                        ri = rng.uniform(0, 0.08)
                        if (layer, head) == (2, 3) and rel == "subj" and dr == "forward":
                            ri = 0.05 + 0.3 * grow
                        rows.append((step, "relation_index", rel, dr, layer, head, ri, int(rng.integers(0, 40))))
                        rows.append((step, "baseline", rel, dr, layer, head, rng.uniform(0, 0.06), 30))
                cop = rng.uniform(0, 0.2) + (0.6 * grow if (layer, head) in ((1, 0), (3, 5)) else 0)
                pm = rng.uniform(0, 0.1) + (0.8 * grow if (layer, head) == (1, 2) else 0)
                rows.append((step, "copying", None, None, layer, head, cop, 100))
                rows.append((step, "prefix_matching", None, None, layer, head, pm, 100))
    df = pd.DataFrame(rows, columns=["step", "score", "relation", "direction", "layer", "head", "value", "n_events"])
    df.insert(1, "tokens_seen", df["step"].astype("int64") * TOK_PER_STEP)
    return df


def make_icl_summary(seed: int = 0) -> pd.DataFrame:
    """icl_summary by hand: FC rises with shots and training, PD later; three controls; lr_docs rows."""
    rng = np.random.default_rng(seed)
    tasks = {"binary_fruit_month": 2, "four_class": 4, "nine_class": 9, "rel_subj": 2}
    rows = []
    for si, step in enumerate(STEPS):
        g = si / (len(STEPS) - 1)
        for task, k in tasks.items():
            for shots in (0, 1, 2, 5, 10, 20):
                s = min(shots, 10) / 10
                fc = min(1, 0.1 + 0.85 * g * s + rng.normal(0, 0.03))
                pdv = 1 / k + (0.9 - 1 / k) * max(0, g - 0.4) * s + rng.normal(0, 0.02)
                for control in ("clean", "nolabel", "shuffled"):
                    f = 0.3 if control == "nolabel" else 1.0
                    p = 1 / k if control == "shuffled" else pdv
                    rows.append({"step": step, "task": task, "shots": shots, "control": control,
                                 "fc": f * fc, "pd": p, "fc_cont": f * fc * 0.9, "pd_cont": p * 0.9,
                                 "chance": 1 / k, "n_items": 20})
        rows.append({"step": step, "task": "lr_docs", "shots": 0, "control": "clean", "lr": 0.2 + 0.5 * g})
    df = pd.DataFrame(rows)
    df.insert(1, "tokens_seen", df["step"].astype("int64") * TOK_PER_STEP)
    return df


def make_results() -> pd.DataFrame:
    r = simulate_results(n_steps=3, n_tasks=4, n_items=6, n_random=3,
                         operators=("mean", "zero"), drops={"lr": 0.05, "fc": 0.1, "pd": 0.5}, binary=True, seed=1)
    # an induction head set beside target and random: the values of random set 0, under its own name
    ind = r[(r["condition"] == "random") & (r["control_index"] == 0)]
    ind = ind.assign(condition="induction", head_set="L1H2,L1H0", control_index=-1)
    return pd.concat([r, ind], ignore_index=True)


def make_emergence() -> pd.DataFrame:
    from stats.emergence import emergence_analysis

    c = simulate_curves(n_checkpoints=12, midpoints={"ICL:pd": 9.6, "ICL:fc": 9.1, "heads:L2H3": 9.4,
                                                      "ICL:flat": 30.0}, seed=3)
    return emergence_analysis(c, pairs=[], n_boot=30, n_boot_corr=10).curves


def check_png(path, min_px: int = 200, max_px: int = 6000):
    img = mpimg.imread(path)
    h, w = img.shape[:2]
    assert min_px <= w <= max_px and min_px // 2 <= h <= max_px, (path, w, h)
    assert np.ptp(img[..., :3]) > 0, f"{path} is blank"
    return w, h


def check_figure(fig, tmp_path, name):
    assert isinstance(fig, plt.Figure)
    paths = save_figure(fig, tmp_path / name, dpi=100)
    plt.close(fig)
    assert [p.suffix for p in paths] == [".pdf", ".png"]
    for p in paths:
        assert p.stat().st_size > 1000, p
    assert paths[0].read_bytes()[:5] == b"%PDF-"
    check_png(paths[1])
    return paths


@pytest.fixture(scope="module")
def tables():
    return {"head_scores": make_head_scores(), "icl_summary": make_icl_summary(), "results": make_results(),
            "emergence": make_emergence()}


# ---------------------------------------------------------------- figure functions


def test_ri_heatmaps(tables, tmp_path):
    fig = ri_heatmaps(tables["head_scores"])
    # 3 relations x 2 directions x (RI + baseline) panels + colour bar
    assert len(fig.axes) == 3 * 2 * 2 + 1
    titles = [ax.get_title() for ax in fig.axes]
    assert "subj, forward: RI" in titles and "subj, forward: baseline" in titles
    cbar = fig.axes[-1]
    assert len(cbar.lines) == 2  # baseline max and mean on the colour bar
    check_figure(fig, tmp_path, "ri")


def test_ri_heatmaps_step_subset_and_missing_optional_columns(tables, tmp_path):
    hs = tables["head_scores"].drop(columns=["n_events", "direction", "tokens_seen"])
    fig = ri_heatmaps(hs, step=500, relations=["subj"], show_baseline_panels=False)
    assert len(fig.axes) == 2  # one panel + colour bar
    check_figure(fig, tmp_path, "ri_small")
    with pytest.raises(ValueError, match="available steps"):
        ri_heatmaps(hs, step=123)
    with pytest.raises(ValueError, match="no rows with score"):
        ri_heatmaps(hs[hs["score"] == "copying"])


def test_score_curves_picks_planted_heads(tables, tmp_path):
    fig = score_curves(tables["head_scores"], top_k=3)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Relation index: top 3", "Prefix-matching score: top 3", "Copying score: top 3"]
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0] == "L2H3 subj/forward" and "baseline (mean)" in labels
    assert fig.axes[1].get_legend().get_texts()[0].get_text() == "L1H2"
    assert fig.axes[0].get_xscale() == "log"
    check_figure(fig, tmp_path, "curves")


def test_icl_levels_from_summary_and_from_results(tables, tmp_path):
    fig = icl_levels(tables["icl_summary"])
    assert [ax.get_title() for ax in fig.axes] == ["Loss reduction (LR)", "Format compliance (FC)",
                                                   "Pattern discovery (PD)"]
    assert all(ax.get_xscale() == "log" for ax in fig.axes)
    leg = [t.get_text() for t in fig.legends[0].get_texts()]
    assert leg[:6] == ["0", "1", "2", "5", "10", "20"] and "chance (mean)" in leg
    check_figure(fig, tmp_path, "icl")
    # no icl_summary: the clean rows of results (LR = the in-prompt LR of each item)
    fig = icl_levels(None, results=tables["results"], metric="binary")
    assert fig.axes[0].lines, "LR drawn from the results' in-prompt LR"
    check_figure(fig, tmp_path, "icl_results")


def test_icl_summary_without_optional_columns(tables, tmp_path):
    icl = tables["icl_summary"]
    icl = icl[(icl["control"] == "clean") & (icl["task"] != "lr_docs")].drop(
        columns=["control", "tokens_seen", "chance", "fc_cont", "pd_cont", "task"])
    fig = icl_levels(icl, results=tables["results"])
    assert fig.axes[1].get_xlabel() == "Training step"  # no tokens_seen: log steps (LR from results has tokens)
    check_figure(fig, tmp_path, "icl_min")
    with pytest.raises(ValueError, match="metric"):
        icl_levels(icl, metric="soft")


def test_accuracy_vs_shots(tables, tmp_path):
    fig = accuracy_vs_shots(tables["icl_summary"], max_checkpoints=3)
    assert len(fig.axes) == 2
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[-1] == "chance (mean)" and labels[-2] == "4000 (8B)" and len(labels) == 4
    check_figure(fig, tmp_path, "shots")
    fig = accuracy_vs_shots(tables["icl_summary"], steps=[500, 4000], by_task=True)
    assert len(fig.axes) == 2 * 4
    check_figure(fig, tmp_path, "shots_by_task")
    with pytest.raises(ValueError, match="absent"):
        accuracy_vs_shots(tables["icl_summary"], steps=[7])


def test_ablation_drops(tables, tmp_path):
    sig = pd.DataFrame({"step": [4000, 4000], "operator": ["mean", "mean"], "condition": ["target", "induction"],
                        "p_iut": [0.004, 0.3], "p_holm": [0.012, np.nan]})
    fig = ablation_drops(tables["results"], significance=sig, n_boot=200)
    assert [ax.get_title() for ax in fig.axes] == ["mean ablation", "zero ablation"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["target", "induction", "random (R = 3)"]
    assert fig.axes[0].get_xlabel() == "PD > LR & FC?\ntarget: p = .012 (Holm)\ninduction: p = .300 (uncorrected)"
    check_figure(fig, tmp_path, "ablation")
    fig = ablation_drops(tables["results"], step=1000, operators=["mean"], normalised=False, n_boot=200)
    assert fig.axes[0].get_ylabel() == "Drop (clean - ablated)"
    check_figure(fig, tmp_path, "ablation_raw")


def test_ablation_drops_plant_pd_effect(tables):
    from paper_figures.ablation import drop_table

    d = drop_table(tables["results"])
    m = d[(d["condition"] == "target") & (d["operator"] == "mean")].groupby("ability")["drop"].mean()
    assert m["pd"] > m["lr"] + 0.2  # the planted PD-specific effect is what the figure shows


def test_emergence_timeline_tidy_and_display(tables, tmp_path):
    em = tables["emergence"]
    fig = emergence_timeline(em)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks == ["ICL:fc", "heads:L2H3", "ICL:pd", "ICL:flat (not dated)"]  # sorted by midpoint
    check_figure(fig, tmp_path, "emergence")
    disp, _ = emergence_display(em, None)
    back = normalise_emergence(disp)
    tidy = em.set_index("curve")
    for r in back.itertuples():
        if np.isfinite(tidy.loc[r.curve, "midpoint_log10_tokens"]):
            assert r.midpoint_log10_tokens == pytest.approx(tidy.loc[r.curve, "midpoint_log10_tokens"], abs=0.006)
            assert r.ci_low == pytest.approx(tidy.loc[r.curve, "ci_low"], abs=0.006)
    check_figure(emergence_timeline(disp), tmp_path, "emergence_display")


def test_icl_from_results_keeps_clean_rows_only(tables):
    s = icl_from_results(tables["results"])
    assert set(s["task"]) >= {"task00"} and "lr_docs" not in set(s["task"])  # the simulator has no documents
    assert np.isfinite(s["lr"]).all()  # the in-prompt LR of every clean item
    assert (s["chance"] == 0.25).all()


# ---------------------------------------------------------------- render_run and the command


def write_run(tmp_path, tables, *, head_scores=True, icl=True, results=True, emergence=True):
    run = tmp_path / "run"
    (run / "tables").mkdir(parents=True)
    if head_scores:
        tables["head_scores"].to_parquet(run / "head_scores.parquet")
    if icl:
        tables["icl_summary"].to_parquet(run / "icl_summary.parquet")
    if results:
        tables["results"].to_parquet(run / "results.parquet")
    if emergence:
        tables["emergence"].to_csv(run / "tables" / "emergence_tidy.csv", index=False)
    return run


ALL = ["ri_heatmaps", "score_curves", "icl_levels", "accuracy_vs_shots", "accuracy_vs_shots_by_task",
       "ablation_drops", "emergence_timeline"]


def test_render_run_all_tables(tables, tmp_path):
    run = write_run(tmp_path, tables)
    paths = render_run(run, dpi=80)
    assert sorted(p.name for p in paths) == sorted(f"{n}.{e}" for n in ALL for e in ("pdf", "png"))
    for p in paths:
        assert p.parent == run / "figures" and p.stat().st_size > 1000
        if p.suffix == ".png":
            check_png(p, min_px=150)


def test_render_run_skips_absent_tables(tables, tmp_path, caplog):
    run = write_run(tmp_path, tables, head_scores=False, icl=False, emergence=False)
    with caplog.at_level(logging.INFO, logger="paper_figures"):
        paths = render_run(run, formats=("png",), dpi=60)
    names = sorted(p.stem for p in paths)
    # ICL figures fall back to the clean rows of results; the per-task figure needs icl_summary tasks too
    assert names == sorted(["icl_levels", "accuracy_vs_shots", "accuracy_vs_shots_by_task", "ablation_drops"])
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert any("ri_heatmaps" in m for m in skipped) and any("emergence_timeline" in m for m in skipped)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert render_run(empty) == []


def test_render_run_logs_a_failing_figure_and_goes_on(tables, tmp_path, caplog):
    run = write_run(tmp_path, tables, icl=False, results=False, emergence=False)
    with caplog.at_level(logging.INFO, logger="paper_figures"):
        paths = render_run(run, step=999, formats=("png",), dpi=60)  # step 999 not in head_scores
    assert [p.stem for p in paths] == ["score_curves"]
    assert any("ri_heatmaps failed" in r.getMessage() and "available steps" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="available steps"):
        render_run(run, step=999, strict=True)
    with pytest.raises(FileNotFoundError):
        render_run(tmp_path / "nope")


def test_figures_command(tables, tmp_path):
    run = write_run(tmp_path, tables, head_scores=False, results=False)
    res = CliRunner().invoke(figures_command, [str(run), "--format", "png", "--dpi", "60"])
    assert res.exit_code == 0, res.output
    assert "skipped ri_heatmaps" in res.output and "file(s) written" in res.output
    assert (run / "figures" / "icl_levels.png").exists() and (run / "figures" / "emergence_timeline.png").exists()


def test_real_producer_shapes(tables, tmp_path):
    """icl_summary as ablate.icl.series.summarize writes it (conditions, kind, SEMs, lr_prompt; no lr) and
    head_scores with nullable Int64 tokens_seen (a checkpoint of unknown tokens) as ablate.scores.scan writes."""
    from ablate.icl.series import summarize

    rng = np.random.default_rng(0)
    rows = []
    for step in (0, 100, 1000, 5000, 10000):
        for task, k in (("binary_fruit_month", 2), ("four_class", 4)):
            for shots in (0, 2, 5):
                for control in ("clean", "shuffled", "nolabel"):
                    for cond in ("clean", "L1H0+L2H3"):
                        for item in range(4):
                            p = min(1.0, 0.2 + step / 12000 * shots / 5)
                            rows.append({"step": step, "tokens_seen": step * 1000, "task": task, "kind": "pattern",
                                         "shots": shots, "item": item, "control": control, "condition": cond,
                                         "chance": 1 / k, "fc": float(rng.random() < p),
                                         "pd": float(rng.random() < max(1 / k, p - 0.2)), "fc_cont": p,
                                         "pd_cont": p / 2, "lr_prompt": 0.3 * p if shots else np.nan})
    items = pd.DataFrame(rows).astype({"tokens_seen": "Int64"})
    summary = summarize(items)
    fig = icl_levels(summary)
    assert fig.axes[0].get_ylabel().startswith("In-prompt LR") and fig.axes[0].lines
    check_figure(fig, tmp_path, "icl_real")
    check_figure(accuracy_vs_shots(summary), tmp_path, "shots_real")
    hs = tables["head_scores"].astype({"tokens_seen": "Int64"})
    hs.loc[hs["step"] == 500, "tokens_seen"] = pd.NA
    fig = score_curves(hs)
    check_figure(fig, tmp_path, "curves_na")
    check_figure(ri_heatmaps(hs, step=500), tmp_path, "ri_na")


def test_patching_restoration(tmp_path):
    from paper_figures.patching import patching_restoration
    from tests.unit.test_stats_patching import _table

    one = _table(0.8, 0.1, n_tasks=5, R=3)
    fig = patching_restoration(one, n_boot=100)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["target", "random (R = 3)"]
    assert "step 10" in ax.get_xlabel()
    check_figure(fig, tmp_path, "patching_one")
    many = _table(0.8, 0.1, n_tasks=4, R=2, steps=(100, 1000, 10000), noise=0.1)
    fig = patching_restoration(many, n_boot=100)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["target", "random (R = 2)"]
    check_figure(fig, tmp_path, "patching_many")
    with pytest.raises(ValueError, match="nothing to restore"):
        patching_restoration(_table(0.8, 0.1, gaps=[0.0] * 5))
    # render_run draws it when the run has a patching table
    run = tmp_path / "run"
    run.mkdir()
    many.to_parquet(run / "patching.parquet")
    assert [p.name for p in render_run(run, formats=("png",), dpi=60)] == ["patching_restoration.png"]
