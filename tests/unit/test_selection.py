"""SIH selection: the planted head is selected by the FDR rule and by top-k; nothing else is."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ablate.model.errors import AblateError
from ablate.model.heads import HeadSet
from ablate.scores.relation_index import relation_index
from ablate.scores.selection import select_sihs, top_k_heads

from ablate.testing.planted import planted_relation_model  # noqa: E402
from tests.unit.test_relation_index import _planted_triplets  # noqa: E402


@pytest.fixture(scope="module")
def planted_result():
    A, b = list(range(10, 20)), 25
    h = planted_relation_model(A, b)
    trips = _planted_triplets(A, b, len(h.tokenizer), n=60)
    return relation_index(h, trips, tau=None, nulls=("baseline", "shuffled"))


def test_fdr_rule_selects_planted_head(planted_result):
    sel = select_sihs(planted_result, alpha=0.05, min_effect=0.2)
    assert sel.sets["planted/forward"] == HeadSet.parse("L0H0")
    assert sel.sets["all"] == HeadSet.parse("L0H0")
    rep = sel.report()
    assert rep["rule"] == "null-fdr" and rep["sets"]["all"] == "L0H0"
    assert rep["params"]["alpha"] == 0.05 and rep["params"]["nulls"] == ["baseline", "shuffled"]
    row = sel.table.query("layer == 0 and head == 0").iloc[0]
    assert row.q < 1e-6 and row.effect > 0.9 and row.ri_baseline < 0.01
    assert "L0H0" in sel.summary()


def test_min_effect_and_missing_null(planted_result):
    assert len(select_sihs(planted_result, min_effect=1.5).sets["all"]) == 0
    with pytest.raises(AblateError, match="not in the result"):
        select_sihs(planted_result, nulls=("nonexistent",))


def test_top_k(planted_result):
    """The one top-k rule: largest RI above the fake tail; the same on the result and on its tidy frame."""
    sel = top_k_heads(planted_result, 2)
    assert (0, 0) in sel.sets["all"] and len(sel.sets["all"]) <= 2
    top, second = sel.table.iloc[0], sel.table.iloc[1]
    assert (top["layer"], top["head"]) == (0, 0) and top.excess > 0.9 and top.group == "planted/forward"
    assert second.excess < 0.2  # the other heads barely beat their fake tail
    assert sel.rule == "top-k" and sel.params["null"] == "baseline"
    assert top_k_heads(planted_result.frame(), 2).sets == sel.sets
    # enough events are required: with an impossible minimum nothing is selected
    assert len(top_k_heads(planted_result, 2, min_events=10**9).sets["all"]) == 0
    with pytest.raises(AblateError):
        top_k_heads(planted_result, 0)
    with pytest.raises(AblateError, match="null 'nope'"):
        top_k_heads(planted_result, 2, null="nope")


def test_fdr_from_stored_test_rows_equals_fdr_on_the_result(planted_result):
    """The scan stores the null-FDR tests as score rows; selecting from those rows (what the runner's
    heads cell does, without recomputing the RI) gives the same sets and q-values as the result."""
    import pandas as pd

    from ablate.scores.selection import (null_tests, select_from_tests, selection_test_rows,
                                         tests_from_scores)

    direct = select_sihs(planted_result, alpha=0.05, min_effect=0.2)
    rows = pd.concat([planted_result.frame(),
                      selection_test_rows(null_tests(planted_result, nulls=("baseline", "shuffled")))])
    stored = select_from_tests(tests_from_scores(rows), alpha=0.05, min_effect=0.2)
    assert stored.sets == direct.sets and stored.sets["all"] == HeadSet.parse("L0H0")
    a = direct.table.sort_values(["group", "layer", "head"])["q"].to_numpy()
    b = stored.table.sort_values(["group", "layer", "head"])["q"].to_numpy()
    assert len(a) == len(b) == 4 and (abs(a - b) < 1e-12).all()
    with pytest.raises(AblateError, match="no selection tests"):
        tests_from_scores(planted_result.frame())
