import json

import numpy as np
import pandas as pd
from click.testing import CliRunner
from statsmodels.stats.multitest import multipletests

from experiments.commands.stats import stats_command
from stats.api import analyze
from stats.simulate import simulate_curves, simulate_results
from stats.tables import fmt_ci, fmt_p, p_phrase


def test_apa_formatting():
    assert fmt_p(0.006) == ".006"
    assert fmt_p(0.0004) == "< .001"
    assert fmt_p(0.9999) == "> .999"
    assert fmt_p(np.nan) == "n/a"
    assert p_phrase(0.006) == "p = .006" and p_phrase(1e-5) == "p < .001"
    assert fmt_ci(0.31, 0.123, 0.5) == "0.31 [0.12, 0.50]"


def _run_folder(tmp_path, p_resolution=None, R=19):
    df = simulate_results(n_steps=3, n_tasks=8, n_items=6, n_random=R, drops={"lr": .1, "fc": .1, "pd": .4}, seed=0)
    df.to_parquet(tmp_path / "results.parquet")
    if p_resolution is not None:
        (tmp_path / "manifest.json").write_text(json.dumps({"spec": {"controls": {"p_resolution": p_resolution}}}))
    return df


def test_cli_writes_tables(tmp_path):
    df = _run_folder(tmp_path)
    steps = sorted(df["step"].unique())
    curves = simulate_curves(midpoints={"copying": 9.0}, seed=1)
    curves.rename(columns={"curve": "score"}).to_parquet(tmp_path / "head_scores.parquet")
    r = CliRunner().invoke(stats_command, [str(tmp_path), "--prereg", f"{steps[0]},{steps[1]}", "--n-boot", "200"])
    assert r.exit_code == 0, r.output + repr(r.exception)
    out = tmp_path / "tables"
    for name in ("significance", "emergence"):
        for ext in ("csv", "md", "tex"):
            assert (out / f"{name}.{ext}").stat().st_size > 0
    sig = pd.read_csv(out / "significance.csv")
    assert list(sig.columns)[:11] == ["checkpoint", "heads (k)", "operator", "dPD", "dLR", "dFC",
                                      "specific contrast [95% CI]", "d_z", "p (IUT)", "p (Holm)", "p (random heads, R)"]
    tex = (out / "significance.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and "d\\_z" in tex
    assert "(BH)" in sig["p (Holm)"].iloc[2]
    assert sig["p (random heads, R)"].iloc[0] == ".050 (19)"
    # a planted PD drop of .4 vs .1: every pre-registered checkpoint is significant, and the summary says so
    assert "at 2 of 2 pre-registered checkpoints" in (out / "summary.md").read_text()
    assert (out / "item_counts.csv").exists()
    em = pd.read_csv(out / "emergence.csv")
    assert "heads:copying" in set(em["curve"]) and not em["curve"].str.contains("ICL:").any()


def test_summary_reports_no_effect_under_the_null(tmp_path):
    df = simulate_results(n_steps=3, n_tasks=8, n_items=6, drops={"lr": .2, "fc": .2, "pd": .2}, seed=9)
    res = analyze(df, n_boot=0, mixed_model=False)
    assert "at 0 of 3 pre-registered checkpoints" in res.summary()


def test_p_resolution_from_the_run_spec(tmp_path):
    from stats.api import run_stats
    _run_folder(tmp_path, p_resolution=0.01, R=19)
    out = run_stats(tmp_path, n_boot=0, mixed_model=False)
    assert out.settings["p_resolution"] == 0.01
    assert out.table["p_random"].isna().all() and out.table["note"].str.contains("run R >= 99").all()


def test_mixed_model_fits_on_queries_and_reports_its_diagnostics():
    df = simulate_results(n_steps=2, n_tasks=4, n_items=8, shots=(2, 4), drops={"lr": .1, "fc": .1, "pd": .3}, seed=3)
    res = analyze(df, n_boot=0)
    rob = res.robustness.iloc[0]
    assert rob["pd_minus_lr"] > 0.1 and rob["n_obs"] == 3 * 2 * 4 * 8 * 2
    assert rob["converged"] or "did not converge" in rob["note"]
    assert "item=" in rob["variance_components"]


def test_summary_and_emergence_through_analyze():
    df = simulate_results(n_steps=2, n_tasks=6, n_items=4, n_random=0, seed=4)
    res = analyze(df, n_boot=100, mixed_model=False, emergence_curves=simulate_curves(seed=0))
    text = res.summary()
    assert "Of 2 curves, 2 rose with a dated midpoint (first: ri at 9.2" in text


def test_ability_absent_at_checkpoint_gives_nan_row_with_reason():
    df = simulate_results(n_steps=3, n_tasks=5, n_items=8, absent={1: ("fc",)}, seed=6)
    t = analyze(df, n_boot=0, mixed_model=False).table
    bad = t.iloc[1]
    assert np.isnan(bad["p_iut"]) and np.isnan(bad["p_holm"])
    assert "FC absent" in bad["note"] and "Holm family with p = 1" in bad["note"]
    assert t.iloc[[0, 2]]["p_iut"].notna().all()
    # the untestable checkpoint stays in the Holm family as p = 1
    ok = t.iloc[[0, 2]]
    np.testing.assert_allclose(ok["p_holm"], multipletests(list(ok["p_iut"]) + [1.0], method="holm")[1][:2])


def test_absent_preregistered_checkpoint_kept_in_the_family():
    df = simulate_results(n_steps=2, n_tasks=6, n_items=4, drops={"lr": .1, "fc": .1, "pd": .4}, seed=7)
    steps = sorted(df["step"].unique())
    t = analyze(df, n_boot=0, mixed_model=False, preregistered_steps=steps + [123]).table
    miss = t[t["step"] == 123]
    assert len(miss) == 1 and "absent from the results" in miss["note"].iloc[0]
    ok = t[t["step"].isin(steps)]
    np.testing.assert_allclose(ok["p_holm"], multipletests(list(ok["p_iut"]) + [1.0], method="holm")[1][:2])
