"""`jib report`: a run as one self-contained HTML page (charts and answers side by side)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jib.cli._common import StoreOption, err_console, handle_errors
from jib.cli.compare import load_comparison

__all__ = ["report_command"]


def report_command(
    run: Annotated[
        str, typer.Option("--run", "-r", metavar="NAME", help="The run to report (see jib runs).")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="The HTML file to write. Default: NAME.html in the current folder.",
            show_default=False,
        ),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Write a run as one HTML page that opens offline: charts of each generator's success rate,
    latency and cost, a summary table, and every prompt's answers side by side.

    The page holds everything itself (inline CSS and SVG, no script, nothing fetched); model
    answers are shown as escaped text.
    """
    from jib.cli._report_html import render_report

    with handle_errors():
        comparison = load_comparison(store, run)
        target = output if output is not None else Path(f"{run}.html")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render_report(comparison), encoding="utf-8")
        err_console.print(
            f"wrote {target} ({comparison.describe()})",
            markup=False,
            highlight=False,
        )
