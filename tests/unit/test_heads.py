import pytest

from ablate.model.errors import AblateError, HeadIndexError
from ablate.model.heads import Head, HeadSet


def test_parse_print_roundtrip_sorted_and_deduplicated():
    hs = HeadSet.parse(" L4H0, L3H5 ,L3H5")
    assert str(hs) == "L3H5,L4H0"
    assert HeadSet.parse(str(hs)) == hs
    assert len(hs) == 2 and Head(3, 5) in hs and (4, 0) in hs
    assert hash(hs) == hash(HeadSet([(4, 0), (3, 5)]))
    assert HeadSet.parse("") == HeadSet()


def test_immutable_and_layer_histogram():
    hs = HeadSet.parse("L0H1,L0H2,L2H0")
    with pytest.raises(AttributeError):
        hs.foo = 1
    assert hs.layer_histogram() == {0: 2, 2: 1}
    assert hs.heads_in_layer(0) == (1, 2)
    assert (hs | "L1H1").layers() == (0, 1, 2)


@pytest.mark.parametrize("bad", ["L3", "H3L4", "L3H5;L4H0", "layer3head5"])
def test_parse_errors_say_the_format(bad):
    with pytest.raises(AblateError, match="L<layer>H<head>"):
        HeadSet.parse(bad)


def test_validate_ranges():
    with pytest.raises(HeadIndexError, match="2 layers"):
        HeadSet.parse("L2H0").validate(2, 4)
    with pytest.raises(HeadIndexError, match="4 heads"):
        HeadSet.parse("L1H4").validate(2, 4)
    assert HeadSet.parse("L1H3").validate(2, 4)
