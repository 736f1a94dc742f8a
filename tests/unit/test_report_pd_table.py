"""The demo report's PD-by-checkpoint table: counts, exact CIs and the p < .001 mark, by hand."""

import pandas as pd


def _items(tmp_path, step_counts):
    rows = []
    for step, (task, kind, chance, k, n) in step_counts:
        for i in range(n):
            rows.append(dict(step=step, task=task, kind=kind, shots=10, control="clean", condition="clean",
                             pd=float(i < k), chance=chance))
            rows.append(dict(step=step, task=task, kind=kind, shots=2, control="clean", condition="clean",
                             pd=1.0, chance=chance))  # fewer shots: not in the table
    run = tmp_path / "training"
    run.mkdir()
    pd.DataFrame(rows).to_parquet(run / "icl_items.parquet")
    return run


def test_pd_table_counts_intervals_and_marks(tmp_path):
    from experiments.report import _pd_by_checkpoint

    run = _items(tmp_path, [(0, ("pd_category_letter", "pattern", 0.5, 0, 12)),
                            (8000, ("pd_category_letter", "pattern", 0.5, 12, 12)),
                            (0, ("binary_fruit_month", "classification", 0.5, 6, 12)),
                            (8000, ("binary_fruit_month", "classification", 0.5, 9, 12))])
    md = "\n".join(_pd_by_checkpoint(run))
    # Clopper-Pearson: 0/12 -> [0, 1 - 0.025 ** (1/12)] = [0, 0.26]; 12/12 -> [0.025 ** (1/12), 1] = [0.74, 1]
    assert "| 0 | 0/12 = 0.00 [0.00, 0.26] | 6/12 = 0.50 [0.21, 0.79] |" in md
    # 12/12 at chance .5: p = 0.5 ** 12 = 2.4e-4 < .001 -> marked; 9/12: p = .073 -> not marked
    assert "| 8000 | 12/12 = 1.00 [0.74, 1.00] * | 9/12 = 0.75 [0.43, 0.95] |" in md
    assert "(10 shots" in md and md.index("pd_category_letter") < md.index("binary_fruit_month")


def test_pd_table_is_left_out_for_a_single_model(tmp_path):
    from experiments.report import _pd_by_checkpoint

    run = _items(tmp_path, [(0, ("pd_category_letter", "pattern", 0.5, 3, 12))])
    assert _pd_by_checkpoint(run) == []


def test_ri_table_compares_the_best_head_with_the_baseline_maximum(tmp_path):
    from experiments.report import _ri_by_checkpoint

    run = tmp_path / "training"
    run.mkdir()
    rows = []
    for step, vals, base in ((0, (0.05, 0.04), (0.10, 0.02)), (8000, (0.30, 0.12), (0.10, 0.11))):
        for h, (v, b) in enumerate(zip(vals, base)):
            rows += [dict(step=step, tokens_seen=step, score="relation_index", relation="subj", direction="forward",
                          layer=1, head=h, value=v, n_events=50),
                     dict(step=step, tokens_seen=step, score="baseline", relation="subj", direction="forward",
                          layer=1, head=h, value=b, n_events=50)]
    rows.append(dict(step=8000, tokens_seen=8000, score="relation_index", relation="subj", direction="forward",
                     layer=0, head=0, value=0.9, n_events=3))  # too few events: ignored
    pd.DataFrame(rows).to_parquet(run / "head_scores.parquet")
    pd.DataFrame([dict(step=8000, role="target", head_set="L1H0", rule="topk")]).to_parquet(run / "head_sets.parquet")
    md = "\n".join(_ri_by_checkpoint(run))
    assert "| 0 | 0.05 (L1H0) vs 0.10; 0 above |" in md
    assert "| 8000 | 0.30 (L1H0) vs 0.11; 2 above; target L1H0 0.30 |" in md
