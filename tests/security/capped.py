"""Run one security case in a child process whose memory is capped, and report what it did.

`run_capped(case, *args)` starts `python -m tests.security.capped MODULE FUNCTION ARGS`; the
child imports jib and warms it up (templates, JSONPath, regexes, an event loop with its worker
thread), caps its address space (`RLIMIT_AS`) at what it then holds plus `megabytes`, runs
`case(*args)` (awaited when it is async), and prints what happened: the exception's type and
message, and the CPU time the case used (all threads, from `getrusage`). CPU time, not wall
time: a loaded machine slows the wall clock of a case, not the work it does.

glibc gives each thread its own 64 MB malloc arena and Python 8 MB thread stacks, all counted
in the address space; the child runs with one arena (`MALLOC_ARENA_MAX=1`) and 4 MB stacks, so
the cap measures what the case allocates. A case that needs more than the cap fails with
`MemoryError` (or jib's "out of memory"), which the tests count as a failure of the bound.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import resource
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CAP_MEGABYTES = 200
"""The memory a case may use on top of what a warmed-up jib holds."""
CPU_SECONDS = 2.0
"""The CPU time a case may use: the default render budget (1 s) with margin."""
_MARKER = "CAPPED-RESULT "


@dataclass
class Capped:
    """What a case did in its capped child process."""

    error_type: str | None
    """The qualified name of what the case raised (`jib.errors.BudgetExceededError`), or None."""
    message: str
    """The exception's message, or the case's return value as text."""
    value: Any
    """What the case returned (JSON), when it returned."""
    cpu_seconds: float
    """User plus system CPU time of the case, every thread."""
    output: str
    """Everything the child printed (stdout and stderr)."""

    @property
    def budget_exceeded(self) -> bool:
        """Whether the case ended with jib's `BudgetExceededError`, not for lack of memory."""
        return (
            self.error_type == "jib.errors.BudgetExceededError"
            and "out of memory" not in self.message
        )


def run_capped(case: Any, *args: Any, megabytes: int = CAP_MEGABYTES) -> Capped:
    """Run `case(*args)` (a module-level function; JSON-able arguments) in a capped child."""
    env = {
        **os.environ,
        "MALLOC_ARENA_MAX": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.security.capped",
            case.__module__,
            case.__name__,
            json.dumps(args),
            str(megabytes),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    output = completed.stdout + completed.stderr
    lines = [line for line in completed.stdout.splitlines() if line.startswith(_MARKER)]
    if not lines:
        raise AssertionError(f"the capped child reported nothing:\n{output}")
    report = json.loads(lines[-1].removeprefix(_MARKER))
    return Capped(report["error_type"], report["message"], report["value"], report["cpu"], output)


def _warm_up() -> None:
    """Import and exercise what the cases use, so the cap counts only the case's own work."""
    import jib
    from jib.generator.http import HTTPGenerator, HTTPSpec, RequestTransformContext

    spec = HTTPSpec.model_validate(
        {
            "request": {
                "url": "http://127.0.0.1:9/",
                "transforms": [{"type": "jinja", "pattern": "{{ [content]|tojson }}"}],
            },
            "response": {
                "transforms": [
                    {"type": "jsonpath", "pattern": "$..a[?(@ =~ 'b')]"},
                    {"type": "regex", "pattern": "(b)"},
                    {"type": "jinja", "pattern": "{{ result }}"},
                ]
            },
        }
    )
    context = RequestTransformContext(content="hi")
    spec.build_request(context)
    spec.parse_response_body('{"a": ["b"]}', context)
    jib.get_generator("http!m,spec=" + spec.to_base64())

    async def loop_with_a_worker() -> None:
        await asyncio.to_thread(lambda: None)
        generator = HTTPGenerator.for_json_endpoint("http://127.0.0.1:9/", {"x": 1})
        await generator.aclose()

    asyncio.run(loop_with_a_worker())


def _address_space() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _main(module_name: str, function: str, arguments: str, megabytes: str) -> None:
    threading.stack_size(4 * 1024 * 1024)
    case = getattr(importlib.import_module(module_name), function)
    args = json.loads(arguments)
    _warm_up()
    cap = _address_space() + int(megabytes) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    error: BaseException | None = None
    value: Any = None
    start = _cpu()
    try:
        value = case(*args)
        if inspect.iscoroutine(value):
            value = asyncio.run(value)
    except BaseException as exc:
        error = exc
    cpu = _cpu() - start
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    if error is not None:
        traceback.print_exception(error, file=sys.stderr)
        cls = type(error)
        error_type = (
            cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"
        )
        report = {"error_type": error_type, "message": str(error), "value": None, "cpu": cpu}
    else:
        report = {"error_type": None, "message": str(value), "value": value, "cpu": cpu}
    print(_MARKER + json.dumps(report), flush=True)


if __name__ == "__main__":
    _main(*sys.argv[1:5])
