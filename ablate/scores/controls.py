"""Matched random head sets: the controls an ablation of a target set is compared against."""

from __future__ import annotations

import random

from ablate.model.errors import AblateError
from ablate.model.heads import HeadSet


def matched_random_sets(target: HeadSet, n_layers: int, n_heads: int, R: int, seed: int,
                        exclude: HeadSet | None = None) -> list[HeadSet]:
    """``R`` random head sets with the same size and the same layer histogram as ``target``.

    In each layer the target uses ``c`` heads, ``c`` heads are drawn uniformly without replacement
    from that layer's heads outside ``target`` (and ``exclude``). When a layer has too few other
    heads, the shortfall is drawn from the other layers' free heads (the set size is kept; the
    histogram is then as close as possible) -- reported via :func:`histogram_mismatch`.

    Raises:
        AblateError: ``R < 1``, an empty target, or a model too small to draw any disjoint set.
    """
    if R < 1:
        raise AblateError(f"R = {R} random control sets requested; need R >= 1 (e.g. R = 8)")
    if len(target) == 0:
        raise AblateError("cannot match random controls to an empty head set")
    taken = set(target) | set(exclude or ())
    rng = random.Random(f"{seed}|{target}|{n_layers}x{n_heads}")
    out = []
    for _ in range(R):
        chosen = []
        short = 0
        for layer, c in sorted(target.layer_histogram().items()):
            free = [(layer, h) for h in range(n_heads) if (layer, h) not in _pairs(taken)]
            k = min(c, len(free))
            chosen += rng.sample(free, k)
            short += c - k
        if short:
            free = [(l, h) for l in range(n_layers) for h in range(n_heads)
                    if (l, h) not in _pairs(taken) and (l, h) not in chosen]
            if len(free) < short:
                raise AblateError(
                    f"model has too few heads ({n_layers}x{n_heads}) to draw a random set of size "
                    f"{len(target)} disjoint from the target {target}"
                )
            chosen += rng.sample(free, short)
        out.append(HeadSet(chosen))
    return out


def _pairs(heads) -> set[tuple[int, int]]:
    return {(h.layer, h.head) for h in heads}


def histogram_mismatch(a: HeadSet, b: HeadSet) -> int:
    """Number of heads by which two sets' layer histograms differ (0 = perfectly matched)."""
    ha, hb = a.layer_histogram(), b.layer_histogram()
    return sum(abs(ha.get(l, 0) - hb.get(l, 0)) for l in set(ha) | set(hb)) // 2
