"""Knowledge-graph relation triplets (docs/science.md §3): AGENDA, WordNet, generic TSV, built-in.

All loaders return tokenizer-independent :class:`~ablate.triplets.relations.WordTriplet` lists (character
spans); :func:`~ablate.triplets.relations.align_triplets` maps them onto a model tokenizer (same
multi-token rule as the syntactic relations) and adds reverse directions.

* :func:`agenda_word_triplets`: AGENDA records (``title``, ``entities``, ``types``,
  ``relations`` as ``"X -- USED-FOR -- Y"``, ``abstract`` with entity tags ``<method_0>`` or
  ``abstract_og`` with the entity strings). Per record, every entity is replaced by a single
  capital letter, in entity order, from ``B C D F G H J K L M O P Q R T U V X Y Z`` (A, I, N,
  S, W, E are skipped, as in the paper: they are words or common initials), so head and tail are
  one token each; then the function words of :data:`FUNCTION_WORDS` are removed. A relation
  becomes a triplet in the first sentence of the processed abstract that contains both letters
  (first occurrence of each); relations whose entities never co-occur in a sentence are skipped.
* :func:`wordnet_word_triplets`: Hyponym-of / Part-of pairs of single-word WordNet nouns,
  rendered into sentences with :data:`KG_TEMPLATES`. WordNet data is read by nltk from its data
  path or from Debian's ``wordnet-base`` (``/usr/share/wordnet``); :class:`WordNetUnavailableError`
  says how to install it.
* :func:`builtin_word_triplets`: a small embedded hypernymy / part-of graph (written for this
  project) rendered the same way: the offline default.
* :func:`category_word_triplets`: ``Category-of`` (word -> its category) over the category words
  of :mod:`ablate.icl.wordlists` -- the relation the built-in training recipe's template sentences
  teach ("A plum is a fruit."), rendered into longer sentences of the same meaning.
* :func:`kg_word_triplets`: the sources a spec names (``[scores] kg``), in one list.
* :func:`tsv_word_triplets`: rows ``head<TAB>relation<TAB>tail<TAB>sentence`` (header optional);
  head and tail are found in the sentence as whole words (case-insensitive, first occurrence,
  non-overlapping).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ablate.model.errors import AblateError
from ablate.triplets.relations import WordTriplet

__all__ = ["KGError", "WordNetUnavailableError", "ENTITY_LETTERS", "FUNCTION_WORDS", "KG_TEMPLATES",
           "BUILTIN_KG", "KG_SOURCES", "agenda_word_triplets", "load_agenda", "wordnet_word_triplets",
           "builtin_word_triplets", "category_word_triplets", "kg_word_triplets", "check_kg_sources",
           "tsv_word_triplets", "render"]

#: capital letters used as entity placeholders: A, I, N, S, W, E are skipped.
ENTITY_LETTERS = tuple(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in "AINSWE")

#: frequent function words removed from AGENDA abstracts (lower-case match).
FUNCTION_WORDS = frozenset(
    "a an the of to in on at by for from with as and or but nor is are was were be been being this that "
    "these those it its we our us they their them which who whom whose than then there here also such "
    "into onto over under about can could may might will would shall should has have had do does did".split()
)

#: relation -> sentence templates; ``{h}`` = head word, ``{t}`` = tail word. They are long
#: enough (>= 10 tokens) for the fake-tail baseline and keep head and tail apart.
KG_TEMPLATES: dict[str, tuple[str, ...]] = {
    "Hyponym-of": ("In the old book I read that every {h} is a kind of {t}, as most people know.",
                   "My teacher said that a {h} is one type of {t} that we can see here."),
    "Part-of": ("In the old book I read that the {h} is a part of the {t}, as most people know.",
                "My teacher said that every {t} has a {h} that we can see here."),
    "Antonym-of": ("In the old book I read that {h} is the opposite of {t}, as most people know.",
                   "My teacher said that the word {h} means the opposite of {t} in this story."),
    "Category-of": ("We were told in class that {h} belongs to the {t} group, and we wrote it down.",
                    "In the old book I read that {h} is one of the {t} words, as most people know."),
}

#: the knowledge-graph sources a spec's ``[scores] kg`` may name (``tsv:PATH`` takes a file)
KG_SOURCES = ("wordnet", "builtin", "templates", "tsv:PATH")

#: the embedded fallback graph: (head, relation, tail), common single words.
BUILTIN_KG: tuple[tuple[str, str, str], ...] = tuple(
    [(h, "Hyponym-of", t) for h, t in [
        ("dog", "animal"), ("cat", "animal"), ("horse", "animal"), ("cow", "animal"), ("sparrow", "bird"),
        ("eagle", "bird"), ("owl", "bird"), ("salmon", "fish"), ("trout", "fish"), ("shark", "fish"),
        ("apple", "fruit"), ("pear", "fruit"), ("plum", "fruit"), ("banana", "fruit"), ("grape", "fruit"),
        ("carrot", "vegetable"), ("potato", "vegetable"), ("onion", "vegetable"), ("oak", "tree"),
        ("pine", "tree"), ("maple", "tree"), ("rose", "flower"), ("tulip", "flower"), ("lily", "flower"),
        ("chair", "furniture"), ("table", "furniture"), ("sofa", "furniture"), ("desk", "furniture"),
        ("hammer", "tool"), ("saw", "tool"), ("drill", "tool"), ("car", "vehicle"), ("truck", "vehicle"),
        ("bus", "vehicle"), ("bicycle", "vehicle"), ("piano", "instrument"), ("violin", "instrument"),
        ("guitar", "instrument"), ("shirt", "garment"), ("coat", "garment"), ("teacher", "person"),
        ("doctor", "person"), ("farmer", "person"), ("iron", "metal"), ("copper", "metal"), ("gold", "metal"),
        ("red", "color"), ("blue", "color"), ("green", "color"), ("football", "sport"), ("tennis", "sport"),
    ]]
    + [(h, "Part-of", t) for h, t in [
        ("wheel", "car"), ("engine", "car"), ("door", "house"), ("roof", "house"), ("window", "house"),
        ("wall", "room"), ("finger", "hand"), ("thumb", "hand"), ("toe", "foot"), ("leaf", "tree"),
        ("branch", "tree"), ("root", "tree"), ("petal", "flower"), ("page", "book"), ("cover", "book"),
        ("wing", "bird"), ("feather", "bird"), ("beak", "bird"), ("tail", "dog"), ("paw", "dog"),
        ("handle", "door"), ("blade", "knife"), ("keyboard", "computer"), ("screen", "computer"),
        ("string", "guitar"), ("key", "piano"), ("sleeve", "shirt"), ("collar", "shirt"), ("nose", "face"),
        ("eye", "face"), ("mouth", "face"), ("chapter", "book"), ("seed", "apple"), ("trunk", "tree"),
        ("room", "house"), ("lens", "camera"), ("sail", "boat"), ("deck", "ship"), ("leg", "table"),
        ("seat", "chair"),
    ]]
)


class KGError(AblateError):
    """A knowledge-graph file could not be read or yielded nothing."""


class WordNetUnavailableError(KGError):
    """No WordNet data is installed."""


def _word_span(text: str, word: str, start: int = 0, taken: Sequence[tuple[int, int]] = ()) -> tuple[int, int] | None:
    for m in re.finditer(r"(?<!\w)" + re.escape(word) + r"(?!\w)", text[start:], flags=re.IGNORECASE):
        a, b = m.start() + start, m.end() + start
        if all(b <= x or a >= y for x, y in taken):
            return a, b
    return None


def render(pairs: Iterable[tuple[str, str, str]], templates: dict[str, Sequence[str]] = KG_TEMPLATES,
           *, seed: int = 0) -> list[WordTriplet]:
    """Render (head, relation, tail) into sentences with a seeded template choice per pair.

    Raises:
        KGError: a relation has no template.
    """
    rng = np.random.default_rng(seed)
    out = []
    for h, rel, t in pairs:
        if rel not in templates:
            raise KGError(f"no sentence template for relation {rel!r}; pass templates={{{rel!r}: ('... {{h}} ... {{t}} ...',)}}")
        tpl = templates[rel][int(rng.integers(len(templates[rel])))]
        text = tpl.format(h=h, t=t)
        hp = tpl.index("{h}")
        tp = tpl.index("{t}")
        # character positions after formatting
        if hp < tp:
            hs = hp
            ts = tp - 3 + len(h)
        else:
            ts = tp
            hs = hp - 3 + len(t)
        out.append(WordTriplet(text, (hs, hs + len(h)), (ts, ts + len(t)), rel))
    return out


def builtin_word_triplets(relations: Sequence[str] | None = None, *, seed: int = 0) -> list[WordTriplet]:
    """The embedded fallback KG (:data:`BUILTIN_KG`), rendered into sentences."""
    pairs = [p for p in BUILTIN_KG if relations is None or p[1] in relations]
    return render(pairs, seed=seed)


def category_word_triplets(*, part: str = "all", max_pairs: int | None = None, seed: int = 0) -> list[WordTriplet]:
    """``Category-of`` triplets (word -> category) over :data:`ablate.icl.wordlists.CATEGORIES`.

    The built-in recipe teaches this relation in its template sentences for *all* category words
    (training and held-out), so ``part="all"`` is the default; ``max_pairs`` caps the pairs (a
    seeded draw, kept in word-list order).
    """
    from ablate.icl.wordlists import CATEGORIES, split_words

    pairs = [(w, "Category-of", c) for c in CATEGORIES for w in split_words(c, part) if " " not in c]
    if max_pairs is not None and len(pairs) > max_pairs:
        keep = sorted(np.random.default_rng(seed).permutation(len(pairs))[:max_pairs])
        pairs = [pairs[i] for i in keep]
    return render(pairs, seed=seed)


def check_kg_sources(sources: Sequence[str]) -> str | None:
    """None when ``sources`` is a valid ``[scores] kg`` list, else what is wrong and how to fix it."""
    named = KG_SOURCES[:-1]  # the sources without a file argument
    for source in sources:
        if source in named:
            continue
        if source.startswith("tsv:"):
            p = Path(source[4:]).expanduser()
            if not p.is_file():
                return f"TSV file {str(p)!r} not found (rows: head<TAB>relation<TAB>tail<TAB>sentence)"
            continue
        import difflib

        close = difflib.get_close_matches(source, named, n=1)
        return (f"unknown KG source {source!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; use {', '.join(KG_SOURCES)}")
    if "wordnet" in sources and "builtin" in sources:
        return ("kg lists both 'wordnet' and 'builtin': they give the same relation names (builtin is WordNet's "
                "offline stand-in); keep one")
    return None


def kg_word_triplets(sources: Sequence[str], *, max_pairs: int = 100, seed: int = 0) -> list[WordTriplet]:
    """The word triplets of every named source, concatenated (one relation name = one relation).

    * ``wordnet``: Hyponym-of, Part-of and Antonym-of, ``max_pairs`` each (needs WordNet installed);
    * ``builtin``: the embedded Hyponym-of / Part-of graph (WordNet's offline stand-in: list one of
      the two, they share relation names);
    * ``templates``: ``Category-of`` over the recipe's category words, ``max_pairs`` in all;
    * ``tsv:PATH``: a TSV of triples with sentences (:func:`tsv_word_triplets`).

    Raises:
        KGError: an unknown source, both ``wordnet`` and ``builtin``, or a source that yields nothing.
    """
    bad = check_kg_sources(sources)
    if bad:
        raise KGError(bad)
    out: list[WordTriplet] = []
    for s in sources:
        if s == "wordnet":
            out += wordnet_word_triplets(("Hyponym-of", "Part-of", "Antonym-of"), max_pairs=max_pairs, seed=seed)
        elif s == "builtin":
            out += builtin_word_triplets(seed=seed)
        elif s == "templates":
            out += category_word_triplets(max_pairs=max_pairs, seed=seed)
        else:
            out += tsv_word_triplets(Path(s[4:]).expanduser())[0]
    return out


# ---- WordNet -------------------------------------------------------------------------------

_WN_DIRS = (Path("/usr/share/wordnet"), Path("/usr/share/wordnet/dict"))


#: WordNet 3.0's 45 lexicographer files in number order (documented in its lexnames(5WN) page);
#: Debian's wordnet-base ships the database without the ``lexnames`` file NLTK's reader needs.
_LEXNAMES = ("adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
             "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
             "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
             "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
             "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
             "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather "
             "adj.ppl").split()
_POS_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def _with_lexnames(d: Path) -> Path:
    """``d`` itself if it has a ``lexnames`` file; else a folder of this toolkit's cache that holds
    a copy of ``d``'s files and adds ``lexnames`` (``d`` is never
    written to)."""
    if (d / "lexnames").is_file():
        return d
    import os

    cache = Path(os.environ.get("SIH_ABLATE_CACHE", Path.home() / ".cache" / "sih-ablate")) / "wordnet"
    cache.mkdir(parents=True, exist_ok=True)
    import shutil

    for f in d.iterdir():  # copies (36 MB once): nltk >= 3.9 refuses symlinks and hard links out of its root
        dst = cache / f.name
        if f.is_file() and not (dst.exists() and dst.stat().st_size == f.stat().st_size):
            shutil.copy2(f, dst)
    lex = "".join(f"{i:02d}\t{n}\t{_POS_NUMBER[n.split('.')[0]]}\n" for i, n in enumerate(_LEXNAMES))
    if not (cache / "lexnames").is_file() or (cache / "lexnames").read_text() != lex:
        (cache / "lexnames").write_text(lex)
    return cache


def _wordnet(root: str | Path | None = None) -> Any:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    cands = [Path(root)] if root is not None else []
    if root is None:
        try:
            import nltk

            cands.append(Path(str(nltk.data.find("corpora/wordnet"))))
        except LookupError:
            pass
        cands.extend(_WN_DIRS)
    for d in cands:
        if (d / "data.noun").is_file() and (d / "index.noun").is_file():
            try:
                import nltk

                d = _with_lexnames(d)
                # nltk >= 3.9 only reads corpora under its data path: authorise the folder found here
                if str(d) not in nltk.data.path:
                    nltk.data.path.append(str(d))
                class _Local(WordNetCorpusReader):
                    def map_wn(self, version="wordnet"):
                        # nltk maps a non-default WordNet onto its downloaded "wordnet" corpus (for
                        # OMW); this reader is read on its own, so there is nothing to map to
                        return None

                import warnings

                with warnings.catch_warnings():  # "multilingual functions not available": expected
                    warnings.simplefilter("ignore", UserWarning)
                    return _Local(str(d), None)
            except Exception as e:  # pragma: no cover - corrupt install
                raise WordNetUnavailableError(f"WordNet at {d} could not be read: {e}") from e
    raise WordNetUnavailableError(
        "WordNet data not found (looked in the nltk data path and /usr/share/wordnet). Install it with "
        "`python -m nltk.downloader wordnet` (needs network) or `apt-get install wordnet-base` (Debian/Ubuntu), "
        "or pass root='/path/to/wordnet/dict'. Offline, ablate.triplets.kg.builtin_word_triplets() gives a small "
        "embedded hypernymy/part-of graph instead."
    )


def wordnet_word_triplets(relations: Sequence[str] = ("Hyponym-of", "Part-of"), *, max_pairs: int = 500,
                          seed: int = 0, root: str | Path | None = None) -> list[WordTriplet]:
    """Hyponym-of (hyponym -> hypernym) and Part-of (part -> whole) pairs of single-word nouns, and
    Antonym-of pairs of single-word adjectives (WordNet's direct antonyms).

    Pairs are drawn from the synsets' first lemmas (alphabetic, lower-case, no multi-word
    lemmas), shuffled with ``seed`` and capped at ``max_pairs`` per relation, then rendered.

    Raises:
        WordNetUnavailableError: no WordNet data installed (the message says how to install).
    """
    wn = _wordnet(root)
    rng = np.random.default_rng(seed)

    def word(s):
        w = s.lemmas()[0].name()
        return w if w.isalpha() and w.islower() else None

    pairs: list[tuple[str, str, str]] = []
    known = ("Hyponym-of", "Part-of", "Antonym-of")
    bad = [r for r in relations if r not in known]
    if bad:
        raise KGError(f"unknown WordNet relation(s) {bad}; use {', '.join(known)}")
    for rel in relations:
        found = []
        if rel == "Antonym-of":  # adjective lemmas and their direct antonyms (good -> bad)
            for syn in wn.all_synsets("a"):
                for lem in syn.lemmas():
                    h = lem.name()
                    for ant in lem.antonyms():
                        t = ant.name()
                        if h.isalpha() and h.islower() and t.isalpha() and t.islower() and t != h:
                            found.append((h, rel, t))
        else:
            for syn in wn.all_synsets("n"):
                h = word(syn)
                if h is None:
                    continue
                for o in (syn.hypernyms() if rel == "Hyponym-of" else syn.part_holonyms()):
                    t = word(o)
                    if t is not None and t != h:
                        found.append((h, rel, t))
        # nltk returns some relations (part holonyms) in set order, which varies with the hash seed:
        # sort, so the same seed draws the same pairs in every process
        found = sorted(set(found))
        idx = rng.permutation(len(found))[:max_pairs]
        pairs.extend(found[i] for i in sorted(idx))
    return render(pairs, seed=seed)


# ---- AGENDA --------------------------------------------------------------------------------

_REL_RE = re.compile(r"^\s*(.+?)\s+--\s+([A-Z][A-Z-]*)\s+--\s+(.+?)\s*$")
_TAG_RE = re.compile(r"<([a-z]+)_(\d+)>")
_AGENDA_RELATIONS = {"PART-OF": "Part-of", "COMPARE": "Compare", "USED-FOR": "Used-for",
                     "FEATURE-OF": "Feature-of", "HYPONYM-OF": "Hyponym-of", "EVALUATE-FOR": "Evaluate-for",
                     "CONJUNCTION": "Conjunction"}


def load_agenda(path: str | Path) -> list[dict]:
    """AGENDA records from a JSON list file or a JSON-lines file."""
    p = Path(path)
    if not p.is_file():
        raise KGError(f"AGENDA file not found: {p} (the test split is e.g. unprocessed.test.json)")
    text = p.read_text(encoding="utf-8").strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(data, dict):
        data = [data]
    return data


def _process_abstract(rec: dict) -> tuple[str, dict[str, str]]:
    """Replace entities by letters and remove function words; returns (text, entity -> letter)."""
    ents = [str(e) for e in rec.get("entities", [])]
    if len(ents) > len(ENTITY_LETTERS):
        ents = ents[: len(ENTITY_LETTERS)]
    letter = {e: ENTITY_LETTERS[i] for i, e in enumerate(ents)}
    abstract = rec.get("abstract") or ""
    types = rec.get("types", "")
    types = types.split() if isinstance(types, str) else list(types)
    if _TAG_RE.search(abstract) and types:
        per_type: dict[tuple[str, int], str] = {}
        counter: Counter = Counter()
        for e, ty in zip(ents, types):
            ty = ty.strip("<>")
            per_type[(ty, counter[ty])] = letter[e]
            counter[ty] += 1
        text = _TAG_RE.sub(lambda m: per_type.get((m.group(1), int(m.group(2))), m.group(0)), abstract)
    else:
        text = rec.get("abstract_og") or abstract
        for e in sorted(ents, key=len, reverse=True):
            text = re.sub(r"(?<!\w)" + re.escape(e) + r"(?!\w)", letter[e], text, flags=re.IGNORECASE)
    words = [w for w in re.findall(r"\w+|[^\w\s]", text) if w.lower() not in FUNCTION_WORDS or w in ENTITY_LETTERS]
    text = " ".join(words)
    text = re.sub(r" ([.,;:!?)])", r"\1", text).replace("( ", "(")
    return text, letter


def agenda_word_triplets(records: Iterable[dict] | str | Path, relations: Sequence[str] | None = None
                         ) -> tuple[list[WordTriplet], Counter]:
    """AGENDA relations as sentence triplets (rules in the module docstring).

    Returns:
        ``(word_triplets, skipped)``: ``skipped`` counts relations left out, by reason.
    """
    if isinstance(records, (str, Path)):
        records = load_agenda(records)
    out: list[WordTriplet] = []
    skipped: Counter = Counter()
    for rec in records:
        text, letter = _process_abstract(rec)
        sents = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
        for r in rec.get("relations", []):
            m = _REL_RE.match(str(r))
            if not m:
                skipped["unparsable relation string"] += 1
                continue
            h, rel, t = m.group(1), _AGENDA_RELATIONS.get(m.group(2), m.group(2).title()), m.group(3)
            if relations is not None and rel not in relations:
                continue
            if h not in letter or t not in letter:
                skipped["entity not in the entity list (or beyond 20 entities)"] += 1
                continue
            for s in sents:
                hs = _word_span(s, letter[h]) if letter[h] != letter[t] else None
                ts = _word_span(s, letter[t], taken=[hs]) if hs else None
                if hs and ts and s[hs[0]:hs[1]] == letter[h] and s[ts[0]:ts[1]] == letter[t]:
                    out.append(WordTriplet(s, hs, ts, rel))
                    break
            else:
                skipped["head and tail never in one sentence"] += 1
    return out, skipped


# ---- TSV -----------------------------------------------------------------------------------

def tsv_word_triplets(path: str | Path) -> tuple[list[WordTriplet], Counter]:
    """Rows ``head, relation, tail, sentence`` (tab-separated; a header row is skipped).

    Returns:
        ``(word_triplets, skipped)`` with skipped rows counted by reason.
    """
    p = Path(path)
    if not p.is_file():
        raise KGError(f"TSV file not found: {p} (columns: head, relation, tail, sentence)")
    out: list[WordTriplet] = []
    skipped: Counter = Counter()
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        cols = line.split("\t")
        if n == 0 and [c.strip().lower() for c in cols[:4]] == ["head", "relation", "tail", "sentence"]:
            continue
        if len(cols) < 4:
            raise KGError(f"{p}:{n + 1}: expected 4 tab-separated columns (head, relation, tail, sentence), got {len(cols)}")
        h, rel, t, s = (c.strip() for c in cols[:4])
        hs = _word_span(s, h)
        ts = _word_span(s, t, taken=[hs] if hs else [])
        if hs is None or ts is None:
            skipped["head or tail not found in the sentence"] += 1
            continue
        out.append(WordTriplet(s, hs, ts, rel))
    if not out:
        raise KGError(f"{p}: no usable row ({dict(skipped)}); each sentence must contain its head and tail words")
    return out, skipped
