"""The `jib` application: subcommands wired to typer, and `main()`."""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from typing import TextIO

import typer

from jib.cli._common import EXIT_FAILED, one_line
from jib.cli.batches import batches_command
from jib.cli.cache import cache_app
from jib.cli.chat import ChatUsage, chat_command
from jib.cli.compare import compare_command
from jib.cli.export import export_command
from jib.cli.ident import id_command
from jib.cli.log import log_command, show_command
from jib.cli.report import report_command
from jib.cli.run import run_command
from jib.cli.runs import runs_command
from jib.cli.spec import render_command
from jib.cli.spec_import import import_command

__all__ = ["app", "main"]

app = typer.Typer(
    name="jib",
    help="Every LLM behind one identifier string: chat, run prompt files, and keep every chat.\n\n"
    "Try it offline: jib run 'echo!demo' --prompts examples/prompts.txt",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("chat", cls=ChatUsage)(chat_command)
app.command("run")(run_command)
app.command("log")(log_command)
app.command("show")(show_command)
app.command("export")(export_command)
app.command("id")(id_command)
app.command("runs")(runs_command)
app.command("batches")(batches_command)
app.command("compare")(compare_command)
app.command("report")(report_command)

spec_app = typer.Typer(
    help="Work with HTTP specs (the `spec` of http! generators).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
spec_app.command("render")(render_command)
spec_app.command("import")(import_command)
app.add_typer(spec_app, name="spec")
app.add_typer(cache_app, name="cache")


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
