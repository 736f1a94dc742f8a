"""The shipped ``emergence_factors`` study end to end on the tiny preset (plumbing, issue 17 Q2):
``ablate run --preset tiny`` trains every variant and measures every checkpoint, a re-run trains nothing,
``ablate stats`` writes the onsets / law / fit tables, ``ablate figures`` draws the figure; bad input
gets one message and a foreign folder is never written into.

What the tables mean is tested against known answers in tests/unit/test_stats_factors.py.
"""

from __future__ import annotations

import json

import pandas as pd
from click.testing import CliRunner

from experiments.cli import main as ablate


def test_factors_study_on_tiny_end_to_end(tmp_path):
    run = tmp_path / "study"
    cli = CliRunner()
    r = cli.invoke(ablate, ["run", "emergence_factors", "--preset", "tiny", "--out", str(run), "--no-progress"])
    assert r.exit_code == 0, r.output
    m = json.loads((run / "manifest.json").read_text())
    assert m["kind"] == "factors" and len(m["variants"]) == 6
    for v in m["variants"]:
        cps = json.loads((run / "series" / v / "series.json").read_text())["checkpoints"]
        assert max(c["step"] for c in cps) == 30  # the tiny preset's steps
        hs = pd.read_parquet(run / "variants" / v / "head_scores.parquet")
        assert set(hs["step"]) == {c["step"] for c in cps}  # every checkpoint measured
        assert (run / "variants" / v / "icl_summary.parquet").exists()
    three = json.loads((run / "series" / "3layers" / "step_30" / "config.json").read_text())
    assert three["num_hidden_layers"] == 3  # the variant's factor reached the trained model

    again = cli.invoke(ablate, ["run", "emergence_factors", "--preset", "tiny", "--out", str(run), "--no-progress"])
    assert again.exit_code == 0 and "(0 trained in this call)" in again.output, again.output
    status = cli.invoke(ablate, ["status", str(run)])
    assert status.exit_code == 0 and "3layers: trained to step 30; measurement 14/14 cells, 0 failed" in status.output

    st = cli.invoke(ablate, ["stats", str(run)])
    assert st.exit_code == 0, st.output
    law = pd.read_csv(run / "tables" / "factors_law.csv")
    assert list(law["variant"]) == m["variants"]
    assert law.set_index("variant").loc["B16xC64", "B"] == 16  # the tiny preset keeps the variant's batch
    assert (run / "tables" / "factors_fit.md").exists() and (run / "tables" / "factors_onsets.tex").exists()
    on = pd.read_csv(run / "tables" / "factors_onsets.csv")
    assert set(on["curve"]) == {"induction", "SIH", "PD", "FC"}  # every curve is reported, dated or not
    fg = cli.invoke(ablate, ["figures", str(run)])
    assert fg.exit_code == 0, fg.output
    assert (run / "figures" / "factors.png").exists()


def test_factors_bad_input_gets_one_message(tmp_path):
    cli = CliRunner()
    r = cli.invoke(ablate, ["run", "emergence_factors", "--series", str(tmp_path), "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "--series cannot be used with a factors study" in r.output
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "f"\n[train]\npreset = "tiny"\n[[variants]]\nname = "a"\nn_layer = 3\n')
    r = cli.invoke(ablate, ["run", str(bad), "--out", str(tmp_path / "y")])
    assert r.exit_code != 0 and "unknown key variants.a.'n_layer'" in r.output and "n_layers" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "y").exists()
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    r = cli.invoke(ablate, ["run", "emergence_factors", "--preset", "tiny", "--out", str(user)])
    assert r.exit_code != 0 and "not a run folder" in r.output
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt"]
    r = cli.invoke(ablate, ["run", "sih_ablation", "--preset", "tiny", "--out", str(tmp_path / "z")])
    assert r.exit_code != 0 and "--preset goes with a factors study" in r.output



def test_a_factors_spec_read_as_an_ablation_spec_says_how_to_run_it():
    import pytest

    from experiments.spec import SpecError, load_spec

    with pytest.raises(SpecError, match="factors study.*ablate run SPEC"):
        load_spec("emergence_factors")
