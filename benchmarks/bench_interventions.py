"""Benchmark the intervention engine (issue: foundation). Prints measured ratios.

    python benchmarks/bench_interventions.py [--threads 2] [--repeats 3]

Latest measured numbers (before/after the sparse head writes) are in the docstring of
:mod:`ablate.intervene.benchmark`; each run prints the load average, so compare runs taken close together.
"""
import argparse

from ablate.intervene.benchmark import run

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    run(threads=a.threads, repeats=a.repeats)
