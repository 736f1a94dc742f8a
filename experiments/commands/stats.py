"""``ablate stats RUN``: significance and emergence tables for a finished run.

One module per command (experiments/commands/); registered by experiments/cli.py.
"""

from __future__ import annotations

import click


@click.command("stats")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--prereg", "prereg", default=None,
              help="Comma-separated pre-registered steps (Holm family); default: all steps.")
@click.option("--basis", type=click.Choice(["auto", "specific", "target"]), default="auto", show_default=True)
@click.option("--alpha", type=float, default=0.05, show_default=True)
@click.option("--n-boot", type=int, default=2000, show_default=True, help="Bootstrap replicates for CIs.")
@click.option("--no-mixed-model", is_flag=True, help="Skip the crossed mixed model (slow on big runs).")
@click.option("--seed", type=int, default=0, show_default=True)
def stats_command(run, prereg, basis, alpha, n_boot, no_mixed_model, seed):
    """Write RUN/tables/significance.{csv,md,tex}, emergence.{csv,md,tex} and summary.md."""
    from stats.api import run_stats

    steps = [int(s) for s in prereg.split(",") if s.strip()] if prereg else None
    res = run_stats(run, preregistered_steps=steps, basis=basis, alpha=alpha, n_boot=n_boot,
                    mixed_model=not no_mixed_model, seed=seed)
    click.echo(res.summary())
    click.echo(f"tables written to {run}/tables/")
