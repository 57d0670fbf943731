"""jib against a failing server: do all answers come back, how fast, at what cost in requests?

The scenario of issue 10: 300 distinct chats against a server (tests/support/fault_injection.py,
started here on 127.0.0.1, in a thread of this process) that answers 503 to every 5th request,
429 with `Retry-After: 1` to every 13th and drops the connection (a TCP reset) of every 29th,
counting by arrival (a request that is two of these gets the first listed). For each remote
provider — the LiteLLM `openai/` path, `openai!` and `http!`
(`HTTPGenerator.for_json_endpoint`) — it runs the batch two ways:

- `default`: jib as a user gets it, no wrap, default settings;
- `backoff`: the same, wrapped as the README shows,
  `pipeline.wrap(backoff.on_exception(backoff.expo, RETRYABLE_ERRORS, max_tries=5))`.

Each run gets a fresh generator, warmed up by one chat (LiteLLM sets up its client on the first
request of an event loop) before the server is reset and the clock starts. It reports per run:
correct (the chat's own answer: the server echoes a hash of each prompt), wrong (an answer that
is not its own), failed (reported as failed), lost (no record at all), seconds (wall), CPU
seconds (this process, server thread included), the requests the server received and the
attempts the records account for (when records carry `attempts`). It prints a table and writes
`benchmarks/results/faults.json`.

    python benchmarks/faults.py [--chats 300] [--repeat 1]

Targets (issues 10 and 11): 300 of 300 correct by default, with no wrap, in at most 3 s on
`http!` and `openai!` (the `Retry-After` of 1 s is the floor) and at most 5 s on the LiteLLM path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "faults.json"
sys.path.insert(0, str(ROOT))  # the server lives with the tests that use it too

import backoff  # noqa: E402
from tests.support.fault_injection import (  # noqa: E402
    Every,
    Fault,
    RunningFaultInjection,
    answer_for,
    run_fault_injection,
)

import jib  # noqa: E402
from jib.errors import RETRYABLE_ERRORS  # noqa: E402
from jib.generator.http import HTTPGenerator  # noqa: E402
from jib.generator.openai import OpenAIGenerator  # noqa: E402

SCHEDULE = Every([(5, Fault.error(503)), (13, Fault.rate_limit(retry_after=1)), (29, Fault.drop())])
SCHEDULE_TEXT = (
    "503 every 5th request, 429 + Retry-After: 1 every 13th, connection dropped every 29th"
)
TARGET_SECONDS = {"litellm": 5.0, "openai": 3.0, "http": 3.0}
BACKOFF_TRIES = 5


def litellm_generator(server: RunningFaultInjection) -> jib.Generator:
    """The LiteLLM `openai/` path, default settings."""
    return jib.get_generator(
        f"openai/fault-model,api_base={server.openai_base},api_key=sk-benchmark"
    )


def openai_generator(server: RunningFaultInjection) -> jib.Generator:
    """jib's native `openai!` generator, default settings."""
    return jib.get_generator(
        f"openai!fault-model,api_base={server.openai_base},api_key=sk-benchmark"
    )


def http_generator(server: RunningFaultInjection) -> jib.Generator:
    """`http!` on the plain JSON endpoint, default settings."""
    return HTTPGenerator.for_json_endpoint(
        server.plain_url, request_body={"prompt": "$content"}, response={"content_path": "$.answer"}
    )


PROVIDERS: dict[str, Callable[[RunningFaultInjection], jib.Generator]] = {
    "litellm": litellm_generator,
    "openai": openai_generator,
    "http": http_generator,
}


async def one_run(
    server: RunningFaultInjection, provider: str, mode: str, chats: int
) -> dict[str, Any]:
    """Run the batch once through a fresh generator and count what came back."""
    generator = PROVIDERS[provider](server)
    await generator.chat("warm up").run()
    server.state.reset(SCHEDULE)
    pipeline = generator.chat()
    if mode == "backoff":
        pipeline = pipeline.wrap(
            backoff.on_exception(backoff.expo, RETRYABLE_ERRORS, max_tries=BACKOFF_TRIES)
        )
    prompts = [f"benchmark question {i}" for i in range(chats)]
    records: list[Any] = []
    crashed = None
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        records = await pipeline.run_batch(prompts, on_failed="include")
    except Exception as exc:  # counted as lost: the run itself is what is measured
        crashed = f"{type(exc).__name__}: {exc}"[:300]
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    if isinstance(generator, (HTTPGenerator, OpenAIGenerator)):
        await generator.aclose()

    answered = [r for r in records if not r.failed]
    correct = sum(r.content == answer_for(p) for r, p in zip(records, prompts, strict=False))
    attempts = [getattr(r, "attempts", None) for r in records]
    return {
        "provider": provider,
        "mode": mode,
        "chats": chats,
        "correct": correct,
        "wrong": len(answered) - correct,
        "failed": len(records) - len(answered),
        "lost": chats - len(records),
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "requests": server.state.total_requests,
        "attempts_recorded": None if None in attempts or not records else sum(attempts),
        "faults_injected": dict(server.state.faults()),
        "errors": dict(Counter(type(r.error).__name__ for r in records if r.failed)),
        "crashed": crashed,
    }


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per provider and mode: the median run's figures (by seconds), and the range."""
    rows = []
    for provider in PROVIDERS:
        for mode in ("default", "backoff"):
            group = sorted(
                (r for r in runs if r["provider"] == provider and r["mode"] == mode),
                key=lambda r: r["seconds"],
            )
            if not group:
                continue
            median = group[(len(group) - 1) // 2]
            target = TARGET_SECONDS[provider] if mode == "default" else None
            rows.append(
                {
                    "provider": provider,
                    "mode": mode,
                    "runs": len(group),
                    "correct": median["correct"],
                    "failed": median["failed"],
                    "lost": median["lost"],
                    "wrong": median["wrong"],
                    "seconds": median["seconds"],
                    "seconds_range": f"{group[0]['seconds']}–{group[-1]['seconds']}",
                    "requests": median["requests"],
                    "attempts_recorded": median["attempts_recorded"],
                    "target": None if target is None else f"all correct, ≤ {target:g} s",
                    "meets_target": None
                    if target is None
                    else median["correct"] == median["chats"] and median["seconds"] <= target,
                }
            )
    return rows


def print_table(rows: list[dict[str, Any]], chats: int) -> None:
    """The summary, one line per provider and mode."""
    header = f"{'provider':9} {'mode':8} {'correct':>8} {'failed':>7} {'lost':>5} {'wrong':>6}"
    header += f" {'seconds':>8} {'requests':>9} {'attempts':>9}  target"
    print(f"{chats} chats; {SCHEDULE_TEXT}\n{header}")
    for row in rows:
        attempts = "—" if row["attempts_recorded"] is None else str(row["attempts_recorded"])
        target = "" if row["target"] is None else row["target"]
        if row["meets_target"] is not None:
            target += ": met" if row["meets_target"] else ": NOT met"
        print(
            f"{row['provider']:9} {row['mode']:8} {row['correct']:>8} {row['failed']:>7} "
            f"{row['lost']:>5} {row['wrong']:>6} {row['seconds']:>8.2f} {row['requests']:>9} "
            f"{attempts:>9}  {target}"
        )


async def run_all(chats: int, repeat: int) -> list[dict[str, Any]]:
    """Every provider and mode, `repeat` times, taking turns so they meet the same load."""
    from jib.generator.litellm._runtime import import_litellm

    # jib's import keeps LiteLLM from fetching its price map; a bare `import litellm` would not.
    litellm = import_litellm()
    litellm.suppress_debug_info = True  # its "Give Feedback" banner after every failure
    runs = []
    with run_fault_injection() as server:
        for index in range(repeat):
            for provider in PROVIDERS:
                for mode in ("default", "backoff"):
                    run = await one_run(server, provider, mode, chats)
                    run["run"] = index + 1
                    print(
                        f"run {index + 1} {provider:8} {mode:8} correct {run['correct']}, "
                        f"failed {run['failed']}, lost {run['lost']}, {run['seconds']:.2f} s, "
                        f"{run['requests']} requests {run['errors'] or ''}",
                        flush=True,
                    )
                    runs.append(run)
    return runs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chats", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)

    runs = asyncio.run(run_all(args.chats, args.repeat))
    rows = summarize(runs)
    print()
    print_table(rows, args.chats)
    result = {
        "chats": args.chats,
        "schedule": SCHEDULE_TEXT,
        "backoff_wrap": f"backoff.on_exception(backoff.expo, RETRYABLE_ERRORS, "
        f"max_tries={BACKOFF_TRIES})",
        "repeat": args.repeat,
        "summary": rows,
        "runs": runs,
        "median_seconds_default": {
            provider: statistics.median(
                r["seconds"] for r in runs if r["provider"] == provider and r["mode"] == "default"
            )
            for provider in PROVIDERS
        },
        "python": platform.python_version(),
        "jib": jib.__version__,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    return result


if __name__ == "__main__":
    main()
