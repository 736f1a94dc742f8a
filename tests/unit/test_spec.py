
import pytest

from experiments.spec import SpecError, load_spec, spec_from_dict

BASE = {"name": "t", "seed": 1, "series": {"model": "some/model"}}


def test_shipped_specs_load():
    for name in ("sih_ablation", "emergence", "cross_arch", "sih_paths", "relations"):
        s = load_spec(name)
        assert s.name == name and s.controls.random_sets >= 19  # the empirical p against random heads can reach 1/20 = .05
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


# ---- issue 13: enum options declared once, sections of the one grid -----------------------------

@pytest.mark.parametrize("patch, msg", [
    ({"heads": {"rule": "top_k"}}, r"heads.rule: 'top_k' is not one of 'topk', 'fdr' \(did you mean 'topk'\?\)"),
    ({"heads": {"at": "finale"}}, "did you mean 'final'"),
    ({"operators": {"positions": "lst"}}, "did you mean 'last'"),
    ({"scores": {"directions": ["forward", "revers"]}}, r"scores.directions\[1\].*did you mean 'reverse'"),
    ({"scores": {"nulls": ["shufled"]}}, "did you mean 'shuffled'"),
    ({"icl": {"controls": ["clean", "nolabl"]}}, "did you mean 'nolabel'"),
    ({"levels": {"part": "held"}}, "did you mean 'heldout'"),
    ({"scores": {"relations": ["subj", "ob"]}}, "unknown relation 'ob'"),
    ({"scores": {"tau": -1}}, "scores.tau = -1.0: must be >= 0"),
    ({"scores": {"tau_percentile": 150}}, r"must lie in \[0, 100\]"),
    ({"operators": {"robustness": ["zero", "patch"]}}, "unknown operator 'patch'"),
    ({"heads": {"select": "explicit", "explicit": ["L0H1", "L0H1"]}}, "same head set twice"),
])
def test_enum_values_are_checked_once_with_did_you_mean(patch, msg):
    with pytest.raises(SpecError, match=msg):
        spec_from_dict({**BASE, **patch}, "f.toml")


@pytest.mark.parametrize("section, key, home", [("heads", "n_sentences", "scores"), ("heads", "relations", "scores"),
                                                ("icl", "positions", "operators"), ("heads", "max_tokens", "scores")])
def test_a_key_in_the_wrong_section_names_its_section(section, key, home):
    with pytest.raises(SpecError, match=rf"unknown key {section}.'{key}'.*belongs to the \[{home}\] section"):
        spec_from_dict({**BASE, section: {key: 1}}, "f.toml")


def test_parts_follow_the_sections():
    from experiments.spec import ABLATION_SECTIONS

    assert spec_from_dict(BASE).parts == ("ablation",)  # nothing but a series: the protocol
    s = spec_from_dict({**BASE, "scores": {"n_sentences": 5}})
    assert s.parts == ("scores",) and s.needs_scores and not s.ablation
    s = spec_from_dict({**BASE, "levels": {"shots": [0, 1]}})
    assert s.parts == ("levels",) and not s.needs_scores and s.levels.shots == (0, 1)
    for sec in ABLATION_SECTIONS:
        assert spec_from_dict({**BASE, "scores": {}, sec: {}}).parts == ("scores", "ablation")
    # the head selection needs scores unless every set is explicit and there is no induction set
    d = {**BASE, "heads": {"select": "explicit", "explicit": ["L0H0"], "induction": False}}
    assert not spec_from_dict(d).needs_scores
    # a spec survives its own dict (the manifest form)
    s = load_spec("sih_ablation")
    assert spec_from_dict(s.to_dict(), s.source) == s and s.scores.n_sentences is None  # = `ablate scan`


def test_cell_keys_are_typed_and_round_trip():
    from experiments.cells import CellKey

    for k in (CellKey("scores", 0), CellKey("levels", 10), CellKey("heads", 3), CellKey("lr", 5, op="none"),
              CellKey("lr", 5, op="mean"), CellKey("icl", 20, op="zero", task="pd_order_letter"),
              CellKey("patch", 1, task="binary_fruit_month")):
        assert CellKey.parse(str(k)) == k
    assert str(CellKey("icl", 20, op="mean", task="rel_subj")) == "icl/step=20/op=mean/task=rel_subj"
    assert CellKey("icl", 2, op="none", task="t").clean
    from ablate.model.errors import AblateError

    for bad in (lambda: CellKey("lr", 1), lambda: CellKey("scores", 1, op="mean"), lambda: CellKey("icl", 1, op="meen", task="t"),
                lambda: CellKey("heatmap", 1), lambda: CellKey.parse("icl/step=x")):
        with pytest.raises(AblateError):
            bad()


def test_plain_scan_and_the_shipped_sih_ablation_share_their_scores():
    """README's study: `ablate scan` (defaults) then `ablate run sih_ablation` into one folder."""
    from experiments.commands.scan import scan_spec

    scan = scan_spec(series="runs/x", seed=0, sentences=None, n_sentences=None, tau=2.2, tau_percentile=None)
    run = load_spec("sih_ablation")
    assert scan.scores == run.scores and scan.seed == run.seed


def test_every_scores_setting_has_an_ablate_scan_flag(monkeypatch, tmp_path):
    """`ablate scan` flags map onto the [scores] section (the one source of truth), typos get did-you-mean."""
    from click.testing import CliRunner

    import experiments.runner
    from experiments.cli import main

    seen = {}

    class _Summary:
        cells_failed = 0

    def fake_run_spec(spec, out, **kw):
        seen["spec"] = spec
        return _Summary()

    monkeypatch.setattr(experiments.runner, "run_spec", fake_run_spec)
    args = ["scan", "--model", str(tmp_path), "--out", str(tmp_path / "o"), "--relations", "subj,obj",
            "--directions", "forward", "--nulls", "baseline,shuffled", "--ov", "raw", "--max-tokens", "32",
            "--n-random", "8", "--random-length", "12", "--tau-percentile", "90"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    sc = seen["spec"].scores
    assert (sc.relations, sc.directions, sc.nulls, sc.ov) == (("subj", "obj"), ("forward",), ("baseline", "shuffled"), "raw")
    assert (sc.max_tokens, sc.n_random, sc.random_length, sc.tau_percentile) == (32, 8, 12, 90.0)
    r = CliRunner().invoke(main, ["scan", "--model", str(tmp_path), "--out", str(tmp_path / "o"), "--nulls", "basline"])
    assert r.exit_code != 0 and "did you mean 'baseline'" in r.output


def test_specs_without_kg_or_by_relation_keep_their_hash():
    """[scores] kg and heads.by_relation came later: a spec that does not use them hashes as before,
    so its existing run folders still resume (the same rule as [paths])."""
    d = load_spec("sih_ablation").to_dict()
    assert "kg" not in d["scores"] and "kg_pairs" not in d["scores"] and "by_relation" not in d["heads"]
    r = load_spec("relations").to_dict()
    assert r["scores"]["kg"] and r["heads"]["by_relation"] is True
