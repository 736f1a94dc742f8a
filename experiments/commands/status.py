"""``ablate status RUN``: done / pending / failed cells of a run folder."""

from __future__ import annotations

import click


@click.command("status")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--verbose", "-v", is_flag=True, help="List every pending and failed cell.")
def status_command(run, verbose):
    """Show done / pending / failed cells of RUN."""
    from ablate.model.errors import AblateError
    from experiments.store import RunStore

    try:
        st = RunStore(run).status()
    except AblateError as e:
        raise click.ClickException(str(e))
    total = len(st.done) + len(st.pending) + len(st.failed)
    click.echo(f"{run}: {len(st.done)}/{total} cells done, {len(st.pending)} pending, {len(st.failed)} failed")
    for k, err in st.failed.items():
        click.echo(f"  FAILED  {k}: {err}")
    if verbose:
        for k in st.pending:
            click.echo(f"  pending {k}")
