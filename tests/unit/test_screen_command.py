"""``ablate screen``: AtP screen of every head, the top ones measured exactly, a tidy CSV."""

from __future__ import annotations

import pandas as pd
from click.testing import CliRunner

from experiments.cli import main


def _saved_tiny(tmp_path):
    from ablate.testing.tiny import tiny_model, tiny_tokenizer

    folder = tmp_path / "tiny"
    tiny_model("llama", n_layers=2).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def test_screen_writes_every_head_and_verifies_the_top_ones(tmp_path):
    folder = _saved_tiny(tmp_path)
    out = tmp_path / "screen.csv"
    r = CliRunner().invoke(main, ["screen", str(folder), "--items", "3", "--top", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out)
    assert len(df) == 2 * 4 and df["exact_effect"].notna().sum() == 2
    top = df.dropna(subset=["exact_effect"])
    assert set(top["rank"]) == {1, 2} and (top["atp_effect"].abs().min() >= df["atp_effect"].abs().nlargest(2).min())
    # never overwrites a file
    r2 = CliRunner().invoke(main, ["screen", str(folder), "--out", str(out)])
    assert r2.exit_code != 0 and "exists" in r2.output
