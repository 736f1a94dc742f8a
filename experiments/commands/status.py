"""``ablate status RUN``: done / pending / failed cells of a run folder, in total and per cell kind."""

from __future__ import annotations

import click


def _by_kind(st) -> dict[str, tuple[int, int]]:
    """Cells done / in the grid per cell kind (scores, levels, heads, lr, icl, patch)."""
    from experiments.cells import KINDS

    out = {}
    for kind in KINDS:
        done = sum(k.split("/", 1)[0] == kind for k in st.done)
        n = done + sum(k.split("/", 1)[0] == kind for k in [*st.pending, *st.failed])
        if n:
            out[kind] = (done, n)
    return out


@click.command("status")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--verbose", "-v", is_flag=True, help="List every pending and failed cell.")
def status_command(run, verbose):
    """Show done / pending / failed cells of RUN."""
    from experiments.factors import is_factors_run
    from experiments.store import RunStore

    if is_factors_run(run):
        _factors_status(run, verbose)
        return

    st = RunStore(run).status()
    total = len(st.done) + len(st.pending) + len(st.failed)
    click.echo(f"{run}: {len(st.done)}/{total} cells done, {len(st.pending)} pending, {len(st.failed)} failed")
    click.echo("  " + ", ".join(f"{kind} {done}/{n}" for kind, (done, n) in _by_kind(st).items()))
    for k, err in st.failed.items():
        click.echo(f"  FAILED  {k}: {err}")
    if verbose:
        for k in st.pending:
            click.echo(f"  pending {k}")


def _factors_status(run, verbose) -> None:
    """A factors study: per variant, how far training got and the measurement run's cells."""
    import json
    from pathlib import Path

    from experiments.factors import read_factors_manifest
    from experiments.store import RunStore

    root = Path(run)
    names = read_factors_manifest(root).get("variants", [])
    click.echo(f"{run}: factors study with {len(names)} variants")
    for v in names:
        try:
            steps = max(int(c["step"]) for c in json.loads((root / "series" / v / "series.json").read_text())["checkpoints"])
            trained = f"trained to step {steps}"
        except (OSError, ValueError, KeyError):
            trained = "not trained yet"
        vdir = root / "variants" / v
        if (vdir / "manifest.json").exists():
            st = RunStore(vdir).status()
            total = len(st.done) + len(st.pending) + len(st.failed)
            meas = f"measurement {len(st.done)}/{total} cells, {len(st.failed)} failed"
            if verbose:
                for k, err in st.failed.items():
                    meas += f"\n    FAILED {k}: {err}"
        else:
            meas = "not measured yet"
        click.echo(f"  {v}: {trained}; {meas}")
