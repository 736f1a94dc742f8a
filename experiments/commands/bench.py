"""``ablate bench NAME``: benchmarks that print measured ratios (side by side, one process, with the
load average); ``ablate bench all`` runs every one."""

from __future__ import annotations

import importlib

import click

#: benchmark name -> "module:function"; each function takes threads, repeats and print_fn
BENCHES: dict[str, str] = {
    "interventions": "ablate.intervene.benchmark:run",
    "prefix": "ablate.intervene.benchmark:run_prefix",
    "atp": "ablate.intervene.benchmark:run_atp",
    "relation-index": "ablate.scores.benchmark:run",
}


@click.command("bench")
@click.argument("what", type=click.Choice(sorted(BENCHES) + ["all"]), default="interventions")
@click.option("--threads", default=2, show_default=True)
@click.option("--repeats", default=3, show_default=True)
def bench_command(what, threads, repeats):
    """Run a benchmark and print measured ratios (side by side, one process)."""
    for name in (sorted(BENCHES) if what == "all" else [what]):
        mod, fn = BENCHES[name].split(":")
        click.echo(f"== bench {name}")
        getattr(importlib.import_module(mod), fn)(threads=threads, repeats=repeats, print_fn=click.echo)
