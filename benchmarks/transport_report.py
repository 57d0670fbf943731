"""`docs/benchmarks.md` and its chart, from the JSON `benchmarks/transport.py` writes.

    python benchmarks/transport_report.py [RESULT_JSON] [MARKDOWN]

Run alone, it rewrites the Markdown and the chart from an existing result (by default
`benchmarks/results/transport.json` into `docs/benchmarks.md` and `docs/benchmarks.png`), which
is handy when only the presentation changed. The chart needs matplotlib
(`pip install -e ".[bench]"`); without it the Markdown says so and keeps its tables.

When the main job's page (`benchmarks_main_job.md`, written by `main_job.py`) sits beside the
page, the page opens with its chart and a link to it: each benchmark keeps its own page and
JSON, so neither has to rewrite the other's figures. The response cache's section is written
from its own JSON (`response_cache_report.py`), when there is one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling scripts, also when loaded
import response_cache_report  # a sibling script, not a package

LABELS = {
    "raw_aiohttp": "raw aiohttp (the floor)",
    "httpx": "httpx (one AsyncClient)",
    "openai_sdk": "openai SDK (AsyncOpenAI)",
    "litellm": "litellm.acompletion",
    "jib_openai": "jib `openai!`",
    "jib_litellm": "jib, LiteLLM path (`openai/…`)",
    "jib_http": "jib `http!`",
    "rigging_litellm": "rigging, LiteLLM generator",
    "rigging_http": "rigging, HTTP generator",
    "jib": "jib (`import jib`)",
    "rigging": "rigging",
}
ORDER = list(LABELS)
IMPORT_LABELS = {
    "raw_aiohttp": "aiohttp",
    "httpx": "httpx",
    "openai_sdk": "openai",
    "litellm": "litellm",
    "jib": "jib (lazy)",
    "jib_openai": "jib + openai! (its own HTTP/1.1 client)",
    "jib_litellm": "jib + LiteLLM path",
    "jib_http": "jib + http! (httpx)",
    "rigging": "rigging",
}
ACCEPTANCE_CONCURRENCY = (8, 64)
# (what, client, reference client, the most client / reference may be)
CPU_BOUNDS = [
    ("jib `openai!` / raw aiohttp", "jib_openai", "raw_aiohttp", 2.0),
    ("jib `http!` / raw aiohttp", "jib_http", "raw_aiohttp", 3.0),
    ("jib LiteLLM path / litellm direct", "jib_litellm", "litellm", 1.2),
]
IMAGE_BOUND = 1.5  # jib `openai!` / raw aiohttp, CPU per chat carrying a 1 MiB image (issue 18)
RSS_BOUND_MB = 150.0
RSS_CHATS = 5000
FIRST_DELTA_BOUND_MS = 20.0
MAIN_JOB_PAGE = "benchmarks_main_job.md"


def label(name: str, result: dict[str, Any] | None = None) -> str:
    text = LABELS.get(name, name)
    version = (result or {}).get("rigging_version")
    if name.startswith("rigging") and version:
        text = text.replace("rigging", f"rigging {version}", 1)
    return text


def plain(name: str, result: dict[str, Any] | None = None) -> str:
    """The label without Markdown code marks, for the chart."""
    return label(name, result).replace("`", "")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def number(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def times(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}×" if value < 10 else f"{value:,.0f}×"


def cell(result: dict[str, Any], client: str, concurrency: int) -> dict[str, Any] | None:
    for found in result["batch"]["cells"]:
        if found["client"] == client and found["concurrency"] == concurrency:
            return dict(found)
    return None


def cpu(result: dict[str, Any], client: str, concurrency: int) -> float | None:
    found = cell(result, client, concurrency)
    return None if found is None else float(found["cpu_us_per_request"])


def why_missing(result: dict[str, Any], part: str, client: str) -> str:
    """Why a client has no figure: skipped, failed or not run."""
    section = result.get(part, {})
    if client in section.get("skipped", {}):
        return f"not measured: {section['skipped'][client]}"
    if client in section.get("failed", {}):
        return f"**failed**: {section['failed'][client]}"
    if client.startswith("rigging") and result.get("rigging_note"):
        return f"not measured: {result['rigging_note']}"
    return "not measured"


def in_flight(result: dict[str, Any]) -> str:
    return " and ".join(str(c) for c in result["concurrency"])


def verdict(ok: bool) -> str:
    return "pass" if ok else "**FAIL**"


# --- the Markdown ------------------------------------------------------------------------------


def acceptance_rows(result: dict[str, Any]) -> list[list[str]]:
    """Issue 11's and issue 18's acceptance checks: what, measured, bound, verdict."""
    rows = []
    for what, client, reference, bound in CPU_BOUNDS:
        for concurrency in ACCEPTANCE_CONCURRENCY:
            mine, theirs = cpu(result, client, concurrency), cpu(result, reference, concurrency)
            name = f"CPU per request, {what}, {concurrency} in flight"
            if mine is None or theirs is None:
                missing = client if mine is None else reference
                why = why_missing(result, "batch", missing)
                if concurrency not in result["concurrency"]:
                    why = f"not measured: this run used {in_flight(result)} in flight"
                rows.append([name, "—", f"≤ {bound}×", why])
            else:
                ratio = mine / theirs
                rows.append([name, f"{ratio:.2f}×", f"≤ {bound}×", verdict(ratio <= bound)])
    rows.append(image_row(result))
    rss = {row["client"]: row for row in result["run_batch_rss"]["rows"]}
    found = rss.get("jib_openai")
    chats = result["run_batch_rss"].get("chats", RSS_CHATS)
    name = f"peak RSS of a {chats:,}-chat `run_batch` on `openai!`"
    if chats != RSS_CHATS:
        name += f" (the issue asks for {RSS_CHATS:,})"
    if found is None:
        rows.append(
            [
                name,
                "—",
                f"≤ {RSS_BOUND_MB:.0f} MB",
                why_missing(result, "run_batch_rss", "jib_openai"),
            ]
        )
    else:
        mb = found["peak_rss_mb"]
        rows.append([name, f"{mb:.0f} MB", f"≤ {RSS_BOUND_MB:.0f} MB", verdict(mb <= RSS_BOUND_MB)])
    deltas = {row["client"]: row for row in result["first_delta"]["rows"]}
    for client in ("jib_openai", "jib_litellm"):
        name = f"first streamed delta, {label(client)}, p95 of stub send → caller"
        found = deltas.get(client)
        limit = f"≤ {FIRST_DELTA_BOUND_MS:.0f} ms"
        if found is None:
            rows.append([name, "—", limit, why_missing(result, "first_delta", client)])
        else:
            ok = found["p95_ms"] <= FIRST_DELTA_BOUND_MS
            rows.append([name, f"{found['p95_ms']:.1f} ms", limit, verdict(ok)])
    return rows


def image_cpu(result: dict[str, Any], client: str) -> float | None:
    """CPU µs per chat carrying the image, or None when not measured."""
    for row in result.get("image", {}).get("rows", []):
        if row["client"] == client:
            return float(row["cpu_us_per_request"])
    return None


def image_megabytes(result: dict[str, Any]) -> str:
    size = result.get("image", {}).get("image_bytes", 1 << 20)
    return f"{size / (1 << 20):g} MiB"


def image_row(result: dict[str, Any]) -> list[str]:
    """Issue 18's check: a chat carrying the image, jib `openai!` against raw aiohttp."""
    name = f"CPU per request with a {image_megabytes(result)} image, jib `openai!` / raw aiohttp"
    limit = f"≤ {IMAGE_BOUND}×"
    if "image" not in result:
        return [name, "—", limit, "not measured: this result predates the image measurement"]
    name += f", {result['image']['concurrency']} in flight"
    mine, theirs = image_cpu(result, "jib_openai"), image_cpu(result, "raw_aiohttp")
    if mine is None or theirs is None:
        missing = "jib_openai" if mine is None else "raw_aiohttp"
        return [name, "—", limit, why_missing(result, "image", missing)]
    ratio = mine / theirs
    return [name, f"{ratio:.2f}×", limit, verdict(ratio <= IMAGE_BOUND)]


def image_section(result: dict[str, Any]) -> list[str]:
    if "image" not in result:
        return []
    found = result["image"]
    floor = image_cpu(result, "raw_aiohttp")
    rows = [
        [
            label(row["client"], result),
            number(row["cpu_us_per_request"]),
            times(row["cpu_us_per_request"] / floor) if floor else "—",
            number(row["requests_per_s"]),
            number(row["body_bytes_per_request"] / 1e6, 2),
            number(row["peak_rss_mb"]),
            number(row["stub_cpu_us_per_request"]),
        ]
        for row in sorted(found["rows"], key=lambda row: ORDER.index(row["client"]))
    ]
    intro = (
        f"{found['requests']:,} chats per client and run at {found['concurrency']} in flight, "
        f"median of {found['repeat']} run(s) taken in turns, each run a fresh process (CPU and "
        f"RSS measured as above). Every chat carries the same {image_megabytes(result)} image "
        "(fixed bytes, as a `data:` URL) and the same short text, so every body is the same "
        "1.4 MB of JSON. Raw aiohttp posts one body it encoded up front (`data=` bytes, a JSON "
        "content type): the floor. jib `openai!` runs one `generator.chat().run_batch(…)` of "
        '`Message("user", [text, image])`, one `ContentImageUrl.from_bytes(…)` shared by every '
        "chat, as a user would write it. Body MB is what the stub received per request; the "
        "stub parses every body as JSON."
    )
    header = ["client", "CPU µs/request", "× raw aiohttp", "requests/s", "body MB/request"]
    header += ["peak RSS MB", "stub CPU µs/request"]
    title = f"A chat carrying a {image_megabytes(result)} image"
    if not found["rows"]:
        return section(result, "image", title, intro, header, rows)
    stub = [row["stub_cpu_us_per_request"] for row in found["rows"]]
    slower = any(
        row["stub_cpu_us_per_request"] >= row["cpu_us_per_request"] for row in found["rows"]
    )
    pace = (
        "as much as a client or more, so requests/s here is the stub's pace (CPU per request is "
        "the client's alone)."
        if slower
        else "less than the clients did."
    )
    return [
        f"## {title}",
        "",
        intro,
        "",
        *table(header, rows),
        "",
        f"The stub spent {min(stub):,.0f}–{max(stub):,.0f} µs of its own CPU per request, most "
        f"of it parsing the body: {pace}",
        "",
        *missing_notes(result, "image"),
    ]


def batch_section(result: dict[str, Any]) -> list[str]:
    batch = result["batch"]
    concurrencies = result["concurrency"]
    header = ["client"]
    header += [f"CPU µs/request, {c} in flight" for c in concurrencies]
    header += [f"× raw aiohttp, {c}" for c in concurrencies]
    header += [f"requests/s, {c}" for c in concurrencies]
    header += [f"peak RSS MB, {c}" for c in concurrencies]
    rows = []
    names = [n for n in ORDER if any(c["client"] == n for c in batch["cells"])]
    for name in names:
        row = [label(name, result)]
        row += [number(cpu(result, name, c)) for c in concurrencies]
        for c in concurrencies:
            mine, floor = cpu(result, name, c), cpu(result, "raw_aiohttp", c)
            row.append(times(mine / floor) if mine is not None and floor else "—")
        for key, digits in (("requests_per_s", 0), ("peak_rss_mb", 0)):
            for c in concurrencies:
                found = cell(result, name, c)
                row.append(number(found[key] if found else None, digits))
        rows.append(row)
    stub = [c["stub_cpu_us_per_request"] for c in batch["cells"]]
    slower = [
        f"{label(c['client'], result)} at {c['concurrency']}"
        for c in batch["cells"]
        if c["stub_cpu_us_per_request"] >= c["cpu_us_per_request"]
    ]
    lines = [
        "## Client CPU per request",
        "",
        f"{batch['requests']:,} chat requests per client and run{peer_note(result)}, median of "
        f"{batch['repeat']} run(s) taken in turns, each run a fresh process. CPU is the client "
        "process's CPU time (every thread) over the timed requests only, after a warm-up of its "
        "own; peak RSS is the process's `ru_maxrss`, imports included.",
        "",
        *table(header, rows),
        "",
    ]
    if stub:
        pace = (
            f"as much as the client or more for {', '.join(slower)}, where requests/s may be "
            "the stub's."
            if slower
            else "less than the client did in every row."
        )
        lines += [
            f"The stub spent {min(stub):.0f}–{max(stub):.0f} µs of its own CPU per request "
            f"(most when a client opens a connection per request): {pace}",
            "",
        ]
    return lines + missing_notes(result, "batch")


def peer_note(result: dict[str, Any]) -> str:
    batch = result["batch"]
    peer = batch.get("peer_requests", batch["requests"])
    measured = any(c["client"].startswith("rigging") for c in batch["cells"])
    return f" ({peer:,} for rigging)" if measured and peer != batch["requests"] else ""


def missing_notes(result: dict[str, Any], part: str) -> list[str]:
    section = result[part]
    notes = [f"- {label(n, result)}: not measured: {why}" for n, why in section["skipped"].items()]
    notes += [f"- {label(n, result)}: **failed**: {why}" for n, why in section["failed"].items()]
    if part == "batch" and result.get("rigging_note"):
        notes.append(f"- rigging: {result['rigging_note']}")
    return [*notes, ""] if notes else []


def section(
    result: dict[str, Any],
    part: str,
    title: str,
    intro: str,
    header: list[str],
    rows: list[list[str]],
) -> list[str]:
    """A `##` section: its intro, its table (when any row was measured), its missing clients."""
    lines = [f"## {title}", "", intro, ""]
    if rows:
        lines += [*table(header, rows), ""]
    return lines + missing_notes(result, part)


def first_delta_section(result: dict[str, Any]) -> list[str]:
    rows = [
        [
            label(row["client"], result),
            str(row["streams"]),
            *(number(row[key], 2) for key in ("median_ms", "p95_ms", "max_ms")),
        ]
        for row in result["first_delta"]["rows"]
    ]
    intro = (
        "The stub's `slow-stream` model writes its first chunk at once and the next ones 50 ms "
        "apart; the stub records the `time.monotonic()` at which it wrote the first chunk, the "
        "caller the moment its first non-empty delta arrived (one clock for every process on "
        "Linux). Streams run one after another, after two warm-up streams. Raw aiohttp reading "
        "the server-sent events itself is the floor; `litellm.acompletion(stream=True)` is the "
        "reference for jib's LiteLLM path."
    )
    header = ["client", "streams", "median ms", "p95 ms", "max ms"]
    return section(result, "first_delta", "Time to the first streamed delta", intro, header, rows)


def rss_section(result: dict[str, Any]) -> list[str]:
    rows = [
        [
            label(row["client"], result),
            f"{row['chats']:,}",
            number(row["peak_rss_mb"]),
            number(row["wall_s"], 1),
        ]
        for row in result["run_batch_rss"]["rows"]
    ]
    intro = (
        "One `generator.chat().run_batch(prompts)` at the generator's defaults (10 in flight, "
        "retries on), in a fresh process; peak RSS includes the imports."
    )
    header = ["generator", "chats", "peak RSS MB", "wall s"]
    title = "Peak RSS of one large `run_batch`"
    return section(result, "run_batch_rss", title, intro, header, rows)


def import_section(result: dict[str, Any]) -> list[str]:
    found = result["imports"]
    rows = [
        [
            IMPORT_LABELS.get(row["name"], row["name"]),
            f"`{row['statement']}`",
            number(row["median_ms"]),
            number(row["best_ms"]),
        ]
        for row in found["rows"]
    ]
    runs = found["rows"][0]["runs"] if found["rows"] else 0
    intro = (
        f"Wall time of a fresh `python -c STATEMENT`, interpreter start-up included, median of "
        f"{runs} run(s) taken in turns (after a warm-up round, except in a smoke run)."
    )
    header = ["library", "statement", "median ms", "best ms"]
    return section(result, "imports", "Cold import", intro, header, rows)


def main_job_section(page_dir: Path | None) -> list[str]:
    """The main job's chart and a link to its page, when that page is in `page_dir`."""
    if page_dir is None or not (page_dir / MAIN_JOB_PAGE).exists():
        return []
    chart = Path(MAIN_JOB_PAGE).with_suffix(".png").name
    return [
        "## The main job: `jib run` against its floor",
        "",
        f"![wall time, CPU time and peak RSS of jib run and its floor]({chart})",
        "",
        f"Acceptance checks (issue 19), figures and how they are measured: [{MAIN_JOB_PAGE}]"
        f"({MAIN_JOB_PAGE}), written by `python benchmarks/main_job.py`.",
        "",
    ]


def markdown(
    result: dict[str, Any],
    chart_name: str,
    chart_note: str | None,
    page_dir: Path | None = None,
) -> str:
    """The whole page; `page_dir`, where it goes, to find the main job's page beside it."""
    lines = [
        "# Benchmarks: jib's transports against their peers",
        "",
        "Written by `python benchmarks/transport.py` (also run by `benchmarks/run_all.py`); do "
        "not edit by hand. Every client talks to the same trivial local OpenAI-compatible stub "
        "(`benchmarks/openai_stub.py`, its own process, constant answers), so what is measured "
        "is the client: its CPU per request, its memory, its streaming latency, its import time.",
        "",
    ]
    if result.get("smoke"):
        lines += [
            "**Smoke run**: tiny N, one run; it checks the suite works and measures nothing.",
            "",
        ]
    lines += [
        *result["machine"],
        f"- command: `{result['command']}` ({result['seconds'] / 60:.1f} min)",
        "",
    ]
    lines += [f"![CPU per request, import time and first delta]({chart_name})", ""]
    if chart_note:
        lines += [chart_note, ""]
    lines += main_job_section(page_dir)
    lines += response_cache_report.saved_section()
    lines += [
        "## Acceptance (issues 11 and 18)",
        "",
        *table(["check", "measured", "bound", "result"], acceptance_rows(result)),
        "",
        *batch_section(result),
        *image_section(result),
        *first_delta_section(result),
        *rss_section(result),
        *import_section(result),
        "## How each client is driven",
        "",
        "- raw aiohttp: one `ClientSession`, an `asyncio.Semaphore` of C, `json=` body, "
        "`await response.json()`.",
        "- httpx: one `AsyncClient()` (default pool limits), a semaphore of C.",
        "- openai SDK: one `AsyncOpenAI(base_url=…, max_retries=0)`, a semaphore of C.",
        '- litellm: `litellm.acompletion(model="openai/stub", api_base=…, api_key="x", '
        "max_retries=0)`, a semaphore of C.",
        '- jib: `get_generator("openai!stub,api_base=…,api_key=x,max_connections=C")`, '
        "`openai/stub,…` (the LiteLLM path) and `HTTPGenerator.for_json_endpoint(…)` with the "
        'body `{"model": "$model", "messages": "$messages"}` and content path '
        "`$.choices[0].message.content`; one `generator.chat().run_batch(prompts)`, jib's own "
        "limiter keeping C in flight, retries at their default (they cost nothing when nothing "
        "fails).",
        '- rigging (from PyPI, in `benchmarks/.venv-peers`): `get_generator("openai/stub,'
        'api_base=…,max_connections=C")`, one `chat().run_batch(prompts)`; and '
        "`HTTPGenerator.for_json_endpoint(…)`, which has no limit of its own (it sends a whole "
        "batch at once, a new `httpx.AsyncClient` per request), so one `chat(prompt).run()` per "
        "request under a semaphore of C.",
        "- chats carrying an image: raw aiohttp as above but with `data=` the body encoded once, "
        "jib `openai!` as above with `Message` inputs (see its section).",
        "",
        "Every answer is checked against the stub's constant. Ratios are to raw aiohttp, the "
        "practical floor for a Python client. Timings from a shared or busy machine are noisy: "
        "compare figures from one run, not across runs.",
        "",
    ]
    return "\n".join(lines)


# --- the chart ---------------------------------------------------------------------------------


def write_chart(result: dict[str, Any], path: Path) -> str | None:
    """Draw the chart to `path`; return a note for the page when it could not be drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return 'No chart: matplotlib is not installed (`pip install -e ".[bench]"`).'

    figure = plt.figure(figsize=(13, 9.5), layout="constrained")
    grid = figure.add_gridspec(2, 2, height_ratios=[1.4, 1], width_ratios=[1, 1.15])
    cpu_axes = figure.add_subplot(grid[0, :])
    draw_cpu(result, cpu_axes)
    cpu_axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    draw_imports(result, figure.add_subplot(grid[1, 0]))
    draw_first_delta(result, figure.add_subplot(grid[1, 1]))
    date = result["date"]
    smoke = " — SMOKE RUN, not a measurement" if result.get("smoke") else ""
    figure.suptitle(
        f"jib and its peers against a local OpenAI-compatible stub ({date}){smoke}",
        fontweight="bold",
    )
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return None


def draw_cpu(result: dict[str, Any], axes: Any) -> None:
    """Grouped horizontal bars: CPU µs per request per client and concurrency, log scale."""
    from matplotlib.patches import Patch

    concurrencies = result["concurrency"]
    batch = result["batch"]
    shown = {c["client"] for c in batch["cells"]} | set(batch["skipped"]) | set(batch["failed"])
    names = [n for n in ORDER if n in shown]
    height = 0.8 / max(len(concurrencies), 1)
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]
    measured = [c["cpu_us_per_request"] for c in batch["cells"]] or [100.0]
    for index, concurrency in enumerate(concurrencies):
        offset = (index - (len(concurrencies) - 1) / 2) * height
        floor = cpu(result, "raw_aiohttp", concurrency)
        for row, name in enumerate(names):
            value = cpu(result, name, concurrency)
            if value is None:
                continue
            axes.barh(row + offset, value, height=height, color=colors[index % len(colors)])
            text = f"  {value:,.0f} µs" + (f"  ({times(value / floor)})" if floor else "")
            axes.text(value, row + offset, text, va="center", fontsize=8)
    for row, name in enumerate(names):
        if all(cpu(result, name, c) is None for c in concurrencies):
            why = "failed" if name in batch["failed"] else "not measured in this run"
            axes.text(min(measured) * 0.8, row, f"  {why}", va="center", fontsize=9, color="grey")
    axes.set_yticks(range(len(names)), [plain(n, result) for n in names])
    axes.set_ylim(len(names) - 0.5, -0.5)
    axes.set_xscale("log")
    axes.set_xlim(min(measured) * 0.5, max(measured) * 4)
    axes.set_xlabel("client CPU µs per request (log scale; lower is better; × = times raw aiohttp)")
    axes.set_title(f"Client CPU per chat request ({batch['requests']:,} requests, median)")
    handles = [
        Patch(color=colors[index % len(colors)], label=f"{concurrency} in flight")
        for index, concurrency in enumerate(concurrencies)
    ]
    axes.legend(handles=handles, loc="upper right")
    axes.grid(axis="x", alpha=0.3)


def draw_imports(result: dict[str, Any], axes: Any) -> None:
    rows = result["imports"]["rows"]
    values = [r["median_ms"] for r in rows]
    axes.barh(range(len(rows)), values, color="#8172b3")
    for i, value in enumerate(values):
        axes.text(value, i, f"  {value:,.0f}", va="center", fontsize=8)
    axes.set_yticks(range(len(rows)), [IMPORT_LABELS.get(r["name"], r["name"]) for r in rows])
    axes.set_ylim(len(rows) - 0.5, -0.5)
    axes.set_xlim(0, max(values or [1]) * 1.25)
    axes.set_xlabel("ms, fresh process, interpreter start-up included (median)")
    axes.set_title("Cold import")
    axes.grid(axis="x", alpha=0.3)


def draw_first_delta(result: dict[str, Any], axes: Any) -> None:
    rows = result["first_delta"]["rows"]
    for offset, key, color in ((-0.2, "median_ms", "#55a868"), (0.2, "p95_ms", "#c44e52")):
        values = [r[key] for r in rows]
        name = key.removesuffix("_ms")
        positions = [i + offset for i in range(len(rows))]
        axes.barh(positions, values, height=0.4, color=color, label=name)
        for position, value in zip(positions, values, strict=True):
            axes.text(value, position, f"  {value:.1f}", va="center", fontsize=8)
    axes.axvline(FIRST_DELTA_BOUND_MS, color="grey", linestyle="--", linewidth=1)
    axes.set_yticks(range(len(rows)), [plain(r["client"], result) for r in rows])
    axes.set_ylim(len(rows) - 0.5, -0.5)
    highest = max([r["p95_ms"] for r in rows] + [FIRST_DELTA_BOUND_MS])
    axes.set_xlim(0, highest * 1.25)
    axes.set_xlabel("ms from the stub sending its first chunk to the caller's first delta")
    axes.set_title(f"First streamed delta (dashed: the {FIRST_DELTA_BOUND_MS:.0f} ms bound)")
    if rows:
        axes.legend(loc="lower right")
    axes.grid(axis="x", alpha=0.3)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    here = Path(__file__).resolve().parent
    source = Path(argv[0]) if argv else here / "results" / "transport.json"
    target = Path(argv[1]) if len(argv) > 1 else here.parent / "docs" / "benchmarks.md"
    result = json.loads(source.read_text())
    chart = target.with_suffix(".png")
    note = write_chart(result, chart)
    target.write_text(markdown(result, chart.name, note, target.parent))
    print(f"wrote {target} and {chart}")


if __name__ == "__main__":
    main()
