import numpy as np
import pandas as pd
from click.testing import CliRunner

from stats.api import analyze
from experiments.commands.stats import stats_command
from stats.simulate import simulate_curves, simulate_results
from stats.tables import fmt_ci, fmt_p, p_phrase


def test_apa_formatting():
    assert fmt_p(0.006) == ".006"
    assert fmt_p(0.0004) == "< .001"
    assert fmt_p(0.9999) == "> .999"
    assert fmt_p(np.nan) == "n/a"
    assert p_phrase(0.006) == "p = .006" and p_phrase(1e-5) == "p < .001"
    assert fmt_ci(0.31, 0.123, 0.5) == "0.31 [0.12, 0.50]"


def test_cli_writes_tables(tmp_path):
    df = simulate_results(n_steps=3, n_tasks=8, n_items=6, n_random=19, lr_docs=True,
                          drops={"lr": .1, "fc": .1, "pd": .4}, seed=0)
    df.to_parquet(tmp_path / "results.parquet")
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
    assert "pattern discovery dropped more" in (out / "summary.md").read_text()


def test_mixed_model_warnings_are_surfaced():
    df = simulate_results(n_steps=2, n_tasks=4, n_items=4, drops={"lr": .1, "fc": .1, "pd": .3}, seed=3)
    res = analyze(df, n_boot=0)
    rob = res.robustness.iloc[0]
    assert {"converged", "warnings", "variance_components"} <= set(res.robustness.columns)
    assert rob["pd_minus_lr"] > 0.1
    assert isinstance(rob["warnings"], str)


def test_summary_and_emergence_through_analyze():
    df = simulate_results(n_steps=2, n_tasks=6, n_items=4, n_random=0, seed=4)
    res = analyze(df, n_boot=100, mixed_model=False, emergence_curves=simulate_curves(seed=0))
    text = res.summary()
    assert "checkpoints" in text and "rising before" in text


def test_ability_absent_at_checkpoint_gives_nan_row_with_reason():
    df = simulate_results(n_steps=3, n_tasks=5, n_items=4, absent={1: ("fc",)}, seed=6)
    t = analyze(df, n_boot=0, mixed_model=False).table
    bad = t.iloc[1]
    assert np.isnan(bad["p_iut"]) and np.isnan(bad["p_holm"])
    assert "FC absent" in bad["note"]
    assert t.iloc[[0, 2]]["p_iut"].notna().all()
