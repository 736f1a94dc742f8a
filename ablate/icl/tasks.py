"""Few-shot in-context-learning tasks (docs/science.md §5) and their prompt items.

Every prompt is a list of demonstration lines ``"word1, word2: label"`` followed by the query line
``"wordA, wordB:"``, joined by newlines (no trailing space, no trailing newline)::

    plum, May: 0
    June, kiwi: 1
    fig, Oct:

The model's answer is the continuation ``" " + label`` (a space, then the label).

Tasks
-----
=============================  ======================================================================
``binary_fruit_month``         (fruit, month) -> 0, (month, fruit) -> 1
``binary_furniture_profession`` (furniture, profession) -> 0, (profession, furniture) -> 1
``four_fruit_month``           (E1,E1) 0, (E1,E2) 1, (E2,E1) 2, (E2,E2) 3 with E1 fruit, E2 month
``nine_fruit_animal_month``    label = 3*cat(first) + cat(second), cat: fruit 0, animal 1, month 2
``rel_subj`` ``rel_obj``        relation justification: a related pair -> ``true``, an unrelated
``rel_mod`` ``rel_partof``      pair -> ``false`` (hand-written pairs, :data:`RELATION_PAIRS`)
``pd_category_letter``         two categories drawn per prompt, each given a random letter; both
                               words of a line come from one category; label = its letter
``pd_order_letter``            two categories drawn per prompt; (X, Y) -> letter a, (Y, X) -> letter b
``pd_same_different``          three categories per prompt; both words from one category -> letter a,
                               from two different ones -> letter b
``pd_first_category_3way``     three categories per prompt, random letters; the label is the letter of
                               the *first* word's category, the second word is a distractor from a
                               fourth category
``pd_second_category_digit``   two categories per prompt with random digit labels from 2-9; the
                               label follows the *second* word's category, the first is a distractor
=============================  ======================================================================

The ``pd_*`` (pattern-discovery) tasks cannot be solved by copying: the label symbols and the
categories are re-drawn for every prompt (an item), and the query's words never occur in the
demonstrations, so the answer must be inferred from the category structure of the context.
In every task the query pair is never one of the demonstration pairs.

Word lists
----------
Category words come from :mod:`ablate.icl.wordlists` (``split_words(category, part)``); evaluation
uses the **held-out** words by default (the built-in trainer only puts training words in labelled
lines). The relation pairs are hand-written here and are not split (the trainer never sees them).

Sampling (seeded, deterministic, independent of ``PYTHONHASHSEED``)
-------------------------------------------------------------------
* Item ``i`` of a task has one *episode* (label symbols, categories) and one query, drawn from
  ``(seed, task, i)``: the same item has the same query and gold label at every shot count.
  Gold classes cycle with the item index (``i % n_classes``), so golds are exactly class-balanced
  over any multiple of ``n_classes`` items.
* Demonstrations are drawn from ``(seed, task, shots, i)``: class-balanced (``shots // C`` of every
  class, the remainder from distinct random classes), so every class is present when
  ``shots >= C``; their order is shuffled. A demonstration pair is not repeated within a prompt
  while the pool allows it.

Controls (same demonstration inputs and query as the ``clean`` item)
--------------------------------------------------------------------
* ``shuffled``: the shown labels are an independent class-balanced draw (same procedure, another
  random stream), unrelated to the inputs: the format and the label set are kept, the mapping is
  broken.
* ``nolabel``: demonstration lines show the inputs only (``"plum, May"``): the format is broken.
"""

from __future__ import annotations

import difflib
import random
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from ablate.model.errors import AblateError

__all__ = [
    "IclTaskError", "Task", "Episode", "IclItem", "TASKS", "CLASSIFICATION_TASKS", "RELATION_TASKS",
    "PATTERN_TASKS", "DEFAULT_SHOTS", "CONTROLS", "RELATION_PAIRS", "get_task", "make_items",
    "render_prompt", "word_pool",
]

#: Shot counts of the paper.
DEFAULT_SHOTS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 10, 20)
#: Prompt variants built on the same items.
CONTROLS: tuple[str, ...] = ("clean", "shuffled", "nolabel")
#: Letter symbols for the pattern-discovery tasks (no vowels, so no English one-letter words).
LETTERS: tuple[str, ...] = tuple("BCDFGHJKLMNPQRSTVWXZ")
#: Digit symbols for ``pd_second_category_digit`` (0 and 1 are left to the fixed binary tasks).
DIGITS: tuple[str, ...] = tuple("23456789")
#: Categories the pattern-discovery tasks draw from.
PD_CATEGORIES: tuple[str, ...] = ("fruit", "animal", "furniture", "profession", "month", "color",
                                  "country", "vegetable", "tool", "vehicle", "instrument")


class IclTaskError(AblateError, ValueError):
    """A task name, shot count, word list or control is invalid."""


# --------------------------------------------------------------------------------------------
# relation pairs (hand-written; "unrelated" pairs have the same shape but the relation fails)

RELATION_PAIRS: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
    # subject noun, verb (verb <- nsubj)
    "subj": {
        "related": (
            ("dog", "barks"), ("cat", "meows"), ("bird", "sings"), ("baby", "cries"),
            ("fire", "burns"), ("sun", "shines"), ("bell", "rings"), ("wind", "blows"),
            ("river", "flows"), ("horse", "gallops"), ("bee", "stings"), ("snake", "hisses"),
            ("cow", "moos"), ("clock", "ticks"), ("rain", "falls"), ("chef", "cooks"),
            ("pilot", "flies"), ("fish", "swims"),
        ),
        "unrelated": (
            ("table", "barks"), ("stone", "sings"), ("cloud", "reads"), ("spoon", "gallops"),
            ("chair", "cries"), ("brick", "swims"), ("carpet", "meows"), ("window", "cooks"),
            ("shoe", "hisses"), ("lamp", "moos"), ("fork", "laughs"), ("pebble", "writes"),
            ("bread", "roars"), ("glove", "ticks"), ("pillow", "stings"), ("sock", "flies"),
            ("bucket", "dances"), ("button", "shines"),
        ),
    },
    # verb, direct object (verb <- obj)
    "obj": {
        "related": (
            ("eat", "bread"), ("drink", "water"), ("read", "book"), ("write", "letter"),
            ("drive", "car"), ("ride", "horse"), ("play", "piano"), ("open", "door"),
            ("wear", "hat"), ("paint", "wall"), ("kick", "ball"), ("bake", "cake"),
            ("plant", "tree"), ("wash", "dishes"), ("sing", "song"), ("catch", "fish"),
            ("climb", "mountain"), ("fly", "kite"),
        ),
        "unrelated": (
            ("drink", "chair"), ("read", "soup"), ("drive", "song"), ("ride", "window"),
            ("wear", "thunder"), ("bake", "cloud"), ("kick", "sky"), ("plant", "car"),
            ("sing", "table"), ("catch", "mountain"), ("climb", "soup"), ("eat", "ladder"),
            ("open", "river"), ("wash", "idea"), ("fly", "house"), ("write", "water"),
            ("paint", "silence"), ("play", "bread"),
        ),
    },
    # modifier, noun (noun <- amod)
    "mod": {
        "related": (
            ("red", "apple"), ("cold", "ice"), ("hot", "fire"), ("tall", "tree"),
            ("loud", "thunder"), ("sweet", "sugar"), ("green", "grass"), ("dark", "night"),
            ("soft", "pillow"), ("sharp", "knife"), ("wet", "rain"), ("bright", "sun"),
            ("deep", "ocean"), ("heavy", "rock"), ("fast", "car"), ("sour", "lemon"),
            ("round", "ball"), ("salty", "sea"),
        ),
        "unrelated": (
            ("hot", "ice"), ("cold", "fire"), ("dry", "rain"), ("dark", "sun"),
            ("sweet", "rock"), ("fluffy", "knife"), ("loud", "feather"), ("heavy", "feather"),
            ("sour", "cloud"), ("sharp", "pillow"), ("round", "triangle"), ("green", "night"),
            ("happy", "brick"), ("wet", "desert"), ("bright", "midnight"), ("fast", "snail"),
            ("tall", "pebble"), ("salty", "sugar"),
        ),
    },
    # part, whole (Part-of)
    "partof": {
        "related": (
            ("wheel", "car"), ("leaf", "tree"), ("page", "book"), ("wing", "bird"),
            ("finger", "hand"), ("petal", "flower"), ("roof", "house"), ("screen", "laptop"),
            ("blade", "knife"), ("toe", "foot"), ("keel", "ship"), ("string", "guitar"),
            ("trunk", "elephant"), ("lens", "camera"), ("feather", "bird"), ("yolk", "egg"),
            ("spoke", "wheel"), ("crust", "pizza"),
        ),
        "unrelated": (
            ("wheel", "tree"), ("leaf", "car"), ("page", "bird"), ("wing", "book"),
            ("petal", "keyboard"), ("roof", "flower"), ("screen", "egg"), ("blade", "guitar"),
            ("yolk", "laptop"), ("string", "pizza"), ("keel", "camera"), ("feather", "knife"),
            ("spoke", "elephant"), ("lens", "house"), ("toe", "ship"), ("crust", "hand"),
            ("trunk", "spoon"), ("finger", "cloud"),
        ),
    },
}


# --------------------------------------------------------------------------------------------
# word pools


def word_pool(category: str, part: str = "heldout") -> tuple[str, ...]:
    """Words of one category from :mod:`ablate.icl.wordlists`.

    Args:
        category: a category of ``ablate.icl.wordlists.CATEGORIES``.
        part: ``"heldout"`` (evaluation default), ``"train"`` or ``"all"``.

    Raises:
        IclTaskError: the category is unknown.
    """
    from ablate.icl.wordlists import CATEGORIES, split_words

    if category not in CATEGORIES:
        close = difflib.get_close_matches(category, list(CATEGORIES), n=3)
        raise IclTaskError(f"unknown word category {category!r}"
                           + (f"; did you mean {close}?" if close else f"; known: {sorted(CATEGORIES)}"))
    words = tuple(split_words(category, part))
    if len(words) < 2:
        raise IclTaskError(f"category {category!r} has {len(words)} {part} words; need at least 2")
    return words


# --------------------------------------------------------------------------------------------
# episodes and tasks

Alternative = tuple[tuple[str, ...], tuple[str, ...]]  # (pool of first words, pool of second words)


@dataclass(frozen=True)
class Episode:
    """The rule of one prompt: its label symbols and, per class, how to draw an input pair.

    Attributes:
        labels: label string of each class (class ``c`` is shown as ``labels[c]``).
        classes: per class, alternatives ``(first_pool, second_pool)``; a pair of the class is
            drawn by picking an alternative uniformly and then a word from each pool (two
            different words).
        novel_query_words: when true, demonstrations never use a word of the query.
    """

    labels: tuple[str, ...]
    classes: tuple[tuple[Alternative, ...], ...]
    novel_query_words: bool = False

    def draw(self, cls: int, rng: random.Random, avoid_words: frozenset[str] = frozenset(),
             avoid_pairs: Iterable[tuple[str, str]] = (), tries: int = 200) -> tuple[str, str]:
        """Draw an input pair of class ``cls`` avoiding the given words and (if possible) pairs."""
        avoid_pairs = set(avoid_pairs)
        fallback = None
        for _ in range(tries):
            p1, p2 = rng.choice(self.classes[cls])
            c1 = [w for w in p1 if w not in avoid_words]
            c2 = [w for w in p2 if w not in avoid_words]
            if not c1 or not c2:
                continue
            w1 = rng.choice(c1)
            c2 = [w for w in c2 if w != w1]
            if not c2:
                continue
            pair = (w1, rng.choice(c2))
            if pair not in avoid_pairs:
                return pair
            fallback = fallback or pair
        if fallback is not None:
            return fallback
        raise IclTaskError(f"cannot draw an input pair of class {cls} ({self.labels[cls]!r}): the word "
                           "pools are too small once the query's words are excluded")


@dataclass(frozen=True)
class Task:
    """A few-shot task.

    Attributes:
        name: registry name.
        kind: ``"classification"``, ``"relation"`` or ``"pattern"``.
        n_classes: number of classes (labels) per prompt.
        make_episode: ``f(rng, part) -> Episode`` (fixed for the first two kinds, re-drawn per item
            for pattern discovery).
        description: one line for tables and ``--help``.
    """

    name: str
    kind: str
    n_classes: int
    make_episode: Callable[[random.Random, str], Episode] = field(repr=False, compare=False)
    description: str = ""


def _category_classes(cats: Sequence[str], rule: Sequence[tuple[int, int]], part: str):
    pools = [word_pool(c, part) for c in cats]
    return tuple(((pools[a], pools[b]),) for a, b in rule)


def _binary(e1: str, e2: str) -> Callable[[random.Random, str], Episode]:
    def make(rng: random.Random, part: str) -> Episode:
        return Episode(("0", "1"), _category_classes((e1, e2), ((0, 1), (1, 0)), part))
    return make


def _four(rng: random.Random, part: str) -> Episode:
    return Episode(("0", "1", "2", "3"),
                   _category_classes(("fruit", "month"), ((0, 0), (0, 1), (1, 0), (1, 1)), part))


def _nine(rng: random.Random, part: str) -> Episode:
    rule = tuple((a, b) for a in range(3) for b in range(3))
    return Episode(tuple(str(i) for i in range(9)),
                   _category_classes(("fruit", "animal", "month"), rule, part))


def _relation(rel: str) -> Callable[[random.Random, str], Episode]:
    def make(rng: random.Random, part: str) -> Episode:
        pairs = RELATION_PAIRS[rel]
        classes = tuple(tuple(((a,), (b,)) for a, b in pairs[k]) for k in ("related", "unrelated"))
        return Episode(("true", "false"), classes)
    return make


def _pd_category_letter(rng: random.Random, part: str) -> Episode:
    cats = rng.sample(PD_CATEGORIES, 2)
    labels = tuple(rng.sample(LETTERS, 2))
    pools = [word_pool(c, part) for c in cats]
    return Episode(labels, tuple(((p, p),) for p in pools), novel_query_words=True)


def _pd_order_letter(rng: random.Random, part: str) -> Episode:
    cats = rng.sample(PD_CATEGORIES, 2)
    labels = tuple(rng.sample(LETTERS, 2))
    return Episode(labels, _category_classes(cats, ((0, 1), (1, 0)), part), novel_query_words=True)


def _pd_same_different(rng: random.Random, part: str) -> Episode:
    cats = rng.sample(PD_CATEGORIES, 3)
    labels = tuple(rng.sample(LETTERS, 2))
    pools = [word_pool(c, part) for c in cats]
    same = tuple((p, p) for p in pools)
    diff = tuple((pools[a], pools[b]) for a in range(3) for b in range(3) if a != b)
    return Episode(labels, (same, diff), novel_query_words=True)


def _pd_first_category_3way(rng: random.Random, part: str) -> Episode:
    cats = rng.sample(PD_CATEGORIES, 4)
    labels = tuple(rng.sample(LETTERS, 3))
    pools = [word_pool(c, part) for c in cats]
    return Episode(labels, tuple(((pools[c], pools[3]),) for c in range(3)), novel_query_words=True)


def _pd_second_category_digit(rng: random.Random, part: str) -> Episode:
    cats = rng.sample(PD_CATEGORIES, 3)
    labels = tuple(rng.sample(DIGITS, 2))
    pools = [word_pool(c, part) for c in cats]
    return Episode(labels, tuple(((pools[2], pools[c]),) for c in range(2)), novel_query_words=True)


def _registry() -> dict[str, Task]:
    tasks = [
        Task("binary_fruit_month", "classification", 2, _binary("fruit", "month"),
             "(fruit, month) -> 0; (month, fruit) -> 1"),
        Task("binary_furniture_profession", "classification", 2, _binary("furniture", "profession"),
             "(furniture, profession) -> 0; (profession, furniture) -> 1"),
        Task("four_fruit_month", "classification", 4, _four,
             "(E1,E1) 0, (E1,E2) 1, (E2,E1) 2, (E2,E2) 3; E1 fruit, E2 month"),
        Task("nine_fruit_animal_month", "classification", 9, _nine,
             "3*cat(first) + cat(second); fruit 0, animal 1, month 2"),
    ]
    for rel in RELATION_PAIRS:
        tasks.append(Task(f"rel_{rel}", "relation", 2, _relation(rel),
                          f"{rel} relation: related pair -> true, unrelated -> false"))
    tasks += [
        Task("pd_category_letter", "pattern", 2, _pd_category_letter,
             "two categories per prompt with random letters; label = the category's letter"),
        Task("pd_order_letter", "pattern", 2, _pd_order_letter,
             "word order of two per-prompt categories; random letters"),
        Task("pd_same_different", "pattern", 2, _pd_same_different,
             "same vs different category; random letters"),
        Task("pd_first_category_3way", "pattern", 3, _pd_first_category_3way,
             "letter of the first word's category (3 per prompt); second word a distractor"),
        Task("pd_second_category_digit", "pattern", 2, _pd_second_category_digit,
             "random digit of the second word's category; first word a distractor"),
    ]
    return {t.name: t for t in tasks}


#: name -> :class:`Task`.
TASKS: dict[str, Task] = _registry()
CLASSIFICATION_TASKS = tuple(n for n, t in TASKS.items() if t.kind == "classification")
RELATION_TASKS = tuple(n for n, t in TASKS.items() if t.kind == "relation")
PATTERN_TASKS = tuple(n for n, t in TASKS.items() if t.kind == "pattern")


def get_task(name: str | Task) -> Task:
    """Look a task up by name.

    Raises:
        IclTaskError: unknown name (the message suggests close names and lists all).
    """
    if isinstance(name, Task):
        return name
    if name in TASKS:
        return TASKS[name]
    close = difflib.get_close_matches(str(name), list(TASKS), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise IclTaskError(f"unknown ICL task {name!r}.{hint} Known tasks: {', '.join(TASKS)}")


# --------------------------------------------------------------------------------------------
# items and rendering


@dataclass(frozen=True)
class IclItem:
    """One prompt: demonstrations (input pair, shown label), a query and its gold label.

    Attributes:
        task: task name.
        shots: number of demonstrations.
        item: item index (the same index has the same query and gold at every shot count).
        control: ``"clean"``, ``"shuffled"`` or ``"nolabel"``.
        demos: ``((w1, w2, shown_label or None), ...)``.
        query: the query pair.
        gold: the gold label string.
        labels: the prompt's label set, in class order (the candidates scored).
        true_demo_labels: the correct labels of the demonstrations (differ from the shown ones
            under ``shuffled``).
    """

    task: str
    shots: int
    item: int
    control: str
    demos: tuple[tuple[str, str, str | None], ...]
    query: tuple[str, str]
    gold: str
    labels: tuple[str, ...]
    true_demo_labels: tuple[str, ...] = ()

    @property
    def prompt(self) -> str:
        """The prompt text (see :func:`render_prompt`)."""
        return render_prompt(self.demos, self.query)[0]

    @property
    def label_spans(self) -> list[tuple[int, int]]:
        """Character spans of each shown demonstration answer ``" " + label`` in :attr:`prompt`."""
        return render_prompt(self.demos, self.query)[1]

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    def key(self) -> dict:
        return {"task": self.task, "shots": self.shots, "item": self.item, "control": self.control}


def render_prompt(demos: Sequence[tuple[str, str, str | None]], query: tuple[str, str]
                  ) -> tuple[str, list[tuple[int, int]]]:
    """Render ``"w1, w2: label"`` lines and the query line ``"wA, wB:"``, joined by ``"\\n"``.

    A demonstration with label ``None`` is rendered as ``"w1, w2"`` (the no-label control).

    Returns:
        ``(prompt, spans)`` where ``spans[i]`` is the character span of the answer ``" " + label``
        of the i-th labelled demonstration.
    """
    text, spans = "", []
    for w1, w2, lab in demos:
        if lab is None:
            text += f"{w1}, {w2}\n"
            continue
        text += f"{w1}, {w2}:"
        spans.append((len(text), len(text) + 1 + len(lab)))
        text += f" {lab}\n"
    text += f"{query[0]}, {query[1]}:"
    return text, spans


def _balanced_classes(n: int, C: int, rng: random.Random) -> list[int]:
    out = list(range(C)) * (n // C) + rng.sample(range(C), n % C)
    rng.shuffle(out)
    return out


def _rng(*parts) -> random.Random:
    # str seeds are hashed with SHA-512 by `random`: stable across runs and PYTHONHASHSEED
    return random.Random("/".join(map(str, parts)))


def make_items(task: str | Task, shots: Iterable[int] = DEFAULT_SHOTS, n_items: int = 32, *,
               seed: int = 0, controls: Iterable[str] = CONTROLS, part: str = "heldout") -> list[IclItem]:
    """Build the prompt items of one task for every shot count and control.

    Args:
        task: task name or :class:`Task`.
        shots: demonstration counts (each >= 0).
        n_items: items per shot count (use a multiple of the class count for exact balance).
        seed: master seed.
        controls: any of :data:`CONTROLS`.
        part: word-list part for category words (``"heldout"`` by default).

    Returns:
        Items ordered by (shots, item, control).

    Raises:
        IclTaskError: unknown task / control, negative shots, ``n_items < 1``.
    """
    t = get_task(task)
    shots = [int(s) for s in shots]
    controls = list(controls)
    if not shots:
        raise IclTaskError("make_items: no shot counts given")
    if any(s < 0 for s in shots):
        raise IclTaskError(f"make_items: shot counts must be >= 0, got {shots}")
    if n_items < 1:
        raise IclTaskError(f"make_items: n_items must be >= 1, got {n_items}")
    bad = [c for c in controls if c not in CONTROLS]
    if bad or not controls:
        raise IclTaskError(f"make_items: unknown controls {bad}; use any of {CONTROLS}")
    episodes, queries = [], []
    for i in range(n_items):
        ep = t.make_episode(_rng(seed, t.name, "episode", i), part)
        if len(ep.labels) != t.n_classes or len(set(ep.labels)) != len(ep.labels):
            raise IclTaskError(f"task {t.name}: episode labels {ep.labels} are not {t.n_classes} distinct labels")
        gold_cls = i % t.n_classes
        queries.append((gold_cls, ep.draw(gold_cls, _rng(seed, t.name, "query", i))))
        episodes.append(ep)
    items: list[IclItem] = []
    for s in shots:
        for i in range(n_items):
            ep, (gcls, q) = episodes[i], queries[i]
            rng = _rng(seed, t.name, "demos", s, i)
            classes = _balanced_classes(s, t.n_classes, rng)
            avoid_w = frozenset(q) if ep.novel_query_words else frozenset()
            pairs: list[tuple[str, str]] = []
            for c in classes:
                pairs.append(ep.draw(c, rng, avoid_w, avoid_pairs=pairs + [q]))
            if q in pairs:  # only when a pool is exhausted; never let the query be a demonstration
                raise IclTaskError(f"task {t.name}: pools too small to keep the query out of {s} demonstrations")
            true_labels = tuple(ep.labels[c] for c in classes)
            srng = _rng(seed, t.name, "shuffled", s, i)
            shown_shuffled = tuple(ep.labels[c] for c in _balanced_classes(s, t.n_classes, srng))
            for ctl in controls:
                shown = {"clean": true_labels, "shuffled": shown_shuffled,
                         "nolabel": (None,) * s}[ctl]
                demos = tuple((a, b, lab) for (a, b), lab in zip(pairs, shown))
                items.append(IclItem(t.name, s, i, ctl, demos, q, ep.labels[gcls], ep.labels, true_labels))
    return items
