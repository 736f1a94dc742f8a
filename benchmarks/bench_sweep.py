"""Benchmark: skeleton-reuse sweep vs a fresh ``from_pretrained`` per checkpoint.

Usage::

    python benchmarks/bench_sweep.py [SERIES_DIR] [--repeats 3] [--threads 1]

Without SERIES_DIR it trains the tiny preset into a temporary folder first. For each method it
loads every checkpoint of the series and runs one forward pass on a fixed batch (so both
methods do the same useful work), takes the best of ``--repeats`` timings, checks the two
methods give identical logits, and prints the measured ratio. Speed is measured here, never
asserted in tests.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checkpoints.series import CheckpointSeries  # noqa: E402
from checkpoints.sweep import sweep  # noqa: E402


def run_fresh(series, ids):
    from transformers import AutoModelForCausalLM

    out = []
    for cp in series:
        model = AutoModelForCausalLM.from_pretrained(cp.locator, attn_implementation="eager").eval()
        with torch.no_grad():
            out.append(model(input_ids=ids).logits[:, -1])
    return out


def run_sweep(series, ids, prefetch):
    out = []
    for _, model in sweep(series, prefetch=prefetch):
        with torch.no_grad():
            out.append(model(input_ids=ids).logits[:, -1])
    return out


def best_of(fn, repeats):
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("series", nargs="?")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if a.series is None:
        from checkpoints.presets import get_preset
        from checkpoints.trainer import train

        tmp = tempfile.mkdtemp(prefix="bench_sweep_")
        train(get_preset("tiny"), tmp, threads=a.threads, progress=False)
        a.series = tmp
    series = CheckpointSeries.from_local(a.series)
    ids = torch.randint(3, 300, (4, 64))
    t_fresh, ref = best_of(lambda: run_fresh(series, ids), a.repeats)
    t_sweep, got = best_of(lambda: run_sweep(series, ids, prefetch=False), a.repeats)
    t_pref, got2 = best_of(lambda: run_sweep(series, ids, prefetch=True), a.repeats)
    same = all(torch.equal(x, y) for x, y in zip(ref, got)) and all(torch.equal(x, y) for x, y in zip(ref, got2))
    n = len(series)
    print(f"series: {a.series} ({n} checkpoints), torch threads {a.threads}, best of {a.repeats}")
    print(f"fresh from_pretrained per checkpoint: {t_fresh:.3f} s ({1e3 * t_fresh / n:.1f} ms/ckpt)")
    print(f"skeleton reuse, no prefetch:        {t_sweep:.3f} s ({1e3 * t_sweep / n:.1f} ms/ckpt)")
    print(f"skeleton reuse, prefetch:           {t_pref:.3f} s ({1e3 * t_pref / n:.1f} ms/ckpt)")
    print(f"speed-up (fresh / reuse): {t_fresh / t_sweep:.2f}x; with prefetch {t_fresh / t_pref:.2f}x; "
          f"identical logits: {same}")


if __name__ == "__main__":
    main()
