"""The ``ablate`` console script.

Every subcommand is one module of :mod:`experiments.commands` (``experiments/commands/<name>.py``
defines ``<name>_command``), imported lazily so ``ablate --help`` is fast.
"""

from __future__ import annotations

import importlib

import click

#: subcommand -> "module:attribute" of its click command, in the order of a typical workflow.
COMMANDS: dict[str, tuple[str, str]] = {
    name: (f"experiments.commands.{name}", f"{name}_command")
    for name in ("demo", "train", "scan", "icl", "run", "status", "stats", "figures", "screen", "info", "bench")
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


if __name__ == "__main__":  # pragma: no cover
    main()
