"""``ablate bench WHAT``: benchmarks that print measured ratios (side by side, one process)."""

from __future__ import annotations

import click


@click.command("bench")
@click.argument("what", type=click.Choice(["interventions"]), default="interventions")
@click.option("--threads", default=2, show_default=True)
@click.option("--repeats", default=3, show_default=True)
def bench_command(what, threads, repeats):
    """Run a benchmark and print measured ratios (side by side, one process)."""
    if what == "interventions":
        from ablate.intervene.benchmark import run

        run(threads=threads, repeats=repeats, print_fn=click.echo)
