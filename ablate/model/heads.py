"""Immutable, hashable sets of attention heads with a readable string form ("L3H5,L4H0")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator

from ablate.model.errors import AblateError, HeadIndexError

_HEAD_RE = re.compile(r"^L(\d+)H(\d+)$", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class Head:
    """One attention head: ``layer`` and ``head`` are 0-based."""

    layer: int
    head: int

    def __str__(self) -> str:
        return f"L{self.layer}H{self.head}"


class HeadSet:
    """An immutable, hashable, sorted set of :class:`Head`.

    ``str(HeadSet)`` gives the canonical form ``"L3H5,L4H0"`` (sorted by layer then head) and
    :meth:`parse` reads it back, so a head set round-trips through spec files and tables.

    Examples:
        >>> hs = HeadSet.parse("L4H0, L3H5")
        >>> str(hs)
        'L3H5,L4H0'
        >>> hs.layers()
        (3, 4)
    """

    __slots__ = ("_heads",)

    def __init__(self, heads: Iterable[Head | tuple[int, int]] = ()) -> None:
        items = []
        for h in heads:
            if isinstance(h, Head):
                items.append(h)
            else:
                layer, head = h
                if int(layer) < 0 or int(head) < 0:
                    raise HeadIndexError(f"negative head index ({layer}, {head}); heads are 0-based")
                items.append(Head(int(layer), int(head)))
        object.__setattr__(self, "_heads", tuple(sorted(set(items))))

    def __setattr__(self, name, value):  # pragma: no cover - immutability guard
        raise AttributeError("HeadSet is immutable")

    def __reduce__(self):  # pickle (Ray sends head sets to its workers) rebuilds it through __init__
        return (HeadSet, (self._heads,))

    @classmethod
    def parse(cls, text: "str | HeadSet | Iterable") -> "HeadSet":
        """Parse ``"L3H5,L4H0"`` (spaces and an empty string allowed) into a HeadSet."""
        if isinstance(text, HeadSet):
            return text
        if not isinstance(text, str):
            return cls(text)
        heads = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            m = _HEAD_RE.match(part)
            if m is None:
                raise AblateError(
                    f"cannot parse head {part!r} in head set {text!r}: write heads as L<layer>H<head>, "
                    "comma-separated, e.g. 'L3H5,L4H0'"
                )
            heads.append((int(m.group(1)), int(m.group(2))))
        return cls(heads)

    @classmethod
    def all_heads(cls, n_layers: int, n_heads: int) -> "HeadSet":
        return cls((l, h) for l in range(n_layers) for h in range(n_heads))

    def validate(self, n_layers: int, n_heads: int) -> "HeadSet":
        """Raise :class:`HeadIndexError` if any head is outside an ``n_layers x n_heads`` model."""
        for h in self._heads:
            if h.layer >= n_layers:
                raise HeadIndexError(
                    f"head {h} is out of range: the model has {n_layers} layers (0..{n_layers - 1})"
                )
            if h.head >= n_heads:
                raise HeadIndexError(
                    f"head {h} is out of range: layer {h.layer} has {n_heads} heads (0..{n_heads - 1})"
                )
        return self

    def layers(self) -> tuple[int, ...]:
        return tuple(sorted({h.layer for h in self._heads}))

    def heads_in_layer(self, layer: int) -> tuple[int, ...]:
        return tuple(h.head for h in self._heads if h.layer == layer)

    def layer_histogram(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for h in self._heads:
            out[h.layer] = out.get(h.layer, 0) + 1
        return out

    def union(self, other: "HeadSet") -> "HeadSet":
        return HeadSet(self._heads + HeadSet.parse(other)._heads)

    def __or__(self, other: "HeadSet") -> "HeadSet":
        return self.union(other)

    def __iter__(self) -> Iterator[Head]:
        return iter(self._heads)

    def __len__(self) -> int:
        return len(self._heads)

    def __contains__(self, item) -> bool:
        if isinstance(item, tuple):
            item = Head(*item)
        return item in self._heads

    def __eq__(self, other) -> bool:
        return isinstance(other, HeadSet) and self._heads == other._heads

    def __hash__(self) -> int:
        return hash(self._heads)

    def __str__(self) -> str:
        return ",".join(str(h) for h in self._heads)

    def __repr__(self) -> str:
        return f"HeadSet({str(self)!r})"
