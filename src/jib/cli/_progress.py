"""Progress of `jib run`: a live rich bar per generator, or plain text lines for logs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from rich.console import Console

from jib.cli._terminal import printable

if TYPE_CHECKING:
    from rich.progress import TaskID

__all__ = ["GeneratorStats", "RichReporter", "TextReporter"]


@dataclass(slots=True)
class GeneratorStats:
    """What one generator of a run has done so far.

    `latencies` holds the latency of each successful chat (ms); `cost` sums the known costs and
    `priced` counts the chats that had one. `retrying` counts stored failures this run re-runs,
    `kept_failed` the stored failures it leaves alone (not retryable), `stopped` says why the
    generator was stopped early, if it was. `called` counts the answers that call tools, `valid`
    those that fit the run's JSON Schema (`--tools`, `--schema`).
    """

    label: str
    total: int
    skipped: int = 0
    retrying: int = 0
    kept_failed: int = 0
    ok: int = 0
    failed: int = 0
    called: int = 0
    valid: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    latencies: list[float] = field(default_factory=list)
    cost: float = 0.0
    priced: int = 0
    failures_in_a_row: int = 0
    started: float | None = None
    finished: float | None = None
    first_error: str | None = None
    stopped: str | None = None
    cache_hits: int = 0
    """Chats answered from the response cache (`--cache`); `cache_misses` were sent."""
    cache_misses: int = 0
    cache_saved: float = 0.0
    """What the cache hits would have cost, in US dollars (when the price is known)."""

    @property
    def done(self) -> int:
        """Records finished this time, ok or failed."""
        return self.ok + self.failed

    @property
    def seconds(self) -> float:
        """Wall time from this generator's first chunk to its last."""
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float | None:
        """Records per second, once there is something to measure."""
        seconds = self.seconds
        return self.done / seconds if seconds > 0 and self.done else None


class Reporter(Protocol):
    """Shows the progress of a run."""

    def start(self, stats: list[GeneratorStats]) -> None:
        """The run begins."""

    def update(self, index: int) -> None:
        """Generator `index` finished some records."""

    def note(self, text: str) -> None:
        """Say something that happened during the run (a generator stopped, say)."""

    def stop(self) -> None:
        """The run ended (finished or interrupted)."""


class RichReporter:
    """A live progress bar per generator, with rate, elapsed time and ETA."""

    def __init__(self, console: Console) -> None:
        from jib.cli._progress_bars import progress_bars  # rich's progress, when bars are shown

        self._progress = progress_bars(console)
        self._tasks: list[TaskID] = []
        self._stats: list[GeneratorStats] = []

    def start(self, stats: list[GeneratorStats]) -> None:
        """Show a bar per generator."""
        self._stats = stats
        self._tasks = [
            self._progress.add_task(printable(s.label), total=s.total, failed=0, start=False)
            for s in stats
        ]
        self._progress.start()

    def update(self, index: int) -> None:
        """Move generator `index`'s bar."""
        stats = self._stats[index]
        task = self._tasks[index]
        self._progress.start_task(task)
        self._progress.update(task, completed=stats.done, failed=stats.failed)

    def note(self, text: str) -> None:
        """Print `text` above the bars (control characters shown as escapes)."""
        self._progress.console.print(printable(text), markup=False, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        """Leave the final bars on screen."""
        self._progress.stop()


class TextReporter:
    """Plain progress lines (at most one a second per generator), for logs and pipes."""

    def __init__(self, console: Console, *, interval: float = 1.0) -> None:
        self._console = console
        self._interval = interval
        self._last: dict[int, float] = {}
        self._stats: list[GeneratorStats] = []

    def start(self, stats: list[GeneratorStats]) -> None:
        """Say what will run."""
        self._stats = stats
        for s in stats:
            notes = []
            if s.skipped:
                notes.append(f"{s.skipped} already stored, skipped")
            if s.retrying:
                notes.append(f"{s.retrying} failed before, run again")
            shown = f" ({'; '.join(notes)})" if notes else ""
            self._print(f"{printable(s.label)}: {s.total} to run{shown}")

    def update(self, index: int) -> None:
        """A line for generator `index`, if the last one is old enough or it is done."""
        stats = self._stats[index]
        now = time.monotonic()
        finished = stats.done >= stats.total
        if not finished and now - self._last.get(index, 0.0) < self._interval:
            return
        self._last[index] = now
        rate = stats.rate
        rate_text = f", {rate:.1f} chats/s" if rate else ""
        eta = ""
        if rate and not finished:
            eta = f", eta {int((stats.total - stats.done) / rate)}s"
        self._print(
            f"{printable(stats.label)}: {stats.done}/{stats.total} done, {stats.failed} failed"
            f"{rate_text}{eta}"
        )

    def note(self, text: str) -> None:
        """Print `text` as a line of its own (control characters shown as escapes)."""
        self._print(printable(text))

    def stop(self) -> None:
        """Nothing to clean up."""

    def _print(self, line: str) -> None:
        self._console.print(line, markup=False, highlight=False, soft_wrap=True)
