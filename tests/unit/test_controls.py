import pytest

from ablate.scores.controls import histogram_mismatch, matched_random_sets
from ablate.model.errors import AblateError
from ablate.model.heads import HeadSet


def test_matched_sets_have_same_size_histogram_and_are_disjoint_and_seeded():
    t = HeadSet.parse("L0H1,L0H2,L3H0")
    sets = matched_random_sets(t, 4, 8, R=20, seed=1)
    assert len(sets) == 20 and len({str(x) for x in sets}) == 20   # distinct (pool: C(6,2) * 7 = 105)
    for s in sets:
        assert len(s) == 3 and histogram_mismatch(s, t) == 0
        assert not (set(s) & set(t))
    assert sets == matched_random_sets(t, 4, 8, R=20, seed=1)
    assert sets != matched_random_sets(t, 4, 8, R=20, seed=2)


def test_full_layer_spills_to_other_layers():
    t = HeadSet.parse("L0H0,L0H1")
    s = matched_random_sets(t, 2, 3, R=3, seed=0)
    assert all(len(x) == 2 and not (set(x) & set(t)) for x in s)
    # the only free layer-0 head plus one of layer 1's three: exactly three sets exist
    assert sorted(str(x) for x in matched_random_sets(t, 2, 3, R=10, seed=0)) == \
        ["L0H2,L1H0", "L0H2,L1H1", "L0H2,L1H2"]


@pytest.mark.parametrize("target,shape,expected", [
    ("L2H2,L2H3", (3, 4), ["L2H0,L2H1"]),                      # one matched set exists, not 19 copies
    ("L1H0", (2, 4), ["L1H1", "L1H2", "L1H3"]),
    ("L0H0,L1H0", (2, 3), sorted(f"L0H{a},L1H{b}" for a in (1, 2) for b in (1, 2))),
])
def test_small_pool_returns_every_matched_set_once(target, shape, expected):
    got = matched_random_sets(HeadSet.parse(target), *shape, R=19, seed=3)
    assert sorted(str(x) for x in got) == expected


def test_pool_just_above_R_gives_R_distinct_sets():
    t = HeadSet.parse("L0H0,L0H1")          # C(6, 2) = 15 matched sets in an 1x8 model; R = 10 of them
    got = matched_random_sets(t, 1, 8, R=10, seed=0)
    assert len(got) == 10 and len({str(x) for x in got}) == 10
    assert all(histogram_mismatch(x, t) == 0 and not (set(x) & set(t)) for x in got)


def test_errors():
    with pytest.raises(AblateError, match="R >= 1"):
        matched_random_sets(HeadSet.parse("L0H0"), 2, 2, R=0, seed=0)
    with pytest.raises(AblateError, match="empty"):
        matched_random_sets(HeadSet(), 2, 2, R=2, seed=0)
    with pytest.raises(AblateError, match="too few heads"):
        matched_random_sets(HeadSet.parse("L0H0,L0H1,L1H0"), 2, 2, R=1, seed=0)
