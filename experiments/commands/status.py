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
    from experiments.store import RunStore

    st = RunStore(run).status()
    total = len(st.done) + len(st.pending) + len(st.failed)
    click.echo(f"{run}: {len(st.done)}/{total} cells done, {len(st.pending)} pending, {len(st.failed)} failed")
    click.echo("  " + ", ".join(f"{kind} {done}/{n}" for kind, (done, n) in _by_kind(st).items()))
    for k, err in st.failed.items():
        click.echo(f"  FAILED  {k}: {err}")
    if verbose:
        for k in st.pending:
            click.echo(f"  pending {k}")
