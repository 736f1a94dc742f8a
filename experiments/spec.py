"""Experiment spec files (TOML), validated on load.

A spec names the series (or one model) and steps, how heads are selected, the operators, the random
controls, the ICL tasks and the seed. Unknown keys are errors with a "did you mean" suggestion, and
every error names the key and the file. Example (``experiments/sih_ablation/spec.toml``)::

    name = "sih_ablation"
    seed = 0

    [series]
    path = "runs/default_series"   # a checkpoint-series folder; or `model = "path/or/hub-name"`
    steps = "all"                   # "all", "final", a list of steps, or {log_spaced = 6}

    [heads]
    select = "sih"                  # "sih" (selection rule) or "explicit"
    at = "each"                     # select SIHs at "each" checkpoint or at the "final" one
    rule = "topk"                   # "topk" or "fdr" (RI above its null, BH-controlled)
    k = 4
    alpha = 0.05
    min_effect = 0.02
    min_events = 10                 # a head's RI counts only with >= this many gated (triplet, j) events
    relations = ["subj", "obj", "mod"]
    n_sentences = 120
    induction = true                # also ablate conventional induction heads as a comparison set
    explicit = []                   # HeadSets like "L1H2,L0H3" when select = "explicit"

    [controls]
    random_sets = 8                 # R matched random head sets (same size and layer histogram)

    [operators]
    primary = "mean"
    robustness = ["zero", "resample"]
    patch = false                   # also patch the sets' clean outputs into shuffled-label prompts
                                    # (query token; shots >= 1) -> RUN/patching, `ablate stats`

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ablate.model.errors import AblateError
from ablate.model.heads import HeadSet
from ablate.intervene.operators import ABLATIONS


class SpecError(AblateError):
    """A spec file is invalid. The message names the file and the key."""


#: the ablation operators a spec may name (from the one registry, ablate.intervene.operators)
OPERATOR_NAMES = ABLATIONS


@dataclass(frozen=True)
class SeriesSpec:
    path: str | None = None
    model: str | None = None
    revision: str | None = None
    steps: Any = "all"


@dataclass(frozen=True)
class HeadsSpec:
    select: str = "sih"
    at: str = "each"
    rule: str = "topk"
    k: int = 4
    alpha: float = 0.05
    min_effect: float = 0.02
    min_events: int = 10
    relations: tuple[str, ...] = ("subj", "obj", "mod")
    n_sentences: int = 120
    induction: bool = True
    explicit: tuple[str, ...] = ()


@dataclass(frozen=True)
class ControlsSpec:
    random_sets: int = 8


@dataclass(frozen=True)
class OperatorsSpec:
    primary: str = "mean"
    robustness: tuple[str, ...] = ("zero", "resample")
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
    positions: str = "all"
    controls: tuple[str, ...] = ("clean", "shuffled", "nolabel")


@dataclass(frozen=True)
class Spec:
    name: str = "experiment"
    seed: int = 0
    description: str = ""
    series: SeriesSpec = field(default_factory=SeriesSpec)
    heads: HeadsSpec = field(default_factory=HeadsSpec)
    controls: ControlsSpec = field(default_factory=ControlsSpec)
    operators: OperatorsSpec = field(default_factory=OperatorsSpec)
    icl: ICLSpec = field(default_factory=ICLSpec)
    source: str = "<dict>"

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("source")
        return d

    def hash(self) -> str:
        """Hash of the spec's content (not its file name): identical specs give identical hashes."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=list).encode()).hexdigest()[:16]

    def with_series(self, path: str | None = None, model: str | None = None) -> "Spec":
        s = SeriesSpec(path=path if model is None else None, model=model,
                       revision=self.series.revision, steps=self.series.steps)
        return Spec(**{**{k: getattr(self, k) for k in self.__dataclass_fields__}, "series": s})


_SECTIONS = {"series": SeriesSpec, "heads": HeadsSpec, "controls": ControlsSpec,
             "operators": OperatorsSpec, "icl": ICLSpec}
_TOP = {"name": str, "seed": int, "description": str}


def _suggest(key: str, options) -> str:
    m = difflib.get_close_matches(key, list(options), n=1, cutoff=0.5)
    return f" (did you mean {m[0]!r}?)" if m else f" (known keys: {', '.join(sorted(options))})"


def _coerce(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SpecError(f"{where}: expected true/false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if not isinstance(value, int) or isinstance(value, bool):
            raise SpecError(f"{where}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise SpecError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, tuple):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise SpecError(f"{where}: expected a list, got {value!r}")
        return tuple(value)
    return value


def spec_from_dict(d: dict, source: str = "<dict>") -> Spec:
    """Build and validate a :class:`Spec` from a parsed TOML dict (errors name ``source``)."""
    if not isinstance(d, dict):
        raise SpecError(f"{source}: a spec must be a TOML table")
    top: dict[str, Any] = {}
    allowed = set(_TOP) | set(_SECTIONS)
    for key, value in d.items():
        if key not in allowed:
            raise SpecError(f"{source}: unknown key {key!r}{_suggest(key, allowed)}")
        if key in _TOP:
            if not isinstance(value, _TOP[key]) or isinstance(value, bool):
                raise SpecError(f"{source}: key {key!r} must be a {_TOP[key].__name__}, got {value!r}")
            top[key] = value
            continue
        cls = _SECTIONS[key]
        if not isinstance(value, dict):
            raise SpecError(f"{source}: [{key}] must be a table, got {value!r}")
        fields = cls.__dataclass_fields__
        kw = {}
        for k, v in value.items():
            if k not in fields:
                raise SpecError(f"{source}: unknown key {key}.{k!r}{_suggest(k, fields)}")
            default = fields[k].default
            kw[k] = _coerce(v, default, f"{source}: key {key}.{k}") if default is not None else v
        top[key] = cls(**kw)
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
    h = spec.heads
    if h.select not in ("sih", "explicit"):
        raise SpecError(f"{src}: key heads.select must be \"sih\" or \"explicit\", got {h.select!r}")
    if h.at not in ("each", "final"):
        raise SpecError(f"{src}: key heads.at must be \"each\" or \"final\", got {h.at!r}")
    if h.rule not in ("topk", "fdr"):
        raise SpecError(f"{src}: key heads.rule must be \"topk\" or \"fdr\", got {h.rule!r}")
    if h.k < 1:
        raise SpecError(f"{src}: key heads.k must be >= 1, got {h.k}")
    if h.select == "explicit":
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
    if spec.controls.random_sets < 1:
        raise SpecError(f"{src}: key controls.random_sets = {spec.controls.random_sets}: need at least 1 "
                        "matched random head set (8 or more recommended for an empirical p-value)")
    o = spec.operators
    for op in (o.primary, *o.robustness):
        if op not in OPERATOR_NAMES:
            raise SpecError(f"{src}: key operators: unknown operator {op!r}{_suggest(op, OPERATOR_NAMES)}")
    i = spec.icl
    if not isinstance(o.patch, bool):
        raise SpecError(f"{src}: key operators.patch must be true or false, got {o.patch!r}")
    if o.patch and not any(isinstance(x, int) and x >= 1 for x in i.shots):
        raise SpecError(f"{src}: key operators.patch = true needs a shot count >= 1 in icl.shots (a "
                        f"0-shot prompt has no labels to shuffle), got {list(i.shots)}")
    if not i.shots or any((not isinstance(x, int)) or x < 0 for x in i.shots):
        raise SpecError(f"{src}: key icl.shots must be a non-empty list of non-negative integers, got {i.shots!r}")
    if i.items < 1 or i.lr_documents < 1:
        raise SpecError(f"{src}: keys icl.items and icl.lr_documents must be >= 1")
    bad = [c for c in i.controls if c not in ("clean", "shuffled", "nolabel")]
    if bad or "clean" not in i.controls or "nolabel" not in i.controls:
        raise SpecError(f"{src}: key icl.controls must include \"clean\" and \"nolabel\" (the FC floor) and "
                        f"may add \"shuffled\", got {list(i.controls)}")
    if i.positions not in ("all", "last"):
        raise SpecError(f"{src}: key icl.positions must be \"all\" or \"last\", got {i.positions!r}")


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
