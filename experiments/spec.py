"""Experiment spec files (TOML), validated on load.

A spec names the series (or one model) and steps, and the sections of the one cell grid it runs
(:mod:`experiments.runner`):

* ``[scores]``: the head scores of every checkpoint (``ablate scan``; cells ``scores/step=S``);
* ``[levels]``: the ICL levels of every checkpoint (``ablate icl``; cells ``levels/step=S``);
* ``[heads]``, ``[controls]``, ``[operators]``, ``[icl]``: the ablation protocol (``ablate run``;
  cells ``heads/``, ``lr/``, ``icl/``, ``patch/``). The head selection reads the ``scores`` cell of
  its checkpoint, so ``[scores]`` is the one source of truth for what is plotted and what is
  selected (its defaults apply when the section is absent).

The ablation protocol runs when any of its four sections is present, or when the spec has neither
``[scores]`` nor ``[levels]``. Unknown keys are errors with a "did you mean" suggestion (also across
sections: ``heads.n_sentences`` says it belongs to ``[scores]``), every enum value is declared once
as a ``Literal`` type and checked by one generic rule, and every error names the key and the file.
Example (``experiments/sih_ablation/spec.toml``)::

    name = "sih_ablation"
    seed = 0

    [series]
    path = "runs/default_series"   # a checkpoint-series folder; or `model = "path/or/hub-name"`
    steps = "all"                   # "all", "final", a list of steps, or {log_spaced = 6}

    [scores]
    relations = ["subj", "obj", "mod"]
    directions = ["forward", "reverse"]
    n_sentences = 80                # seeded subsample of the sentences (default: all)
    tau = 2.2                       # QK gate; 0 = argmax only; or tau_percentile = 95
    nulls = ["baseline"]            # + "shuffled" (the fdr rule needs the nulls it tests against)
    n_random = 32                   # random sequences of copying / prefix matching

    [heads]
    select = "sih"                  # "sih" (selection rule) or "explicit"
    at = "each"                     # select SIHs at "each" checkpoint or at the "final" one
    rule = "topk"                   # "topk" (RI above its fake tail) or "fdr" (BH-controlled)
    k = 4
    min_events = 10                 # a head's RI counts only with >= this many gated (triplet, j) events
    induction = true                # also ablate conventional induction heads as a comparison set
    explicit = []                   # head sets like "L1H2,L0H3" when select = "explicit" (each is tested)
    by_relation = false             # one SIH set per relation of [scores] (syntactic and kg), each tested

    [controls]
    random_sets = 8                 # R matched random head sets (same size and layer histogram)

    [operators]
    primary = "mean"
    robustness = ["zero", "resample"]
    positions = "all"               # "all" or "last": where an ablation replaces a head's output
    patch = false                   # also patch the sets' clean outputs into shuffled-label prompts

    [icl]
    tasks = "default"               # or a list of task names
    shots = [0, 2, 5, 10]
    items = 16                      # items per task and shot count
    lr_documents = 16               # documents for loss reduction
    controls = ["clean", "shuffled", "nolabel"]   # control prompts on the same items
"""

from __future__ import annotations

import difflib
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from ablate.intervene.operators import ABLATIONS
from ablate.model.errors import AblateError
from ablate.model.heads import HeadSet
from ablate.scores.scan import ScanConfig


class SpecError(AblateError):
    """A spec file is invalid. The message names the file and the key."""


# ---- the enum options, declared once ----------------------------------------------------------
Select = Literal["sih", "explicit"]
At = Literal["each", "final"]
Rule = Literal["topk", "fdr"]
Positions = Literal["all", "last"]
Control = Literal["clean", "shuffled", "nolabel"]
WordPart = Literal["heldout", "train", "all"]
PathSender = Literal["mean", "patch"]
PathMetric = Literal["logprob", "logit"]
ReceiverKind = Literal["mlp", "q", "k", "v"]

#: the ablation operators a spec may name (from the one registry, ablate.intervene.operators.OPERATORS)
OPERATOR_NAMES = ABLATIONS


@dataclass(frozen=True)
class SeriesSpec:
    path: str | None = None
    model: str | None = None
    revision: str | None = None
    steps: Any = "all"


#: the ``[scores]`` section is the scan's own settings dataclass (declared once, in the core)
ScoresSpec = ScanConfig


@dataclass(frozen=True)
class LevelsSpec:
    """ICL levels at every checkpoint (``ablate icl``): FC, PD and in-prompt LR per item, no intervention."""

    tasks: Any = "all"                  # "all" or a list of task names
    shots: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 10, 20)
    n_items: int = 36
    controls: tuple[Control, ...] = ("clean", "shuffled", "nolabel")
    part: WordPart = "heldout"
    batch_size: int = 16
    add_bos: bool = False


@dataclass(frozen=True)
class HeadsSpec:
    select: Select = "sih"
    at: At = "each"
    rule: Rule = "topk"
    k: int = 4
    alpha: float = 0.05
    min_effect: float = 0.02
    min_events: int = 10
    induction: bool = True
    explicit: tuple[str, ...] = ()
    by_relation: bool = False       # one SIH set per scored relation (each tested, each with its random sets)


@dataclass(frozen=True)
class ControlsSpec:
    random_sets: int = 8


@dataclass(frozen=True)
class OperatorsSpec:
    primary: str = "mean"
    robustness: tuple[str, ...] = ("zero", "resample")
    positions: Positions = "all"
    patch: bool = False

    @property
    def all(self) -> tuple[str, ...]:
        return (self.primary,) + tuple(o for o in self.robustness if o != self.primary)


@dataclass(frozen=True)
class ICLSpec:
    tasks: Any = "default"
    shots: tuple[int, ...] = (0, 2, 5, 10)
    items: int = 16
    lr_documents: int = 16
    controls: tuple[Control, ...] = ("clean", "shuffled", "nolabel")


@dataclass(frozen=True)
class PathsSpec:
    """``[paths]``: path patching of every tested head set (docs/science.md §7; cells ``paths/``).

    The sender is each head set (target, induction, matched random sets); its output is replaced by
    its mean over the held-out reference text (``sender = "mean"``) or by its output on the
    shuffled-label prompt of the same item (``"patch"``); the effect on the gold label's first
    distinguishing token at the query is split into the direct path and one path per later
    receiver (MLPs, and heads' queries, keys and values)."""

    sender: PathSender = "mean"
    metric: PathMetric = "logprob"
    kinds: tuple[ReceiverKind, ...] = ("mlp", "q", "k", "v")
    shots: int | None = None        # shot count of the path prompts (default: the largest of icl.shots)


#: the sections of the ablation protocol
ABLATION_SECTIONS = ("heads", "controls", "operators", "icl")


@dataclass(frozen=True)
class Spec:
    name: str = "experiment"
    seed: int = 0
    description: str = ""
    series: SeriesSpec = field(default_factory=SeriesSpec)
    scores: ScoresSpec = field(default_factory=ScoresSpec)
    levels: LevelsSpec | None = None
    heads: HeadsSpec = field(default_factory=HeadsSpec)
    controls: ControlsSpec = field(default_factory=ControlsSpec)
    operators: OperatorsSpec = field(default_factory=OperatorsSpec)
    icl: ICLSpec = field(default_factory=ICLSpec)
    paths: PathsSpec | None = None
    #: which parts of the grid run: "scores" (all steps), "levels", "ablation"
    parts: tuple[str, ...] = ("ablation",)
    source: str = "<dict>"

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("source")
        if d["paths"] is None:  # specs from before [paths] existed keep their hash (and their run folders)
            del d["paths"]
        if not d["scores"]["kg"]:  # likewise specs from before [scores] kg and heads.by_relation
            del d["scores"]["kg"], d["scores"]["kg_pairs"]
        if not d["heads"]["by_relation"]:
            del d["heads"]["by_relation"]
        return d

    def hash(self) -> str:
        """Hash of the spec's content (not its file name): identical specs give identical hashes."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=list).encode()).hexdigest()[:16]

    def with_series(self, path: str | None = None, model: str | None = None) -> "Spec":
        s = SeriesSpec(path=path if model is None else None, model=model,
                       revision=self.series.revision, steps=self.series.steps)
        return replace(self, series=s)

    @property
    def ablation(self) -> bool:
        return "ablation" in self.parts

    @property
    def needs_scores(self) -> bool:
        """Whether scores cells are in the grid (asked for, or read by the head selection)."""
        h = self.heads
        return "scores" in self.parts or (self.ablation and (h.select == "sih" or h.induction))


_SECTIONS = {"series": SeriesSpec, "scores": ScoresSpec, "levels": LevelsSpec, "heads": HeadsSpec,
             "controls": ControlsSpec, "operators": OperatorsSpec, "icl": ICLSpec, "paths": PathsSpec}
_TOP = {"name": str, "seed": int, "description": str}
#: keys that moved between sections (old place -> new section), for a precise message
_MOVED = {("heads", "n_sentences"): "scores", ("heads", "relations"): "scores", ("icl", "positions"): "operators"}


def _suggest(key: str, options) -> str:
    m = difflib.get_close_matches(str(key), [str(o) for o in options], n=1, cutoff=0.5)
    return f" (did you mean {m[0]!r}?)" if m else f" (known: {', '.join(sorted(map(str, options)))})"


def _unknown_key(section: str, key: str, known) -> str:
    moved = _MOVED.get((section, key)) or next(
        (s for s, c in _SECTIONS.items() if s != section and key in c.__dataclass_fields__ and s != "series"), None)
    if moved is not None and key not in known:
        return f" (it belongs to the [{moved}] section: write it under [{moved}])"
    return _suggest(key, known)


def _check_value(value: Any, tp: Any, where: str) -> Any:
    """Check/coerce ``value`` against the annotation ``tp`` (Literal, tuple[...], Optional, scalars)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        opts = get_args(tp)
        if value not in opts:
            raise SpecError(f"{where}: {value!r} is not one of {', '.join(map(repr, opts))}{_suggest(value, opts)}")
        return value
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(get_args(tp)):
            return None
        return _check_value(value, args[0], where)
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise SpecError(f"{where}: expected a list, got {value!r}")
        (elem, *_rest) = get_args(tp)
        return tuple(_check_value(v, elem, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise SpecError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise SpecError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise SpecError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise SpecError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _section(cls, name: str, value: Any, source: str):
    if not isinstance(value, dict):
        raise SpecError(f"{source}: [{name}] must be a table, got {value!r}")
    hints = typing.get_type_hints(cls)
    known = cls.__dataclass_fields__
    kw = {}
    for k, v in value.items():
        if k not in known:
            raise SpecError(f"{source}: unknown key {name}.{k!r}{_unknown_key(name, k, known)}")
        kw[k] = _check_value(v, hints[k], f"{source}: key {name}.{k}")
    return cls(**kw)


def spec_from_dict(d: dict, source: str = "<dict>") -> Spec:
    """Build and validate a :class:`Spec` from a parsed TOML dict (errors name ``source``)."""
    if not isinstance(d, dict):
        raise SpecError(f"{source}: a spec must be a TOML table")
    if "variants" in d:
        raise SpecError(f"{source}: this is a factors study (it has [[variants]]), which trains its own series: "
                        "run it with `ablate run SPEC --out DIR` (experiments/emergence_factors/README.md)")
    top: dict[str, Any] = {}
    allowed = set(_TOP) | set(_SECTIONS) | {"parts"}
    for key, value in d.items():
        if key not in allowed:
            raise SpecError(f"{source}: unknown key {key!r}{_suggest(key, allowed)}")
        if key in _TOP:
            if not isinstance(value, _TOP[key]) or isinstance(value, bool):
                raise SpecError(f"{source}: key {key!r} must be a {_TOP[key].__name__}, got {value!r}")
            top[key] = value
        elif key == "parts":
            top[key] = _check_value(value, tuple[Literal["scores", "levels", "ablation"], ...], f"{source}: key parts")
        elif value is not None:  # None: a section left out (Spec.to_dict writes levels = None)
            top[key] = _section(_SECTIONS[key], key, value, source)
    if "parts" not in top:  # what the sections say: any ablation section, or nothing else, runs the protocol
        given = {k for k in d if k in _SECTIONS and d[k] is not None}
        parts = [p for p in ("scores", "levels") if p in given]
        if given & set(ABLATION_SECTIONS + ("paths",)) or not parts:
            parts.append("ablation")
        top["parts"] = tuple(parts)
    if "levels" in top["parts"] and "levels" not in top:
        top["levels"] = LevelsSpec()
    spec = Spec(source=source, **top)
    validate(spec)
    return spec


def validate(spec: Spec) -> None:
    """Check values that types alone cannot (raises :class:`SpecError` naming file and key)."""
    src = spec.source
    s = spec.series
    if s.path is None and s.model is None:
        raise SpecError(f"{src}: [series] needs `path` (a checkpoint-series folder) or `model` (one model)")
    if s.path is not None and s.model is not None:
        raise SpecError(f"{src}: [series] has both `path` and `model`; give one")
    steps = s.steps
    if not (steps in ("all", "final") or (isinstance(steps, (list, tuple)) and all(isinstance(x, int) for x in steps))
            or (isinstance(steps, dict) and set(steps) == {"log_spaced"} and isinstance(steps["log_spaced"], int))):
        raise SpecError(f"{src}: key series.steps must be \"all\", \"final\", a list of integers or "
                        f"{{log_spaced = N}}, got {steps!r}")
    _validate_scores(spec)
    if spec.levels is not None:
        lv = spec.levels
        if not lv.shots or any(x < 0 for x in lv.shots):
            raise SpecError(f"{src}: key levels.shots must be a non-empty list of non-negative integers, got {list(lv.shots)}")
        if lv.n_items < 1 or lv.batch_size < 1:
            raise SpecError(f"{src}: keys levels.n_items and levels.batch_size must be >= 1")
        if not lv.controls:
            raise SpecError(f"{src}: key levels.controls must name at least one of clean, shuffled, nolabel")
        _check_tasks(lv.tasks, ("all",), f"{src}: key levels.tasks")
    h = spec.heads
    if h.k < 1:
        raise SpecError(f"{src}: key heads.k must be >= 1, got {h.k}")
    if h.by_relation and h.select != "sih" and spec.ablation:
        raise SpecError(f"{src}: key heads.by_relation = true selects SIHs per relation; it needs heads.select = "
                        f"\"sih\" (got {h.select!r})")
    if h.select == "explicit" and spec.ablation:
        if not h.explicit:
            raise SpecError(f"{src}: key heads.explicit is empty but heads.select = \"explicit\"; "
                            "list head sets like [\"L1H2,L0H3\"]")
        for e in h.explicit:
            try:
                hs = HeadSet.parse(e)
            except AblateError as err:
                raise SpecError(f"{src}: key heads.explicit: {err}") from err
            if len(hs) == 0:
                raise SpecError(f"{src}: key heads.explicit contains an empty head set {e!r}")
        if len({str(HeadSet.parse(e)) for e in h.explicit}) != len(h.explicit):
            raise SpecError(f"{src}: key heads.explicit lists the same head set twice: {list(h.explicit)}")
    if h.rule == "fdr" and h.select == "sih" and "baseline" not in spec.scores.nulls:
        raise SpecError(f"{src}: heads.rule = \"fdr\" tests RI against the nulls in scores.nulls, which must "
                        f"include \"baseline\" (got {list(spec.scores.nulls)})")
    if spec.controls.random_sets < 1:
        raise SpecError(f"{src}: key controls.random_sets = {spec.controls.random_sets}: need at least 1 "
                        "matched random head set (8 or more recommended for an empirical p-value)")
    o = spec.operators
    for op in (o.primary, *o.robustness):
        if op not in OPERATOR_NAMES:
            raise SpecError(f"{src}: key operators: unknown operator {op!r}{_suggest(op, OPERATOR_NAMES)}")
    i = spec.icl
    if not i.shots or any(x < 0 for x in i.shots):
        raise SpecError(f"{src}: key icl.shots must be a non-empty list of non-negative integers, got {i.shots!r}")
    if o.patch and not any(x >= 1 for x in i.shots):
        raise SpecError(f"{src}: key operators.patch = true needs a shot count >= 1 in icl.shots (a "
                        f"0-shot prompt has no labels to shuffle), got {list(i.shots)}")
    if spec.paths is not None:
        ps = spec.paths
        if ps.shots is not None and ps.shots < 1:
            raise SpecError(f"{src}: key paths.shots = {ps.shots}: path prompts need >= 1 demonstration")
        if ps.shots is None and not any(x >= 1 for x in i.shots):
            raise SpecError(f"{src}: [paths] uses the largest of icl.shots, which must be >= 1 (or set paths.shots)")
        if not ps.kinds:
            raise SpecError(f"{src}: key paths.kinds is empty; list receiver kinds from mlp, q, k, v")
    if i.items < 1 or i.lr_documents < 1:
        raise SpecError(f"{src}: keys icl.items and icl.lr_documents must be >= 1")
    if "clean" not in i.controls or "nolabel" not in i.controls:
        raise SpecError(f"{src}: key icl.controls must include \"clean\" and \"nolabel\" (the FC floor) and "
                        f"may add \"shuffled\", got {list(i.controls)}")
    _check_tasks(i.tasks, ("default",), f"{src}: key icl.tasks")


def _validate_scores(spec: Spec) -> None:
    src, sc = spec.source, spec.scores
    from ablate.triplets.syntax import DEFAULT_LABEL_MAP

    from ablate.triplets.kg import check_kg_sources

    bad = [r for r in sc.relations if r not in DEFAULT_LABEL_MAP]
    if bad:
        raise SpecError(f"{src}: key scores.relations: unknown relation {bad[0]!r}{_suggest(bad[0], DEFAULT_LABEL_MAP)}")
    if not sc.relations and not sc.kg:
        raise SpecError(f"{src}: keys scores.relations and scores.kg are both empty; name syntactic relations "
                        f"(e.g. [\"subj\", \"obj\"]) or KG sources (e.g. [\"templates\", \"wordnet\"])")
    why = check_kg_sources(sc.kg)
    if why:
        raise SpecError(f"{src}: key scores.kg: {why}")
    if "wordnet" in sc.kg:
        from ablate.triplets.kg import WordNetUnavailableError, _wordnet

        try:
            _wordnet()
        except WordNetUnavailableError as e:
            raise SpecError(f"{src}: key scores.kg names \"wordnet\": {e}") from None
    if not sc.directions:
        raise SpecError(f"{src}: key scores.directions must name \"forward\" and/or \"reverse\"")
    if sc.tau is not None and sc.tau < 0:
        raise SpecError(f"{src}: key scores.tau = {sc.tau}: must be >= 0 (0 = argmax only)")
    if sc.tau_percentile is not None and not 0 <= sc.tau_percentile <= 100:
        raise SpecError(f"{src}: key scores.tau_percentile = {sc.tau_percentile}: must lie in [0, 100]")
    for k in ("max_tokens", "n_random", "random_length", "batch_size", "kg_pairs"):
        if getattr(sc, k) < 1:
            raise SpecError(f"{src}: key scores.{k} must be >= 1, got {getattr(sc, k)}")
    if sc.n_sentences is not None and sc.n_sentences < 1:
        raise SpecError(f"{src}: key scores.n_sentences must be >= 1, got {sc.n_sentences}")


def _check_tasks(tasks: Any, words: tuple[str, ...], where: str) -> None:
    if isinstance(tasks, str) and tasks in words:
        return
    if isinstance(tasks, str):
        tasks = [tasks]
    if not isinstance(tasks, (list, tuple)) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise SpecError(f"{where} must be {' or '.join(map(repr, words))} or a non-empty list of task names, got {tasks!r}")
    from ablate.icl.tasks import get_task

    for t in tasks:
        try:
            get_task(t)
        except AblateError as e:
            raise SpecError(f"{where}: {e}") from e


def resolve_tasks(tasks: Any) -> list[str]:
    """Task names of an ``icl.tasks`` / ``levels.tasks`` value ("default" / "all": every task)."""
    from ablate.icl.tasks import TASKS, get_task

    if tasks in ("default", "all"):
        return list(TASKS)
    return [get_task(t).name for t in ([tasks] if isinstance(tasks, str) else tasks)]


def load_spec(path: str | Path) -> Spec:
    """Read and validate a TOML spec file. A name of a shipped spec (e.g. ``sih_ablation``) also works."""
    p = Path(path)
    if not p.exists():
        shipped = Path(__file__).parent / str(path) / "spec.toml"
        if shipped.exists():
            p = shipped
        else:
            names = sorted(x.parent.name for x in Path(__file__).parent.glob("*/spec.toml"))
            raise SpecError(f"spec file not found: {path} (shipped specs: {', '.join(names)})")
    try:
        d = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{p}: not valid TOML: {e}") from e
    return spec_from_dict(d, source=str(p))
