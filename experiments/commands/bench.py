"""``ablate bench NAME``: benchmarks that print measured numbers (side by side, one process, with the
load average); ``ablate bench all`` runs every one.

* ``interventions``, ``prefix``, ``atp``, ``relation-index``: measured speed ratios;
* ``transformer-lens``: the all-heads ablation sweep in TransformerLens (hooks, one forward per head)
  beside the toolkit's per-head loop and shared-prefix sweep on the same random model and batch, with
  the largest difference of their logits (:mod:`ablate.intervene.tl_compare`; needs the ``bench`` extra);
* ``ray``: serial vs ``--executor ray`` cells/min on a small spec over the tiny series, and the
  per-cell overhead Ray adds (:mod:`experiments.ray_bench`; needs Ray);
* ``calibration``: the primary test's rejection rate at the least-favourable null and its power,
  over simulated studies passed through the runner's own table builder
  (:mod:`stats.calibration`; numpy only, no torch).
"""

from __future__ import annotations

import importlib

import click

#: benchmark name -> "module:function"; each function takes threads, repeats and print_fn
BENCHES: dict[str, str] = {
    "interventions": "ablate.intervene.benchmark:run",
    "prefix": "ablate.intervene.benchmark:run_prefix",
    "atp": "ablate.intervene.benchmark:run_atp",
    "relation-index": "ablate.scores.benchmark:run",
    "throughput": "experiments.throughput:run_throughput",
    "ray": "experiments.ray_bench:run",
    "transformer-lens": "ablate.intervene.tl_compare:run_tl",
}


def _calibration(studies: int, power_studies: int, seed: int) -> None:
    import time

    from stats.calibration import CONFIGS, header, level_and_power

    t0 = time.perf_counter()
    click.echo("Primary test (IUT of two one-sided sign-flip tests over tasks on specific drops) through "
               "experiments.tidy.results_table -> stats.analyze; least-favourable null: PD drop = LR drop "
               "= .6, FC untouched; power at LR = FC = .1, PD = .1 + effect.\n")
    click.echo(header(n_power=power_studies))
    res = level_and_power(CONFIGS, n_level=studies, n_power=power_studies, seed=seed, print_fn=click.echo)
    bad = res[(res["level"] < 0.02) | (res["level"] > 0.065)]
    click.echo(f"\n{len(res) - len(bad)} of {len(res)} configurations have a level in [.02, .065]; "
               f"{time.perf_counter() - t0:.0f} s.")


def _shipped_final() -> list:
    """``[(name, loader)]`` of the shipped default series' final checkpoint (none when not shipped)."""
    from checkpoints.embedded import embedded_series, has_embedded

    if not has_embedded("default"):
        return []
    last = embedded_series("default")[-1]

    def load():
        from ablate.model.handle import load_model

        return load_model(last.locator)
    return [(f"shipped default series, step {last.step}", load)]


@click.command("bench")
@click.argument("what", type=click.Choice(sorted(BENCHES) + ["calibration", "all"]), default="interventions")
@click.option("--threads", default=2, show_default=True)
@click.option("--repeats", default=3, show_default=True)
@click.option("--studies", default=1000, show_default=True,
              help="calibration: simulated studies per configuration for the level (>= 500 for the README table).")
@click.option("--power-studies", default=200, show_default=True, help="calibration: studies per power cell.")
@click.option("--seed", default=0, show_default=True)
@click.option("--series", default=None, type=click.Path(exists=True, file_okay=False),
              help="ray: the checkpoint series to run (default: the tiny preset, trained into a temp folder).")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1), help="ray: workers of the wider run.")
def bench_command(what, threads, repeats, studies, power_studies, seed, series, workers):
    """Run a benchmark and print what it measured."""
    names = [n for n in sorted(BENCHES) if n != "ray"] + ["calibration"] if what == "all" else [what]
    for name in names:
        click.echo(f"== bench {name}")
        if name == "calibration":
            _calibration(studies, power_studies, seed)
            continue
        mod, fn = BENCHES[name].split(":")
        if name == "atp":  # + the shipped default series' final checkpoint (the issue's Spearman target)
            getattr(importlib.import_module(mod), fn)(threads=threads, repeats=repeats, print_fn=click.echo,
                                                      extra_models=_shipped_final())
            continue
        if name == "ray":
            getattr(importlib.import_module(mod), fn)(series=series, workers=workers, print_fn=click.echo)
            continue
        getattr(importlib.import_module(mod), fn)(threads=threads, repeats=repeats, print_fn=click.echo)
