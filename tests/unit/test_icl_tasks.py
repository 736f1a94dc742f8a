"""ICL task definitions: golden prompt strings, balance, controls, seeding, errors."""

from collections import Counter

import pytest

from ablate.icl.tasks import (CONTROLS, PATTERN_TASKS, TASKS, IclItem, IclTaskError, get_task, make_items,
                              render_prompt, word_pool)


def test_golden_prompt_strings():
    demos = (("plum", "May", "0"), ("June", "kiwi", "1"))
    text, spans = render_prompt(demos, ("fig", "Oct"))
    assert text == "plum, May: 0\nJune, kiwi: 1\nfig, Oct:"
    assert [text[a:b] for a, b in spans] == [" 0", " 1"]
    assert render_prompt((), ("fig", "Oct"))[0] == "fig, Oct:"
    text, spans = render_prompt((("plum", "May", None), ("June", "kiwi", None)), ("fig", "Oct"))
    assert text == "plum, May\nJune, kiwi\nfig, Oct:" and spans == []
    it = IclItem("rel_subj", 1, 0, "clean", (("dog", "barks", "true"),), ("table", "sings"), "false",
                 ("true", "false"))
    assert it.prompt == "dog, barks: true\ntable, sings:"


def test_seeded_items_are_golden():
    """The generator is seeded by strings (SHA-512 in `random`): these exact prompts must not drift."""
    it = make_items("binary_fruit_month", shots=[2], n_items=1, seed=0)
    assert [x.prompt for x in it] == [
        "prune, March: 0\nApril, prune: 1\nlemon, April:",
        "prune, March: 1\nApril, prune: 0\nlemon, April:",
        "prune, March\nApril, prune\nlemon, April:",
    ]
    assert [x.control for x in it] == list(CONTROLS) and it[0].gold == "0"


def _cls(task, a, b):
    from ablate.icl.wordlists import category_of
    ca, cb = category_of(a), category_of(b)
    if task == "binary_fruit_month":
        return {("fruit", "month"): "0", ("month", "fruit"): "1"}[(ca, cb)]
    if task == "four_fruit_month":
        return str(2 * (ca == "month") + (cb == "month"))
    if task == "nine_fruit_animal_month":
        idx = {"fruit": 0, "animal": 1, "month": 2}
        return str(3 * idx[ca] + idx[cb])


@pytest.mark.parametrize("task", ["binary_fruit_month", "four_fruit_month", "nine_fruit_animal_month"])
def test_labels_follow_the_rule_on_heldout_words(task):
    from ablate.icl.wordlists import split_words
    held = {w for c in ("fruit", "month", "animal") for w in split_words(c, "heldout")}
    for it in make_items(task, shots=[0, 3, 20], n_items=18, controls=["clean"]):
        assert _cls(task, *it.query) == it.gold
        for a, b, lab in it.demos:
            assert _cls(task, a, b) == lab
            assert a in held and b in held


@pytest.mark.parametrize("task", list(TASKS))
def test_balance_presence_and_query_not_in_demos(task):
    t = get_task(task)
    items = make_items(task, shots=[1, 2, 5, 10, 20], n_items=2 * 9 * 2, controls=["clean"])
    for s in (1, 2, 5, 10, 20):
        its = [i for i in items if i.shots == s]
        golds = Counter(i.labels.index(i.gold) for i in its)
        assert len(set(golds.values())) == 1  # exactly balanced golds
        for it in its:
            assert len(it.demos) == s
            idx = Counter(it.labels.index(lab) for _, _, lab in it.demos)
            if s >= t.n_classes:
                assert set(idx) == set(range(t.n_classes))  # every class present
            assert max(idx.values()) - min(idx.values() or [0]) <= 1 or len(idx) < t.n_classes
            assert tuple(it.query) not in {(a, b) for a, b, _ in it.demos}
            if t.kind == "pattern":
                assert not set(it.query) & {w for a, b, _ in it.demos for w in (a, b)}


def test_pattern_tasks_redraw_labels_per_prompt():
    for task in PATTERN_TASKS:
        its = make_items(task, shots=[4], n_items=12, controls=["clean"])
        assert len({it.labels for it in its}) > 3, task


def test_same_item_same_query_across_shots_and_controls():
    its = make_items("four_fruit_month", shots=[0, 5, 10], n_items=4)
    for i in range(4):
        same = [it for it in its if it.item == i]
        assert len({(it.query, it.gold) for it in same}) == 1


def test_controls():
    its = make_items("nine_fruit_animal_month", shots=[20], n_items=9)
    by = {(it.item, it.control): it for it in its}
    agree = []
    for i in range(9):
        c, s, n = by[(i, "clean")], by[(i, "shuffled")], by[(i, "nolabel")]
        assert [d[:2] for d in c.demos] == [d[:2] for d in s.demos] == [d[:2] for d in n.demos]
        assert Counter(d[2] for d in s.demos).keys() == Counter(d[2] for d in c.demos).keys()
        assert all(d[2] is None for d in n.demos) and ":" not in n.prompt[:-1]
        agree += [a[2] == b[2] for a, b in zip(c.demos, s.demos)]
    assert sum(agree) / len(agree) < 0.3  # mapping broken (chance 1/9)


def test_deterministic():
    a = make_items("pd_same_different", shots=[3, 10], n_items=5, seed=7)
    b = make_items("pd_same_different", shots=[3, 10], n_items=5, seed=7)
    c = make_items("pd_same_different", shots=[3, 10], n_items=5, seed=8)
    assert a == b and a != c


def test_errors():
    with pytest.raises(IclTaskError, match="did you mean|Did you mean"):
        get_task("binary_fruit_mnth")
    with pytest.raises(IclTaskError, match="n_items"):
        make_items("rel_subj", n_items=0)
    with pytest.raises(IclTaskError, match=">= 0"):
        make_items("rel_subj", shots=[-1])
    with pytest.raises(IclTaskError, match="controls"):
        make_items("rel_subj", controls=["shufled"])
    with pytest.raises(IclTaskError, match="fruit"):
        word_pool("fruits")
