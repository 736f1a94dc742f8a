"""Matched random head sets: the controls an ablation of a target set is compared against."""

from __future__ import annotations

import itertools
import math
import random

from ablate.model.errors import AblateError
from ablate.model.heads import HeadSet


def matched_random_sets(target: HeadSet, n_layers: int, n_heads: int, R: int, seed: int,
                        exclude: HeadSet | None = None) -> list[HeadSet]:
    """Up to ``R`` *distinct* random head sets with the size and layer histogram of ``target``.

    In each layer the target uses ``c`` heads, ``c`` heads are drawn uniformly without replacement
    from that layer's heads outside ``target`` (and ``exclude``). When a layer has too few other
    heads, the shortfall is drawn from the other layers' free heads (the set size is kept; the
    histogram is then as close as possible) -- reported via :func:`histogram_mismatch`.

    The sets are distinct: a control drawn twice would count as two independent draws from the null
    and overstate the random-head p (docs/statistics.md, "Matched random head sets"). When fewer than
    ``R`` matched sets exist (a 2-head set in one layer of a 4-head model has exactly one), *all* of
    them are returned, fewer than ``R``; the statistics count the sets they get, and the empirical p
    is then reported only where ``1/(R'+1)`` can reach its resolution.

    Raises:
        AblateError: ``R < 1``, an empty target, or a model too small to draw any disjoint set.
    """
    if R < 1:
        raise AblateError(f"R = {R} random control sets requested; need R >= 1 (e.g. R = 8)")
    if len(target) == 0:
        raise AblateError("cannot match random controls to an empty head set")
    taken = _pairs(set(target) | set(exclude or ()))
    rng = random.Random(f"{seed}|{target}|{n_layers}x{n_heads}")
    hist = sorted(target.layer_histogram().items())
    free = {layer: [(layer, h) for h in range(n_heads) if (layer, h) not in taken] for layer, _ in hist}
    short = sum(max(0, c - len(free[layer])) for layer, c in hist)
    if short:
        n_free = sum(1 for l in range(n_layers) for h in range(n_heads) if (l, h) not in taken)
        if n_free - sum(min(c, len(free[layer])) for layer, c in hist) < short:
            raise AblateError(
                f"model has too few heads ({n_layers}x{n_heads}) to draw a random set of size "
                f"{len(target)} disjoint from the target {target}"
            )
    else:
        pool = math.prod(math.comb(len(free[layer]), c) for layer, c in hist)
        if pool <= 4 * R:  # small pool: enumerate every matched set, then take R of them (or all)
            per_layer = [list(itertools.combinations(free[layer], c)) for layer, c in hist]
            every = [HeadSet([p for part in combo for p in part]) for combo in itertools.product(*per_layer)]
            return every if len(every) <= R else rng.sample(every, R)
    out: list[HeadSet] = []
    seen: set[str] = set()
    for _ in range(100 * R + 1000):  # pool > 4R (or a shortfall): rejection sampling finds R quickly
        chosen = []
        for layer, c in hist:
            chosen += rng.sample(free[layer], min(c, len(free[layer])))
        if short:
            rest = [(l, h) for l in range(n_layers) for h in range(n_heads)
                    if (l, h) not in taken and (l, h) not in chosen]
            chosen += rng.sample(rest, short)
        hs = HeadSet(chosen)
        if str(hs) not in seen:
            seen.add(str(hs))
            out.append(hs)
            if len(out) == R:
                break
    return out


def _pairs(heads) -> set[tuple[int, int]]:
    return {(h.layer, h.head) for h in heads}


def histogram_mismatch(a: HeadSet, b: HeadSet) -> int:
    """Number of heads by which two sets' layer histograms differ (0 = perfectly matched)."""
    ha, hb = a.layer_histogram(), b.layer_histogram()
    return sum(abs(ha.get(l, 0) - hb.get(l, 0)) for l in set(ha) | set(hb)) // 2
