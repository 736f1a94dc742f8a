
import pytest

from experiments.spec import SpecError, load_spec, spec_from_dict

BASE = {"name": "t", "seed": 1, "series": {"model": "some/model"}}


def test_shipped_specs_load():
    for name in ("sih_ablation", "emergence", "cross_arch"):
        s = load_spec(name)
        assert s.name == name and s.controls.random_sets >= 1
    s = load_spec("sih_ablation")
    assert s.operators.all[0] == "mean" and "zero" in s.operators.all


def test_typo_gets_did_you_mean_and_names_file(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('name = "x"\n[series]\nmodel = "m"\n[controls]\nrandom_set = 4\n')
    with pytest.raises(SpecError) as e:
        load_spec(p)
    assert str(p) in str(e.value) and "random_set" in str(e.value) and "did you mean 'random_sets'" in str(e.value)
    with pytest.raises(SpecError, match="did you mean 'heads'"):
        spec_from_dict({**BASE, "head": {}}, "f.toml")


@pytest.mark.parametrize("patch, msg", [
    ({"series": {}}, "needs `path`"),
    ({"controls": {"random_sets": 0}}, "random_sets = 0"),
    ({"heads": {"select": "explicit", "explicit": []}}, "heads.explicit is empty"),
    ({"heads": {"select": "explicit", "explicit": [""]}}, "empty head set"),
    ({"heads": {"select": "explicit", "explicit": ["L1X2"]}}, "L<layer>H<head>"),
    ({"operators": {"primary": "meen"}}, "did you mean 'mean'"),
    ({"icl": {"shots": []}}, "icl.shots"),
    ({"icl": {"items": "many"}}, "icl.items: expected an integer"),
    ({"series": {"model": "m", "steps": "some"}}, "series.steps"),
    ({"operators": {"patch": True}, "icl": {"shots": [0]}}, "operators.patch = true needs a shot count >= 1"),
    ({"operators": {"patch": "yes"}}, "operators.patch"),
])
def test_value_errors_name_the_key(patch, msg):
    d = {**BASE, **patch}
    with pytest.raises(SpecError, match=msg):
        spec_from_dict(d, "f.toml")


def test_hash_depends_on_content_only(tmp_path):
    a = spec_from_dict(BASE, "a.toml")
    b = spec_from_dict(dict(BASE), "b.toml")
    c = spec_from_dict({**BASE, "seed": 2}, "a.toml")
    assert a.hash() == b.hash() != c.hash()
    assert a.with_series(path="x").series.path == "x"


def test_missing_file_lists_shipped_specs():
    with pytest.raises(SpecError, match="sih_ablation"):
        load_spec("no_such_spec")
