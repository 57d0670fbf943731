"""The columns of `jib run`'s live progress bars (`jib.cli._progress.RichReporter`).

Apart, so a run that prints plain progress lines (to a log or a pipe) does not import rich's
progress machinery.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["progress_bars"]


class _RateColumn(ProgressColumn):
    """Chats per second."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        if speed is None:
            return Text("  – chats/s", style="progress.data.speed")
        return Text(f"{speed:5.1f} chats/s", style="progress.data.speed")


class _FailedColumn(ProgressColumn):
    """How many failed so far."""

    def render(self, task: Task) -> Text:
        failed = int(task.fields.get("failed", 0))
        return Text(f"{failed} failed", style="red" if failed else "dim")


def progress_bars(console: Console) -> Progress:
    """A bar per task, with its counts, failures, rate, elapsed time and ETA."""
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        _FailedColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        speed_estimate_period=10,
    )
