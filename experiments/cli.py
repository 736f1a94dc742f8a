"""The ``ablate`` console script.

Every subcommand is one module of :mod:`experiments.commands` (``experiments/commands/<name>.py``
defines ``<name>_command``), imported lazily so ``ablate --help`` is fast.

Errors: every command's error becomes one message (what, where, how to fix) and a non-zero exit
status (:meth:`LazyGroup.invoke`, :func:`error_message`); the traceback is shown only with
``ablate --debug COMMAND ...`` (or ``ABLATE_DEBUG=1``). See README "Your data is safe".
"""

from __future__ import annotations

import importlib
import os

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


def error_message(exc: BaseException) -> str:
    """One line for an error: the toolkit's own errors say what, where and how to fix; the usual
    environment errors (files, permissions, encodings) are put the same way."""
    from ablate.model.errors import AblateError
    from checkpoints.series import CheckpointError

    if isinstance(exc, (AblateError, CheckpointError)):
        return str(exc)
    if isinstance(exc, PermissionError):
        return (f"permission denied: {exc.filename or exc}; make the folder writable or choose another "
                "--out folder")
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename or exc} ({exc.strerror or exc}); check the path"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename or ''}; check the path and that the disk is writable"
    if isinstance(exc, UnicodeDecodeError):
        return (f"a text input is not UTF-8 text ({exc}); give a plain-text file (one sentence or document "
                "per line)")
    return (f"unexpected {type(exc).__name__}: {exc} (this is a bug or an unchecked input; re-run with "
            "`ablate --debug ...` for the traceback and report it)")


def _debug(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool(root.params.get("debug")) or os.environ.get("ABLATE_DEBUG", "") not in ("", "0")


class LazyGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit,
                SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            if _debug(ctx):
                raise
            raise click.ClickException(error_message(exc)) from None

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
@click.option("--debug", is_flag=True, help="Show the full traceback when a command fails.")
def main(debug):
    """Semantic induction heads: score, ablate and patch them across training checkpoints,
    and test whether pattern discovery suffers more than loss reduction or format compliance."""


if __name__ == "__main__":  # pragma: no cover
    main()
