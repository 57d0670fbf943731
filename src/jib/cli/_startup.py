"""`jib`'s start-up without the cyclic garbage collector.

Starting, `jib` imports a few hundred modules and builds its command: hundreds of thousands of
objects that live as long as the process, and next to no garbage. The collector, run every few
hundred allocations, would walk them again and again for nothing. So `main()` pauses it until
the subcommand to run is built, then freezes what start-up made (`gc.freeze`: kept where the
collector never looks) and lets it run again: the command runs with the collector as usual, and
its collections skip the start-up's objects. Run from the command line, they stay frozen to the
end, so the interpreter's last collection at exit skips them too (about as much CPU again as
start-up's collections); a caller in the same process (a test calling `main(argv)`) gets them
back when the command returns. Importing `jib.cli` pauses the collector for the import only.

The command then runs with a youngest generation of `YOUNGEST_THRESHOLD` objects rather than
Python's 700: a run keeps hundreds of chats in flight and waiting to be stored, so at 700 the
collector ran some 1,400 times in a 20,000-chat run, walking objects that are about to be freed
by reference counting anyway (0.29 s of CPU, 7 % of the run); at 10,000 it runs a few times. The
old threshold is put back when the command returns to a caller in the same process.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["end_startup", "paused_collector", "startup"]

_pending = False
"""Whether `startup` paused the collector and start-up has not ended yet."""

YOUNGEST_THRESHOLD = 10_000
"""Objects allocated (net) between two collections of the youngest generation, while a
command runs (see the module docstring)."""


@contextmanager
def paused_collector() -> Iterator[None]:
    """No cyclic garbage collection inside (the collector is left as it was found after)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


@contextmanager
def startup(*, process_exits: bool) -> Iterator[None]:
    """Run a command (all of it, inside) with the collector paused until `end_startup`;
    `process_exits`: the process ends with the command (what was frozen stays frozen)."""
    global _pending
    if not gc.isenabled():  # paused by someone else: theirs to resume
        yield
        return
    gc.disable()
    _pending = True
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        if _pending:  # the command never started (help, a usage error)
            _pending = False
            gc.enable()
        elif not process_exits:
            gc.unfreeze()
            gc.set_threshold(*thresholds)


def end_startup() -> None:
    """Start-up is over: freeze what it made and collect again (if `startup` paused it)."""
    global _pending
    if _pending:
        _pending = False
        gc.freeze()
        youngest, *older = gc.get_threshold()
        gc.set_threshold(max(youngest, YOUNGEST_THRESHOLD), *older)
        gc.enable()
