"""Run every benchmark, jib against its peers, and write `benchmarks/results/REPORT.md`.

Runs `import_time.py`, `pipeline_overhead.py`, `local_models.py` (when present), `faults.py` and
`peers.py`,
one after another, each as a subprocess of jib's venv python from the project root, then reads the
JSON each wrote to `benchmarks/results/` and writes a Markdown report: one table per benchmark
with jib's figures, the peer's and their ratios, the machine, and the exact commands. The report
is printed at the end.

`transport.py` (jib's transports against raw aiohttp, httpx, the openai SDK, LiteLLM and rigging)
runs too; it also writes `docs/benchmarks.md` and its chart, and the report keeps its acceptance
checks. So does `main_job.py` (`jib run` over 20,000 prompts against a floor script; PostgreSQL
too when `$JIB_TEST_POSTGRES_URL` names a server), which writes `docs/benchmarks_main_job.md`,
and `response_cache.py` (a cached re-run of 10,000 prompts against the run that filled the
cache), which writes its section of `docs/benchmarks.md`.

    python benchmarks/run_all.py [--skip NAME ...] [--report-only] [--timeout 3600]

Not a test: pytest collects only `tests/`, and this file has no `test_` names.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
REPORT = RESULTS / "REPORT.md"
JIB_PYTHON = ROOT / ".venv" / "bin" / "python"
# No price-map download by litellm, no model hub traffic: every benchmark runs offline.
ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
BENCHMARKS = ["import_time", "pipeline_overhead", "local_models", "faults", "peers", "transport"]
BENCHMARKS += ["main_job", "response_cache"]


@dataclass
class Run:
    """What happened when one benchmark script ran."""

    name: str
    command: str
    status: str = "not run"
    seconds: float = 0.0
    result: dict[str, Any] | None = None
    fresh: bool = False
    output_tail: list[str] = field(default_factory=list)


def python() -> Path:
    """jib's venv python, or this interpreter when the venv lives elsewhere."""
    return JIB_PYTHON if JIB_PYTHON.exists() else Path(sys.executable)


def command_for(name: str) -> list[str]:
    """The command that runs benchmark `name`, relative to the project root."""
    interpreter = python()
    shown = interpreter.relative_to(ROOT) if interpreter.is_relative_to(ROOT) else interpreter
    return [str(shown), f"benchmarks/{name}.py"]


def shell_line(command: list[str]) -> str:
    """The command as one line to paste into a shell at the project root, environment included."""
    env = " ".join(f"{key}={value}" for key, value in ENV.items())
    return f"{env} {shlex.join(command)}"


def load_result(name: str, since: float | None) -> tuple[dict[str, Any] | None, bool]:
    """The JSON result of benchmark `name`, and whether it was written after `since`."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None, False
    fresh = since is not None and path.stat().st_mtime >= since
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded, fresh


def run_benchmark(name: str, timeout: float) -> Run:
    """Run one benchmark script, echoing its output, and collect its JSON result."""
    command = command_for(name)
    run = Run(name, shell_line(command))
    if not (HERE / f"{name}.py").exists():
        run.status = "missing"
        run.result, _ = load_result(name, None)
        return run
    print(f"\n=== {run.command}", flush=True)
    started = time.time()
    lines: list[str] = []
    with subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdout is not None
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            for line in process.stdout:
                print(line, end="", flush=True)
                lines.append(line.rstrip("\n"))
        finally:
            returncode = process.wait()
            timer.cancel()
    if time.time() - started >= timeout:
        lines.append(f"killed after {timeout:.0f} s")
    run.seconds = time.time() - started
    run.output_tail = lines[-25:]
    run.status = "ok" if returncode == 0 else f"failed (exit {returncode})"
    run.result, run.fresh = load_result(name, started)
    if run.status == "ok" and not run.fresh:
        run.status = "ok, but wrote no new result"
    return run


# --- report ----------------------------------------------------------------------------------


def fmt(value: Any, digits: int | None = 1) -> str:
    """A number to `digits` decimals (None: 4 significant digits); text as is; missing as —."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and digits is None:
        return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "none"
    return str(value)


def ratio(peer: float | None, jib: float | None) -> str:
    """`peer / jib` as `12.3×`, or a dash when either is missing."""
    if not peer or not jib:
        return "—"
    value = peer / jib
    return f"{value:,.2f}×" if value < 10 else f"{value:,.0f}×"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def machine(load_at_start: Sequence[float]) -> list[str]:
    """Where and when the benchmarks ran."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    start = ", ".join(f"{value:.2f}" for value in load_at_start)
    end = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    now = datetime.datetime.now(datetime.timezone.utc)
    return [
        f"- date: {now:%Y-%m-%d %H:%M} UTC",
        f"- cores: {os.cpu_count()} ({cpu})",
        f"- python: {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.platform()}",
        f"- jib: git {commit or 'unknown'} (working tree, uncommitted changes included)",
        f"- load average (1, 5, 15 min) at the start: {start}; at the end: {end}",
    ]


def versus(peer: dict[str, Any], jib: dict[str, Any]) -> str:
    """Peer against jib on best CPU per chat and on peak RSS."""
    cpu = ratio(peer["cpu_us_per_chat_best"], jib["cpu_us_per_chat_best"])
    return f"{cpu} CPU, {ratio(peer['peak_rss_mb'], jib['peak_rss_mb'])} RSS"


def pipeline_section(jib: dict[str, Any] | None, peers: dict[str, Any] | None) -> list[str]:
    """Client CPU per chat and peak RSS: jib's own benchmark and the side-by-side peer run."""
    lines = ["## Pipeline overhead (`run_batch` through a generator that answers at once)", ""]
    if jib is None and peers is None:
        return [*lines, "No result.", ""]
    pipe = (peers or {}).get("pipeline_overhead", {})
    same_n = pipe.get("jib")
    rows: list[list[str]] = []
    if jib:
        rows.append(
            [
                "jib (`pipeline_overhead.py`)",
                fmt(jib.get("chats")),
                fmt(jib.get("cpu_us_per_chat_best")),
                fmt(jib.get("cpu_us_per_chat_median")),
                fmt(jib.get("peak_rss_mb")),
                "",
            ]
        )
    for key, label in [
        ("jib", "jib (`peers.py`, same N as rigging)"),
        ("rigging_parallel", "rigging, default `mode=parallel`"),
        ("rigging_merged", "rigging, `mode=merged` (one batch call, like jib)"),
    ]:
        row = pipe.get(key)
        if row is None:
            continue
        rows.append(
            [
                label,
                fmt(row["chats"]),
                fmt(row["cpu_us_per_chat_best"]),
                fmt(row["cpu_us_per_chat_median"]),
                fmt(row["peak_rss_mb"]),
                "" if key == "jib" or same_n is None else versus(row, same_n),
            ]
        )
    header = ["", "chats", "CPU µs/chat, best", "median", "peak RSS MB", "rigging / jib (same N)"]
    lines += table(header, rows)
    lines.append("")
    lines.append(
        "CPU is `time.process_time()` around `run_batch` only; best and median of the runs each "
        "script made (best-of-N is fair here: other work on the machine can only add time). Peak "
        "RSS is the whole process's `ru_maxrss`, including the library's imports."
    )
    if pipe.get("reduced"):
        requested = pipe["requested_chats"]
        projected = pipe["probe"]["projected_cpu_s_for_full_run"]
        rows_x = []
        for key in ("rigging_parallel", "rigging_merged", "jib"):
            if key in pipe:
                seconds = pipe[key]["cpu_us_per_chat_best"] * requested / 1e6
                rows_x.append([key.replace("_", " "), f"{seconds:,.3g} s"])
        lines += [
            "",
            f"**Reduced N.** A probe run of {fmt(pipe['probe']['chats'])} chats projected "
            f"~{projected:,.0f} s of CPU for one rigging run of {requested:,} chats, over the "
            f"budget, so the side-by-side rows were measured at {fmt(pipe['chats'])} chats. "
            f"**Extrapolated** (linear, from the best per-chat figure; RSS not extrapolated) CPU "
            f"for {requested:,} chats:",
            "",
            *table(["", f"CPU for {requested:,} chats (extrapolated)"], rows_x),
        ]
    roles = pipe.get("rigging_parallel", {}).get("roles")
    if roles and roles.count("system") > 1:
        lines += [
            "",
            f"Note: in rigging's default `parallel` mode each chat came back with the messages "
            f"{roles}: the pipeline's system message is sent twice (`mode=merged` sends "
            f"{pipe.get('rigging_merged', {}).get('roles')}).",
        ]
    return [*lines, ""]


def import_section(jib: dict[str, Any] | None, peers: dict[str, Any] | None) -> list[str]:
    """Fresh-process import time, each library against `import pydantic` in its own venv."""
    lines = ["## Import time (fresh process, median)", ""]
    peer = (peers or {}).get("import_time")
    if jib is None and peer is None:
        return [*lines, "No result.", ""]
    rows = []
    if jib:
        rows.append(
            [
                "`import jib` (`import_time.py`)",
                fmt(jib.get("import_jib_ms")),
                "—",
                fmt(jib.get("import_pydantic_ms")),
                fmt(jib.get("ratio"), 2),
                fmt(jib.get("heavy_modules_loaded")),
                fmt(jib.get("runs")),
            ]
        )
        if jib.get("jib_core_ms") is not None:
            rows.append(
                [
                    "jib's core, eager (`from jib import Generator, get_generator, ChatPipeline`;"
                    " against `from pydantic import BaseModel`)",
                    fmt(jib.get("jib_core_ms")),
                    "—",
                    fmt(jib.get("pydantic_basemodel_ms")),
                    fmt(jib.get("core_ratio"), 2),
                    "",
                    fmt(jib.get("runs")),
                ]
            )
    if peer:
        for name, pydantic, label in [
            ("jib", "pydantic_jib_venv", "jib's core (`peers.py`, interleaved)"),
            ("rigging", "pydantic_peers_venv", "`import rigging` (`peers.py`, interleaved)"),
        ]:
            rows.append(
                [
                    label,
                    fmt(peer[name]["median_ms"]),
                    fmt(peer[name]["best_ms"]),
                    fmt(peer[pydantic]["median_ms"]),
                    fmt(peer[name]["ratio_to_pydantic"], 2),
                    fmt(peer[name]["heavy_modules_loaded"]),
                    fmt(peer["runs"]),
                ]
            )
    header = ["", "ms", "best ms", "`import pydantic` ms, same venv", "ratio", "heavy", "runs"]
    lines += table(header, rows)
    lines += [
        "",
        "`import jib` loads its public names on first use (PEP 562, as `import pydantic` does); "
        "rigging imports everything eagerly, so against rigging read jib's core row, which pays "
        "for the pydantic models and the whole core.",
        "",
        "Each figure includes interpreter start-up (a fresh `python -c 'import …'`). "
        "`import_time.py` times jib alone; `peers.py` takes turns between `import jib`, "
        "`import pydantic` (jib's venv), `import rigging` and `import pydantic` (the peers venv) "
        "in every round, so the two libraries meet the same load.",
    ]
    if peer:
        wall = ratio(peer["rigging"]["median_ms"], peer["jib"]["median_ms"])
        relative = ratio(peer["rigging"]["ratio_to_pydantic"], peer["jib"]["ratio_to_pydantic"])
        lines += [
            "",
            f"**rigging / jib (interleaved medians): {wall} in wall time, {relative} relative to "
            "pydantic.**",
        ]
    return [*lines, ""]


def identifier_section(peers: dict[str, Any] | None) -> list[str]:
    """`get_generator(identifier).to_identifier()` per call, jib and rigging."""
    lines = ["## Identifier round trip (`get_generator(…)` + `.to_identifier()`)", ""]
    found = (peers or {}).get("identifier_round_trip")
    if not found:
        return [*lines, "No result.", ""]
    rows = []
    for name in ("jib", "rigging"):
        row = found[name]
        rows.append(
            [
                name,
                fmt(row["us_per_call_best"]),
                fmt(row["us_per_call_median"]),
                fmt(row["cpu_us_per_call_best"]),
                f"`{row['written_back']}`",
                fmt(row["round_trips_exactly"]),
            ]
        )
    header = ["", "µs/call, best", "median", "CPU µs, best", "written back", "same string"]
    lines += table(header, rows)
    wall = ratio(found["rigging"]["us_per_call_best"], found["jib"]["us_per_call_best"])
    cpu = ratio(found["rigging"]["cpu_us_per_call_best"], found["jib"]["cpu_us_per_call_best"])
    lines += [
        "",
        f"Identifier `{found['jib']['identifier']}`; {fmt(found['jib']['calls'])} calls per timed "
        f"loop, best of {found['jib']['runs']} loops after a warm-up, each library in its own "
        f"process. **rigging / jib: {wall} in wall time, {cpu} in CPU time** (CPU time is the "
        "fairer figure on a shared machine: wall time also counts waiting for a core).",
    ]
    return [*lines, ""]


def generic_section(name: str, result: dict[str, Any] | None) -> list[str]:
    """Any result file: its lists of records as tables, its other values as a list."""
    lines = [f"## {name.replace('_', ' ').capitalize()}", ""]
    if result is None:
        return [*lines, "No result.", ""]
    for key, value in result.items():
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            columns = list(dict.fromkeys(column for item in value for column in item))
            rows = [[fmt(item.get(column), None) for column in columns] for item in value]
            lines += [f"{key}:", "", *table(columns, rows), ""]
    lines += [
        f"- {key}: {fmt(value, None)}"
        for key, value in result.items()
        if not (isinstance(value, list) and value and isinstance(value[0], dict))
    ]
    return [*lines, ""]


def faults_section(result: dict[str, Any] | None) -> list[str]:
    """Remote providers against a failing server: what came back, how fast, how many requests."""
    lines = ["## Under faults (`faults.py`)", ""]
    if result is None:
        return [*lines, "No result.", ""]
    rows = [
        [
            row["provider"],
            row["mode"],
            fmt(row["correct"]),
            fmt(row["failed"]),
            fmt(row["lost"]),
            fmt(row["wrong"]),
            fmt(row["seconds"], 2),
            str(row["seconds_range"]),
            fmt(row["requests"]),
            fmt(row["attempts_recorded"]),
            ""
            if row["target"] is None
            else f"{row['target']}: {'met' if row['meets_target'] else '**not met**'}",
        ]
        for row in result["summary"]
    ]
    header = ["provider", "mode", "correct", "failed", "lost", "wrong", "seconds", "range"]
    lines += table([*header, "requests", "attempts recorded", "target"], rows)
    lines += [
        "",
        f"{fmt(result['chats'])} distinct chats against a server on 127.0.0.1 that answers "
        f"{result['schedule']}; median of {result['repeat']} run(s) each, taking turns. "
        "`default` is jib with no wrap and default settings; `backoff` wraps the pipeline in "
        f"`{result['backoff_wrap']}` as the README shows. Correct means the chat's own answer "
        "(the server echoes a hash of each prompt); lost means no record came back; requests "
        "are counted by the server, attempts by the records (— when records do not carry them).",
        "",
    ]
    return lines


def transport_section(result: dict[str, Any] | None) -> list[str]:
    """The acceptance checks of issues 11 and 18 from `transport.py`; its page has the tables."""
    lines = ["## Transports against their peers (`transport.py`)", ""]
    if result is None:
        return [*lines, "No result.", ""]
    import transport_report  # a sibling script: on the path when this one runs

    rows = transport_report.acceptance_rows(result)
    return [
        *lines,
        *table(["check", "measured", "bound", "result"], rows),
        "",
        "Client CPU per request, requests/s, peak RSS, first streamed delta and import time of "
        "every client: [docs/benchmarks.md](../../docs/benchmarks.md).",
        "",
    ]


def main_job_section(result: dict[str, Any] | None) -> list[str]:
    """The acceptance checks of issue 19 from `main_job.py`; its page has the figures."""
    lines = ["## The main job against its floor (`main_job.py`)", ""]
    if result is None:
        return [*lines, "No result.", ""]
    import main_job_report  # a sibling script: on the path when this one runs

    rows = [
        [c["check"], c["shown"], c["bound"], c["result"]]
        for c in main_job_report.acceptance(result)
    ]
    return [
        *lines,
        *table(["check", "measured", "bound", "result"], rows),
        "",
        "Wall time, CPU time and peak RSS of `jib run` and the floor script, SQLite and "
        "PostgreSQL: [docs/benchmarks_main_job.md](../../docs/benchmarks_main_job.md).",
        "",
    ]


def response_cache_section(result: dict[str, Any] | None) -> list[str]:
    """The acceptance checks of issue 20 from `response_cache.py`; docs/benchmarks.md has the
    figures."""
    lines = ["## The response cache (`response_cache.py`)", ""]
    if result is None:
        return [*lines, "No result.", ""]
    rows = [
        [c["check"], c["measured"], c["bound"], "pass" if c["ok"] else "**FAIL**"]
        for c in result["acceptance"]
    ]
    return [
        *lines,
        *table(["check", "measured", "bound", "result"], rows),
        "",
        "Wall and CPU time of each run: [docs/benchmarks.md](../../docs/benchmarks.md).",
        "",
    ]


def report(runs: dict[str, Run], load_at_start: Sequence[float]) -> str:
    """The whole Markdown report."""
    result = {name: run.result for name, run in runs.items()}
    lines = [
        "# jib benchmarks",
        "",
        "Written by `benchmarks/run_all.py`. jib against the rigging library (the design jib "
        "follows) where a peer figure exists. Timings come from a 2-core machine that other work "
        "shares, so they are noisy; where best-of-N is reported, it says so.",
        "",
        "## Machine",
        "",
        *machine(load_at_start),
        "",
        *pipeline_section(result.get("pipeline_overhead"), result.get("peers")),
        *import_section(result.get("import_time"), result.get("peers")),
        *identifier_section(result.get("peers")),
    ]
    peers = result.get("peers")
    if peers:
        lines += [
            f"Peer: rigging {peers['rigging_version']} in `benchmarks/.venv-peers`; every "
            f"measurement in a fresh process"
            + (", with no network at all (`unshare -n`)." if peers["network_isolated"] else "."),
            "",
        ]
    lines += transport_section(result.get("transport"))
    lines += main_job_section(result.get("main_job"))
    lines += response_cache_section(result.get("response_cache"))
    lines += generic_section("local_models", result.get("local_models"))[:-1]
    if result.get("local_models"):
        lines += [
            "",
            "The peer here is plain transformers: `model.generate` on the same model and prompts "
            "(`vs_raw` is each method's time over raw transformers' time).",
            "",
        ]
    lines += faults_section(result.get("faults"))
    lines += ["## Commands", "", "From the project root, in this order:", ""]
    rows = []
    for run in runs.values():
        when = f"{run.seconds:,.0f} s" if run.seconds else "—"
        stale = "" if run.fresh or run.result is None else " (result file from an earlier run)"
        rows.append([f"`{run.command}`", run.status + stale, when])
    lines += table(["command", "status", "time"], rows)
    lines += ["", f"All of it: `{shlex.join(['.venv/bin/python', 'benchmarks/run_all.py'])}`", ""]
    for run in runs.values():
        if run.status.startswith("failed") and run.output_tail:
            lines += [f"### Output of failed `{run.name}`", "", "```", *run.output_tail, "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    """Run the benchmarks, write the report and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--skip", nargs="*", default=[], choices=BENCHMARKS, metavar="NAME")
    parser.add_argument(
        "--report-only", action="store_true", help="write the report from the existing results"
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per benchmark")
    args = parser.parse_args(argv)

    load_at_start = os.getloadavg()
    runs: dict[str, Run] = {}
    for name in BENCHMARKS:
        if args.report_only or name in args.skip:
            run = Run(name, shell_line(command_for(name)), status="skipped")
            if not (HERE / f"{name}.py").exists():
                run.status = "missing"
            run.result, _ = load_result(name, None)
        else:
            run = run_benchmark(name, args.timeout)
        runs[name] = run
    text = report(runs, load_at_start)
    RESULTS.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text)
    print(f"\n{text}\nwrote {REPORT.relative_to(ROOT)}")
    return text


if __name__ == "__main__":
    main()
