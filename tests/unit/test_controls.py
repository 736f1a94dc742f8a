import pytest

from ablate.scores.controls import histogram_mismatch, matched_random_sets
from ablate.model.errors import AblateError
from ablate.model.heads import HeadSet


def test_matched_sets_have_same_size_histogram_and_are_disjoint_and_seeded():
    t = HeadSet.parse("L0H1,L0H2,L3H0")
    sets = matched_random_sets(t, 4, 8, R=20, seed=1)
    assert len(sets) == 20 and len(set(sets)) > 10
    for s in sets:
        assert len(s) == 3 and histogram_mismatch(s, t) == 0
        assert not (set(s) & set(t))
    assert sets == matched_random_sets(t, 4, 8, R=20, seed=1)
    assert sets != matched_random_sets(t, 4, 8, R=20, seed=2)


def test_full_layer_spills_to_other_layers():
    t = HeadSet.parse("L0H0,L0H1")
    s = matched_random_sets(t, 2, 3, R=3, seed=0)
    assert all(len(x) == 2 and not (set(x) & set(t)) for x in s)


def test_errors():
    with pytest.raises(AblateError, match="R >= 1"):
        matched_random_sets(HeadSet.parse("L0H0"), 2, 2, R=0, seed=0)
    with pytest.raises(AblateError, match="empty"):
        matched_random_sets(HeadSet(), 2, 2, R=2, seed=0)
    with pytest.raises(AblateError, match="too few heads"):
        matched_random_sets(HeadSet.parse("L0H0,L0H1,L1H0"), 2, 2, R=1, seed=0)
