"""Intervention operators: serialisable dataclasses naming a head set, positions and a replacement.

A head's output is the slice ``h*d_head:(h+1)*d_head`` of the *input* of the attention output
projection (docs/science.md, "Circuits of one attention head"). Every operator replaces that slice at
chosen positions; they differ only in the replacement:

=================  ==========================================================================
``ZeroAblate``     0
``MeanAblate``     the head's mean activation over a reference batch (position-averaged, or
                   per position)
``ResampleAblate`` the head's activation on another input (row drawn with a seed; never itself)
``Patch``          the head's activation on the *source* (clean) input, row by row, written into
                   the run on the (corrupted) input
=================  ==========================================================================

Positions: ``"all"``, ``"last"`` (last real token of each row, padding-aware) or a tuple of
explicit indices (negative counts from the end).

:data:`OPERATORS` is the one registry of operator names (``zero``, ``mean``, ``resample``,
``patch``): the engine (:mod:`ablate.intervene.engine`), the spec validation and the runner's cells
all read it; :func:`make_operator` is the one constructor from a name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence, Union

from ablate.model.errors import InterventionError, PositionError
from ablate.model.heads import HeadSet

PositionSpec = Union[str, tuple[int, ...]]


def _norm_positions(p: Any) -> PositionSpec:
    if isinstance(p, str):
        if p not in ("all", "last"):
            raise PositionError(f"positions must be 'all', 'last' or a list of ints, got {p!r}")
        return p
    try:
        return tuple(int(x) for x in p)
    except TypeError as e:
        raise PositionError(f"positions must be 'all', 'last' or a list of ints, got {p!r}") from e


@dataclass(frozen=True)
class Intervention:
    """Base class: a head set and the positions to act on. Serialisable via :meth:`to_dict`."""

    heads: HeadSet | str  # a HeadSet after construction ("L3H5,L4H0" strings are parsed)
    positions: PositionSpec | Sequence[int] = "all"  # normalised to "all" / "last" / a tuple of ints
    kind: ClassVar[str] = "base"
    #: True for operators that remove the head's output (zero / mean / resample), False for patching
    ablation: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", HeadSet.parse(self.heads))
        object.__setattr__(self, "positions", _norm_positions(self.positions))

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "heads": str(self.heads),
             "positions": self.positions if isinstance(self.positions, str) else list(self.positions)}
        for k, v in self.__dict__.items():
            if k not in ("heads", "positions"):
                d[k] = v
        return d

    @staticmethod
    def from_dict(d: dict) -> "Intervention":
        d = dict(d)
        kind = d.pop("kind", None)
        if kind not in OPERATORS:
            raise InterventionError(f"unknown intervention kind {kind!r}; known: {sorted(OPERATORS)}")
        return OPERATORS[kind](**d)

    def __str__(self) -> str:
        pos = self.positions if isinstance(self.positions, str) else ",".join(map(str, self.positions))
        return f"{self.kind}[{self.heads}]@{pos}"


@dataclass(frozen=True)
class ZeroAblate(Intervention):
    """Replace the head's output with zeros."""

    kind: ClassVar[str] = "zero"


@dataclass(frozen=True)
class MeanAblate(Intervention):
    """Replace the head's output with its mean over a reference batch.

    ``per_position=False``: mean over all real tokens of the reference (``[d_head]`` per head).
    ``per_position=True``: mean over reference rows at each position (``[T, d_head]``; the reference
    must have the run's length) -- for ``positions='last'``, the mean over the reference rows' last tokens.
    """

    per_position: bool = False
    kind: ClassVar[str] = "mean"


@dataclass(frozen=True)
class ResampleAblate(Intervention):
    """Replace the head's output with its output on another input row (drawn with ``seed``).

    Source rows come from ``source`` given to :func:`run_conditions`, or the run's own batch (then
    row i never receives itself).
    """

    seed: int = 0
    kind: ClassVar[str] = "resample"


@dataclass(frozen=True)
class Patch(Intervention):
    """Write the head's output on the clean ``source`` batch (row by row) into the corrupted run."""

    kind: ClassVar[str] = "patch"
    ablation: ClassVar[bool] = False


#: every operator by name -- the one registry (engine, spec validation and runner cells read it)
OPERATORS: dict[str, type[Intervention]] = {c.kind: c for c in (ZeroAblate, MeanAblate, ResampleAblate, Patch)}
#: the operators that *remove* a head's output (patching restores one instead)
ABLATIONS: tuple[str, ...] = tuple(k for k, c in OPERATORS.items() if c.ablation)


def make_operator(name: str, heads: HeadSet | str, positions: PositionSpec | Sequence[int] = "all", *, seed: int = 0) -> Intervention:
    """The operator called ``name`` on ``heads`` at ``positions`` (``seed`` is used by resampling only).

    Raises:
        InterventionError: ``name`` is not in :data:`OPERATORS` (the message lists the known names).
    """
    if name not in OPERATORS:
        raise InterventionError(f"unknown operator {name!r}; known operators: {', '.join(OPERATORS)}")
    cls = OPERATORS[name]
    if cls is ResampleAblate:
        return cls(heads, positions, seed=seed)
    return cls(heads, positions)


@dataclass(frozen=True)
class Condition:
    """A named tuple of interventions applied together (empty = the clean run)."""

    name: str
    interventions: tuple[Intervention, ...] = field(default_factory=tuple)

    @staticmethod
    def coerce(c: Any) -> "Condition":
        if isinstance(c, Condition):
            return c
        if c is None:
            return Condition("clean", ())
        if isinstance(c, Intervention):
            return Condition(str(c), (c,))
        c = tuple(c)
        return Condition("+".join(map(str, c)) or "clean", c)
