"""``ablate run SPEC --out RUN``: run (or resume) an experiment spec as a grid of cells.

``--executor local`` (the default) runs the cells one after the other in this process;
``--executor ray`` fans them out to Ray workers (:mod:`experiments.ray_executor`; needs
``pip install 'sih-ablate[ray]'``) while this process holds the run folder's lock and commits every
cell. ``--device`` / ``--dtype`` choose where and in what precision the model runs
(:mod:`ablate.model.devices`); ``--remote`` runs the traces on NDIF (README "On NDIF").
"""

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
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: cells one after the other here; ray: one Ray task per cell on --workers workers.")
@click.option("--address", default=None,
              help="ray: 'auto' (the cluster this machine is in) or HOST:PORT of a head node; default: a Ray "
                   "instance on this machine for this run.")
@click.option("--workers", default=None, type=click.IntRange(min=1),
              help="ray: worker processes (default: one per GPU on GPU, one per CPU otherwise; 2 locally).")
@click.option("--device", default="auto", show_default=True,
              help="auto (a GPU when there is one), cpu, cuda or cuda:N.")
@click.option("--dtype", default="auto", show_default=True,
              help="auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16 or float16 (GPU).")
@click.option("--remote", is_flag=True,
              help="Run the traces on NDIF (a hub model via --model; needs NDIF_API_KEY and the network).")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@click.option("--preset", default=None,
              help="Factors studies (emergence_factors) only: train every variant on this preset's shape and steps "
                   "instead of the spec's (tiny: the whole study in about a minute, to try it out).")
def run_command(spec, out, series, model, new, executor, address, workers, device, dtype, remote, no_progress,
                preset):
    """Run SPEC (a .toml file or a shipped spec name) into --out; finished cells are skipped."""
    from experiments.factors import is_factors_spec
    from experiments.runner import run_spec
    from experiments.spec import load_spec

    if is_factors_spec(spec):
        _run_factors(spec, out, new=new, preset=preset, progress=not no_progress,
                     unsupported={"--series": series, "--model": model, "--executor ray": executor == "ray",
                                  "--remote": remote, "--device": device != "auto", "--dtype": dtype != "auto"})
        return
    if preset:
        raise click.UsageError("--preset goes with a factors study (a spec with [[variants]], e.g. emergence_factors)")

    if executor == "local" and (address or workers):
        raise click.UsageError("--address and --workers go with --executor ray")
    ex = None
    if executor == "ray":
        from experiments.ray_executor import RayExecutor, require_ray

        require_ray()
        ex = RayExecutor(address=address, workers=workers)
    s = load_spec(spec)
    if series or model:
        s = s.with_series(path=series, model=model)
    summary = run_spec(s, out, new=new, progress=not no_progress, executor=ex, device=device, dtype=dtype,
                       remote=remote)
    click.echo(summary.line())
    if summary.cells_failed:
        click.echo(f"{summary.cells_failed} cell(s) failed; see `ablate status {out}`. Re-run to retry them.", err=True)
        sys.exit(1)


def _run_factors(spec, out, *, new, preset, progress, unsupported):
    """A factors study: train every variant, then measure every checkpoint (experiments.factors)."""
    from experiments.factors import load_factors_spec, run_factors

    given = [k for k, v in unsupported.items() if v]
    if given:
        raise click.UsageError(f"{', '.join(given)} cannot be used with a factors study ({spec}): it trains its own "
                               "series on this machine's CPU; leave the option out")
    s = load_factors_spec(spec)
    if preset:
        s = s.with_preset(preset)
    summary = run_factors(s, out, new=new, progress=progress, print_fn=click.echo)
    click.echo(summary.line())
    if summary.cells_failed:
        click.echo(f"{summary.cells_failed} measurement cell(s) failed; see `ablate status {out}`. Re-run to retry "
                   "them.", err=True)
        sys.exit(1)
