"""Category word lists: the single source of truth for training and evaluation words.

The built-in training recipe (:mod:`checkpoints.recipe`) writes labelled few-shot documents
with *training* words only, and the ICL evaluation tasks (``ablate/icl_tasks``) use the
*held-out* words, so pattern discovery is measured on words the model never saw in a
labelled line. Held-out words still occur in the category sentences of the knowledge-graph
part of the recipe ("A plum is a fruit."), so the model can know their category.

The split is deterministic and independent of Python's hash seed: words are ordered by the
SHA-256 of ``"<category>/<word>"`` and every third word in that order is held out
(``ceil(n / 3)`` words per category, 8 of 24).

This module imports nothing heavy (standard library only), so any package can import it.

Example:
    >>> from ablate.icl.wordlists import CATEGORIES, split_words
    >>> len(split_words("fruit", "heldout"))
    8
"""

from __future__ import annotations

import hashlib

__all__ = ["CATEGORIES", "PLURALS", "split_words", "all_words", "category_of"]

#: category name -> words (lower case, single words, common English).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "fruit": (
        "apple", "banana", "cherry", "grape", "lemon", "mango", "melon", "orange",
        "peach", "pear", "plum", "kiwi", "lime", "apricot", "fig", "papaya",
        "guava", "coconut", "date", "berry", "olive", "quince", "raisin", "prune",
    ),
    "month": (
        "January", "February", "March", "April", "May", "June", "July", "August",
        "September", "October", "November", "December", "Jan", "Feb", "Mar", "Apr",
        "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec",
    ),
    "furniture": (
        "chair", "table", "sofa", "bed", "desk", "stool", "bench", "shelf",
        "cabinet", "dresser", "couch", "wardrobe", "cupboard", "bookcase", "armchair",
        "cradle", "crib", "ottoman", "chest", "throne", "hammock", "futon", "counter",
        "drawer",
    ),
    "profession": (
        "doctor", "teacher", "lawyer", "farmer", "nurse", "baker", "pilot", "judge",
        "engineer", "soldier", "sailor", "dentist", "plumber", "carpenter", "butcher",
        "painter", "writer", "singer", "priest", "tailor", "banker", "chef", "clerk",
        "miner",
    ),
    "animal": (
        "dog", "cat", "horse", "cow", "sheep", "goat", "lion", "tiger", "bear",
        "wolf", "fox", "deer", "rabbit", "mouse", "rat", "monkey", "camel",
        "elephant", "zebra", "donkey", "pig", "otter", "seal", "whale",
    ),
    "color": (
        "red", "blue", "green", "yellow", "purple", "pink", "brown", "black",
        "white", "gray", "violet", "crimson", "scarlet", "indigo", "amber", "beige",
        "maroon", "navy", "teal", "ivory", "tan", "cyan", "magenta", "silver",
    ),
    "country": (
        "France", "Germany", "Spain", "Italy", "Japan", "China", "India", "Brazil",
        "Canada", "Mexico", "Egypt", "Kenya", "Peru", "Chile", "Norway", "Sweden",
        "Poland", "Greece", "Turkey", "Iran", "Russia", "Ireland", "Portugal", "Cuba",
    ),
    "vegetable": (
        "carrot", "potato", "onion", "cabbage", "lettuce", "spinach", "pea", "bean",
        "corn", "pepper", "tomato", "cucumber", "radish", "turnip", "beet", "celery",
        "garlic", "leek", "broccoli", "pumpkin", "squash", "kale", "yam", "parsnip",
    ),
    "tool": (
        "hammer", "saw", "drill", "wrench", "chisel", "axe", "shovel", "rake",
        "spade", "knife", "scissors", "pliers", "screwdriver", "file", "ladder",
        "hoe", "sickle", "plane", "anvil", "crowbar", "trowel", "mallet", "awl",
        "clamp",
    ),
    "body part": (
        "head", "hand", "foot", "arm", "leg", "eye", "ear", "nose", "mouth",
        "knee", "elbow", "shoulder", "finger", "toe", "neck", "chin", "lip",
        "tooth", "tongue", "heart", "liver", "lung", "wrist", "ankle",
    ),
    "vehicle": (
        "car", "bus", "truck", "train", "bicycle", "boat", "ship", "airship",
        "taxi", "tram", "van", "wagon", "cart", "jeep", "canoe", "yacht",
        "scooter", "tractor", "ferry", "sled", "raft", "carriage", "limo", "lorry",
    ),
    "instrument": (
        "piano", "guitar", "violin", "drum", "flute", "harp", "trumpet", "organ",
        "cello", "banjo", "oboe", "tuba", "horn", "lute", "bell", "fiddle",
        "clarinet", "bugle", "cymbal", "harmonica", "lyre", "viola", "bagpipe",
        "accordion",
    ),
}

#: category name -> plural noun used in generated sentences ("Some fruits: ...").
PLURALS: dict[str, str] = {
    "fruit": "fruits", "month": "months", "furniture": "pieces of furniture",
    "profession": "professions", "animal": "animals", "color": "colors",
    "country": "countries", "vegetable": "vegetables", "tool": "tools",
    "body part": "body parts", "vehicle": "vehicles", "instrument": "instruments",
}


def _check_tables() -> None:
    """Validate the tables at import time (cheap): sizes, uniqueness, no cross-category words."""
    seen: dict[str, str] = {}
    for cat, words in CATEGORIES.items():
        if len(words) < 24:
            raise ValueError(f"wordlists: category {cat!r} has {len(words)} words; needs >= 24")
        if len(set(words)) != len(words):
            raise ValueError(f"wordlists: category {cat!r} lists a word twice")
        if cat not in PLURALS:
            raise ValueError(f"wordlists: category {cat!r} has no plural in PLURALS")
        for w in words:
            if w in seen:
                raise ValueError(f"wordlists: {w!r} is in both {seen[w]!r} and {cat!r}")
            seen[w] = cat


_check_tables()


def _order_key(category: str, word: str) -> str:
    return hashlib.sha256(f"{category}/{word}".encode("utf-8")).hexdigest()


def split_words(category: str, part: str = "train") -> tuple[str, ...]:
    """Return the deterministic train or held-out words of one category.

    Words are sorted by ``sha256(f"{category}/{word}")``; positions 2, 5, 8, ... (every third,
    0-based ``i % 3 == 2``) are held out, the rest are training words. The two parts are
    disjoint and their union is the category. Order within a part follows the table order.

    Args:
        category: A key of :data:`CATEGORIES` (e.g. ``"fruit"``, ``"body part"``).
        part: ``"train"``, ``"heldout"`` or ``"all"``.

    Returns:
        The words of that part, in the order they appear in :data:`CATEGORIES`.

    Raises:
        KeyError: Unknown category (the message lists the known ones).
        ValueError: Unknown part.
    """
    if category not in CATEGORIES:
        raise KeyError(
            f"split_words: unknown category {category!r}; known: {sorted(CATEGORIES)}"
        )
    words = CATEGORIES[category]
    if part == "all":
        return words
    if part not in ("train", "heldout"):
        raise ValueError(f"split_words: part must be 'train', 'heldout' or 'all', got {part!r}")
    ranked = sorted(words, key=lambda w: _order_key(category, w))
    heldout = {w for i, w in enumerate(ranked) if i % 3 == 2}
    if part == "heldout":
        return tuple(w for w in words if w in heldout)
    return tuple(w for w in words if w not in heldout)


def all_words(part: str = "all") -> tuple[str, ...]:
    """All words of all categories for one part, category by category (duplicates removed)."""
    out: list[str] = []
    for cat in CATEGORIES:
        for w in split_words(cat, part):
            if w not in out:
                out.append(w)
    return tuple(out)


def category_of(word: str) -> str:
    """The category a word belongs to (categories are disjoint).

    Raises:
        KeyError: The word is in no category.
    """
    for cat, words in CATEGORIES.items():
        if word in words:
            return cat
    raise KeyError(f"category_of: {word!r} is in no category of ablate.icl.wordlists")
