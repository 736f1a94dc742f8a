"""The runner's path-patching cells (issue 17 Q3) on the tiny series: tables, stats and figure.

Oracles independent of the cell's code: the clean metric equals the gold label's log-prob from a
plain Hugging Face forward of the prompt (plus the tokens all labels share); per item and set the
paths plus the nonlinear remainder sum to the total; every tested and random set has rows.
"""

from __future__ import annotations

import pandas as pd
import torch
from click.testing import CliRunner

from experiments.cli import main as ablate


def _spec(tmp_path, series, sender="mean"):
    p = tmp_path / "paths.toml"
    p.write_text("\n".join([
        'name = "paths"', "seed = 0", "[series]", f'path = "{series}"', "steps = [20, 30]",
        "[scores]", "n_sentences = 12", "tau = 0.0", "n_random = 4",
        "[heads]", 'select = "sih"', 'rule = "topk"', "k = 1", "min_events = 1", "induction = true",
        "[controls]", "random_sets = 3", "[operators]", 'primary = "mean"', "robustness = []",
        "[icl]", 'tasks = ["pd_category_letter", "binary_fruit_month"]', "shots = [0, 2]", "items = 3",
        "lr_documents = 1", "[paths]", f'sender = "{sender}"']) + "\n")
    return p


def test_paths_cells_tables_stats_and_figure(tiny_series, tmp_path):
    run = tmp_path / "run"
    cli = CliRunner()
    r = cli.invoke(ablate, ["run", str(_spec(tmp_path, tiny_series)), "--out", str(run), "--no-progress"])
    assert r.exit_code == 0, r.output
    p = pd.read_parquet(run / "paths.parquet")
    assert set(p["role"]) == {"target", "induction", "random"}
    # a 1-head set in a 2x2 model has at most 2 distinct matched random sets: the sets are distinct,
    # so fewer than the 3 asked for exist and all of them are used
    n_rand = p[p.role == "random"].groupby("step")["control_index"].nunique()
    assert ((n_rand >= 1) & (n_rand <= 2)).all(), n_rand
    assert set(p["step"]) == {20, 30} and set(p["task"]) == {"pd_category_letter", "binary_fruit_month"}
    k = ["step", "task", "role", "control_index", "item"]
    parts = p[p["path"] != "total"].groupby(k)["effect"].sum()
    total = p[p["path"] == "total"].set_index(k)["effect"]
    assert (parts - total.reindex(parts.index)).abs().max() < 1e-9
    assert {"direct", "mlp", "q", "k", "v"} <= set(p["group"])

    # the clean metric, recomputed with a plain forward (independent of path_patch and the cell)
    from ablate.icl.tasks import make_items
    from ablate.model.handle import load_model

    h = load_model(str(tiny_series / "step_30"))
    tok = h.tokenizer
    items = [it for it in make_items("pd_category_letter", [2], 3, seed=0, controls=["clean"])]
    row = p[(p.step == 30) & (p.task == "pd_category_letter") & (p.role == "target") & (p.path == "total")]
    for it in items:
        P = tok(it.prompt, add_special_tokens=False)["input_ids"]
        cands = [tok(it.prompt + " " + lab, add_special_tokens=False)["input_ids"][len(P):] for lab in it.labels]
        n = 0
        while all(len(c) > n + 1 for c in cands) and len({c[n] for c in cands}) == 1:
            n += 1
        gold = cands[it.labels.index(it.gold)]
        with torch.no_grad():
            lp = torch.log_softmax(h.hf(input_ids=torch.tensor([P + gold[:n]])).logits[0, -1].double(), -1)
        got = float(row.loc[row["item"] == it.item, "clean"].iloc[0])
        assert abs(got - lp[gold[n]].item()) < 1e-4, (it.item, got, lp[gold[n]].item())

    r = cli.invoke(ablate, ["stats", str(run), "--n-boot", "20", "--no-mixed-model"])
    assert r.exit_code == 0, r.output
    tab = pd.read_csv(run / "tables" / "paths_tidy.csv")
    assert set(tab["condition"]) == {"target", "induction"}
    assert (tab["R"] == tab["step"].map(n_rand)).all(), (tab[["step", "R"]], n_rand)
    assert "Through which paths" in (run / "tables" / "paths.md").read_text()
    cli.invoke(ablate, ["figures", str(run), "--format", "png"])  # ablation_drops has nothing to draw on tiny
    assert (run / "figures" / "paths_breakdown.png").is_file()


def test_patch_sender_and_bad_paths_section(tiny_series, tmp_path):
    run = tmp_path / "run"
    r = CliRunner().invoke(ablate, ["run", str(_spec(tmp_path, tiny_series, sender="patch")), "--out", str(run),
                                    "--no-progress"])
    assert r.exit_code == 0, r.output
    p = pd.read_parquet(run / "paths.parquet")
    assert (p["sender"] == "patch").all() and len(p)
    bad = _spec(tmp_path, tiny_series, sender="resample")
    r = CliRunner().invoke(ablate, ["run", str(bad), "--out", str(tmp_path / "bad"), "--no-progress"])
    assert r.exit_code != 0 and "paths.sender" in r.output and "Traceback" not in r.output
