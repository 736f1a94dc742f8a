"""``ablate figures RUN``: render every table of a run folder to RUN/figures/*.pdf and *.png.

One module per command (experiments/commands/); registered by experiments/cli.py.
"""

from __future__ import annotations

import logging

import click


class _EchoHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.failed: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.failed.append(record.getMessage())
        click.echo(self.format(record), err=record.levelno >= logging.WARNING)


@click.command("figures")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--step", type=int, default=None,
              help="Checkpoint for the single-checkpoint figures (heatmaps, ablation drops); default: final.")
@click.option("--format", "formats", default="pdf,png", show_default=True,
              help="Comma-separated file formats.")
@click.option("--dpi", type=int, default=200, show_default=True, help="PNG resolution.")
@click.option("--strict", is_flag=True, help="Stop at the first figure that fails instead of logging it.")
def figures_command(run, step, formats, dpi, strict):
    """Render RI heatmaps, score curves, ICL levels, accuracy vs shots, ablation drops and the
    emergence timeline from the tables present in RUN (absent tables are skipped, with a note)."""
    from experiments.validate import check_formats
    from paper_figures.render import render_run

    fmts = check_formats(formats.split(","))
    if dpi < 1:
        raise click.BadParameter(f"{dpi} must be >= 1", param_hint="--dpi")
    log = logging.getLogger("paper_figures")
    handler = _EchoHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    old = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        paths = render_run(run, step=step, formats=fmts, dpi=dpi, strict=strict)
    finally:
        log.removeHandler(handler)
        log.setLevel(old)
    click.echo(f"{len(paths)} file(s) written to {run}/figures/")
    if handler.failed:
        raise click.ClickException(f"{len(handler.failed)} figure(s) failed ({'; '.join(handler.failed)}); "
                                   "the others were written. Re-run with `ablate --debug figures --strict RUN` "
                                   "for the traceback")
