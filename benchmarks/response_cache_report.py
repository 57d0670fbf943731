"""The response cache's section of `docs/benchmarks.md`, from the JSON
`benchmarks/response_cache.py` writes (`benchmarks/results/response_cache.json`).

Both writers of that page use it: `response_cache.py` puts the section in place between its
markers after a run, and `transport_report.py` writes it again (from the JSON) when it rewrites
the page whole, so neither loses the other's latest result. Imports nothing from its siblings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["BEGIN", "END", "put_section", "saved_section", "section"]

HERE = Path(__file__).resolve().parent
RESULT = HERE / "results" / "response_cache.json"
BEGIN = "<!-- response_cache.py: begin -->"
END = "<!-- response_cache.py: end -->"
CLIENTS = ["plain", "filling", "cached"]


def section(result: dict[str, Any]) -> list[str]:
    """The markdown section of `docs/benchmarks.md`."""
    lines = [
        "## Response cache: a cached re-run, and what a miss costs (issue 20)",
        "",
        f"Written by `{result['command']}` on {result['date']} ({result['rounds']} round(s) "
        f"of {result['prompts']:,} prompts, {result['concurrency']} in flight, each run a fresh "
        "`jib run` process against the local OpenAI stub, measured whole; medians). Each round "
        "starts from a copy of one SQLite store whose cache already holds the answers of the "
        f"same generator to {result.get('seed', 0):,} other prompts, so every lookup searches "
        "a populated index.",
        "",
        "| check | measured | bound | result |",
        "|---|---|---|---|",
    ]
    for check in result["acceptance"]:
        verdict = "pass" if check["ok"] else "**FAIL**"
        lines.append(f"| {check['check']} | {check['measured']} | {check['bound']} | {verdict} |")
    lines += [
        "",
        "| stub answers | run | wall s | CPU s | CPU µs/chat | requests sent |",
        "|---|---|---|---|---|---|",
    ]
    names = {
        "plain": "`jib run` (no cache)",
        "filling": "`jib run --cache`, a cache of other answers (all miss)",
        "cached": "`jib run --cache` again (all hit)",
    }
    for scenario, figures in result["scenarios"].items():
        answering = "at once" if scenario == "instant" else f"after {result['latency_ms']} ms"
        for client in CLIENTS:
            m = figures["clients"][client]
            sent = result["prompts"] if client != "cached" else 0
            lines.append(
                f"| {answering} | {names[client]} | {m['wall_s']:.2f} | {m['cpu_s']:.2f} | "
                f"{m['cpu_us_per_chat']:.0f} | {sent:,} |"
            )
    lines += [
        "",
        "Each process is timed from its start to its exit, so interpreter start-up, imports and "
        "storing every chat are in every figure. With the stub answering at once, a request "
        "costs only the client's CPU, and a cached re-run is bound by what is left: start-up "
        "and storing the chats (the main job's floor, above), so it cannot fall to 1/5 of a run "
        "that does the same plus the requests. With answers that take as long as a fast "
        "model's, the re-run's time is what the cache saves. The CPU overhead compares the run "
        "that fills the cache with the same run without `--cache`: the key, the lookup and the "
        "write of each answer.",
        "",
    ]
    return lines


def saved_section() -> list[str]:
    """The section from the last full run's JSON, between its markers; none without one."""
    if not RESULT.exists():
        return []
    return [BEGIN, *section(json.loads(RESULT.read_text())), END, ""]


def put_section(page: Path, lines: list[str]) -> None:
    """Replace the section between the markers in `page` (append it when absent)."""
    block = "\n".join([BEGIN, *lines, END])
    text = page.read_text() if page.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    page.write_text(text)
