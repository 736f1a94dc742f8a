"""The ``ablate`` console script.

Subcommands live next to the code they drive and are imported lazily, so ``ablate --help`` is fast
and a subcommand whose module is not present simply is not listed.
"""

from __future__ import annotations

import importlib

import click

#: subcommand -> "module:attribute" of its click command, in the order of a typical workflow.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("experiments.demo", "demo_command"),
    "train": ("checkpoints.cli", "train_command"),
    "scan": ("ablate.scan_cli", "scan_command"),
    "icl": ("ablate.icl_cli", "icl_command"),
    "run": ("experiments.run_cli", "run_command"),
    "status": ("experiments.run_cli", "status_command"),
    "stats": ("stats.cli", "stats_command"),
    "figures": ("paper_figures.cli", "figures_command"),
    "info": ("experiments.cli", "info_command"),
    "bench": ("experiments.cli", "bench_command"),
}


def _available(name: str) -> bool:
    mod = COMMANDS[name][0]
    try:
        return importlib.util.find_spec(mod) is not None
    except ModuleNotFoundError:
        return False


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [n for n in COMMANDS if _available(n)]

    def get_command(self, ctx, name):
        if name not in COMMANDS or not _available(name):
            return None
        mod, attr = COMMANDS[name]
        return getattr(importlib.import_module(mod), attr)

    def format_commands(self, ctx, formatter):
        rows = []
        for n in self.list_commands(ctx):
            try:
                cmd = self.get_command(ctx, n)
            except Exception as e:  # a broken subcommand must not hide the others
                rows.append((n, f"(unavailable: {e})"))
                continue
            rows.append((n, cmd.get_short_help_str(60) if cmd else ""))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sih-ablate")
def main():
    """Semantic induction heads: score, ablate and patch them across training checkpoints,
    and test whether pattern discovery suffers more than loss reduction or format compliance."""


@click.command("info")
@click.argument("model")
@click.option("--revision", default=None, help="Hub revision (e.g. Pythia's step3000).")
def info_command(model, revision):
    """Load MODEL (folder, hub name or .gguf) and print its architecture adapter."""
    from ablate import load_model

    h = load_model(model, revision=revision)
    for k, v in h.describe().items():
        click.echo(f"{k:>12}: {v}")


@click.command("bench")
@click.argument("what", type=click.Choice(["interventions"]), default="interventions")
@click.option("--threads", default=2, show_default=True)
@click.option("--repeats", default=3, show_default=True)
def bench_command(what, threads, repeats):
    """Run a benchmark and print measured ratios (side by side, one process)."""
    if what == "interventions":
        from ablate.benchmark import run

        run(threads=threads, repeats=repeats, print_fn=click.echo)


if __name__ == "__main__":  # pragma: no cover
    main()
