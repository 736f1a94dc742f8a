"""``ablate run SPEC --out RUN``: run (or resume) an experiment spec as a grid of cells."""

from __future__ import annotations

import sys

import click


@click.command("run")
@click.argument("spec")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (created or resumed).")
@click.option("--series", default=None, type=click.Path(), help="Override the spec's series folder (e.g. a tiny preset).")
@click.option("--model", default=None, help="Override with a single model (folder, hub name or .gguf).")
@click.option("--new", is_flag=True,
              help="Start a new run in --out: an old run there is moved aside to OUT.old-<time> (nothing is "
                   "deleted); a folder that is not a run folder is refused.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def run_command(spec, out, series, model, new, no_progress):
    """Run SPEC (a .toml file or a shipped spec name) into --out; finished cells are skipped."""
    from experiments.runner import run_spec
    from experiments.spec import load_spec

    s = load_spec(spec)
    if series or model:
        s = s.with_series(path=series, model=model)
    summary = run_spec(s, out, new=new, progress=not no_progress)
    click.echo(summary.line())
    if summary.cells_failed:
        click.echo(f"{summary.cells_failed} cell(s) failed; see `ablate status {out}`. Re-run to retry them.", err=True)
        sys.exit(1)
