"""``ablate bench WHAT``: benchmarks that print measured numbers (side by side, one process).

* ``interventions``: batched conditions vs one trace per condition (measured ratios);
* ``calibration``: the primary test's rejection rate at the least-favourable null and its power,
  over simulated studies passed through the runner's own table builder
  (:mod:`stats.calibration`; numpy only, no torch).
"""

from __future__ import annotations

import click


@click.command("bench")
@click.argument("what", type=click.Choice(["interventions", "calibration"]), default="interventions")
@click.option("--threads", default=2, show_default=True)
@click.option("--repeats", default=3, show_default=True)
@click.option("--studies", default=1000, show_default=True,
              help="calibration: simulated studies per configuration for the level (>= 500 for the README table).")
@click.option("--power-studies", default=200, show_default=True, help="calibration: studies per power cell.")
@click.option("--seed", default=0, show_default=True)
def bench_command(what, threads, repeats, studies, power_studies, seed):
    """Run a benchmark and print what it measured."""
    if what == "interventions":
        from ablate.intervene.benchmark import run

        run(threads=threads, repeats=repeats, print_fn=click.echo)
    elif what == "calibration":
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
