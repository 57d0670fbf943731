"""The `jib` application: subcommands wired to typer, and `main()`.

Each subcommand's module is imported when that subcommand is looked up (to run it, or to list
it in `jib --help`), not when `jib` starts: `jib run` never loads the code of `jib compare` or
`jib chat`, nor builds their click commands. A subcommand is built by typer exactly as for an
app that registers every command up front, so every help text reads the same.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, TextIO

import typer
from typer.core import TyperGroup
from typer.main import get_group

from jib.cli._common import EXIT_FAILED, one_line
from jib.cli._startup import end_startup, startup

__all__ = ["app", "main"]

_SETTINGS: dict[str, Any] = {"rich_markup_mode": None}
"""What the app and the builder of each subcommand share (how typer renders help)."""


def _chat(app: typer.Typer) -> None:
    from jib.cli.chat import ChatUsage, chat_command

    app.command("chat", cls=ChatUsage)(chat_command)


def _run(app: typer.Typer) -> None:
    from jib.cli.run import run_command

    app.command("run")(run_command)


def _log(app: typer.Typer) -> None:
    from jib.cli.log import log_command

    app.command("log")(log_command)


def _show(app: typer.Typer) -> None:
    from jib.cli.log import show_command

    app.command("show")(show_command)


def _export(app: typer.Typer) -> None:
    from jib.cli.export import export_command

    app.command("export")(export_command)


def _id(app: typer.Typer) -> None:
    from jib.cli.ident import id_command

    app.command("id")(id_command)


def _runs(app: typer.Typer) -> None:
    from jib.cli.runs import runs_command

    app.command("runs")(runs_command)


def _batches(app: typer.Typer) -> None:
    from jib.cli.batches import batches_command

    app.command("batches")(batches_command)


def _compare(app: typer.Typer) -> None:
    from jib.cli.compare import compare_command

    app.command("compare")(compare_command)


def _report(app: typer.Typer) -> None:
    from jib.cli.report import report_command

    app.command("report")(report_command)


def _spec(app: typer.Typer) -> None:
    from jib.cli.spec import render_command
    from jib.cli.spec_import import import_command

    spec_app = typer.Typer(
        help="Work with HTTP specs (the `spec` of http! generators).",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    spec_app.command("render")(render_command)
    spec_app.command("import")(import_command)
    app.add_typer(spec_app, name="spec")


def _cache(app: typer.Typer) -> None:
    from jib.cli.cache import cache_app

    app.add_typer(cache_app, name="cache")


_SUBCOMMANDS: dict[str, Callable[[typer.Typer], None]] = {
    "chat": _chat,
    "run": _run,
    "log": _log,
    "show": _show,
    "export": _export,
    "id": _id,
    "runs": _runs,
    "batches": _batches,
    "compare": _compare,
    "report": _report,
    "spec": _spec,
    "cache": _cache,
}
"""Each subcommand, in the order `jib --help` lists them, and how to add it to a typer app."""


class _Subcommands(MutableMapping[str, Any]):
    """`jib`'s subcommands by name, each built (its module imported) when first asked for.

    Listing the names, or asking whether one exists, builds nothing: typer suggests a name
    for a mistyped one from them.
    """

    def __init__(self) -> None:
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            add = _SUBCOMMANDS[name]
            holder = typer.Typer(**_SETTINGS)
            add(holder)
            self._built[name] = get_group(holder).commands[name]
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        raise TypeError(f"jib's {name!r} subcommand cannot be removed")

    def __contains__(self, name: object) -> bool:
        return name in _SUBCOMMANDS or name in self._built

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(_SUBCOMMANDS), **self._built})

    def __len__(self) -> int:
        return len({**dict.fromkeys(_SUBCOMMANDS), **self._built})


class _LazyGroup(TyperGroup):
    """The `jib` group: its subcommands are `_Subcommands`."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Subcommands()

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        resolved = super().resolve_command(ctx, args)
        end_startup()  # the subcommand is built: what runs next is the command
        return resolved


app = typer.Typer(
    name="jib",
    help="Every LLM behind one identifier string: chat, run prompt files, and keep every chat.\n\n"
    "Try it offline: jib run 'echo!demo' --prompts examples/prompts.txt",
    cls=_LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    **_SETTINGS,
)


@app.callback()
def _group() -> None:
    # typer makes a group of an app with a callback (this one, which does nothing); the
    # subcommands come from `_LazyGroup`.
    pass


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A warning as one `warning: …` line on stderr: its text is data (a stored record's id, a
    server's words), so secrets are masked and control characters escaped, as in errors."""
    print(f"warning: {one_line(message)}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Run the `jib` command line (the console script's entry point)."""
    warnings.showwarning = _show_warning
    try:
        with startup(process_exits=argv is None):  # no argv: the command line's, in `jib`
            app(args=argv, prog_name="jib")
    except SystemExit:
        raise
    except Exception as exc:  # a bug: say so in one line, unless asked for the traceback
        if os.environ.get("JIB_DEBUG"):
            traceback.print_exc()
        else:
            print(
                f"error: unexpected {type(exc).__name__}: {one_line(exc)} "
                "(set JIB_DEBUG=1 to see the traceback)",
                file=sys.stderr,
            )
        sys.exit(EXIT_FAILED)
