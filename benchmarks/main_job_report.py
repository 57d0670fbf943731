"""The page and chart of `main_job.py`: `docs/benchmarks_main_job.md` and its PNG, from the JSON.

    python benchmarks/main_job_report.py [RESULT_JSON] [MARKDOWN]

Run alone, it rewrites the page and the chart from an existing result (by default
`benchmarks/results/main_job.json` into `docs/benchmarks_main_job.md` and `.png`), which is
handy when only the presentation changed or matplotlib was missing at measuring time
(`pip install -e ".[bench]"`; without it the page says so and keeps its tables).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LABELS = {
    "floor": "floor script (aiohttp + executemany)",
    "jib_openai": "jib run `openai!`",
    "jib_echo": "jib run `echo!` (offline)",
}
SHORT = {"floor": "floor", "jib_openai": "jib `openai!`", "jib_echo": "jib `echo!`"}
STORE_LABELS = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
FLOOR_BOUND = 1.5  # jib `openai!` / floor, wall and CPU, SQLite
ECHO_BOUND = 5000.0  # chats/s of `jib run 'echo!…'`, SQLite
POSTGRES_BOUND = 2.0  # jib on PostgreSQL / jib on SQLite, wall time


def row_of(result: dict[str, Any], client: str, store: str) -> dict[str, Any] | None:
    for row in result["rows"]:
        if row["client"] == client and row["store"] == store:
            return dict(row)
    return None


def why_missing(result: dict[str, Any], client: str, store: str) -> str:
    """Why a client has no figure in a store: failed, PostgreSQL skipped, or not run."""
    failed = result["failed"].get(f"{client}/{store}")
    if failed:
        return f"**failed**: {failed}"
    if store == "postgres" and result.get("postgres_note"):
        return f"not measured: {result['postgres_note'].removeprefix('skipped: ')}"
    return "not measured"


def times(value: float) -> str:
    return f"{value:.2f}×"


# --- acceptance --------------------------------------------------------------------------------


def ratio_check(
    result: dict[str, Any],
    name: str,
    mine: tuple[str, str],
    theirs: tuple[str, str],
    key: str,
    bound: float,
) -> dict[str, Any]:
    """`mine[key] / theirs[key]` (each a (client, store)) against `bound`."""
    found = [row_of(result, *mine), row_of(result, *theirs)]
    check = {"check": name, "bound": f"≤ {bound}×", "measured": None, "shown": "—"}
    if found[0] is None or found[1] is None:
        missing = mine if found[0] is None else theirs
        return {**check, "result": why_missing(result, *missing)}
    value = found[0][key] / found[1][key]
    verdict = "pass" if value <= bound else "**FAIL**"
    return {**check, "measured": value, "shown": times(value), "result": verdict}


def acceptance(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 19's checks: what, the figure, the bound, the verdict (or why not measured)."""
    checks = [
        ratio_check(
            result,
            f"{what}, {SHORT['jib_openai']} / floor, SQLite",
            ("jib_openai", "sqlite"),
            ("floor", "sqlite"),
            key,
            FLOOR_BOUND,
        )
        for what, key in (("wall time", "wall_s"), ("CPU time", "cpu_s"))
    ]
    echo = row_of(result, "jib_echo", "sqlite")
    check = {"check": f"chats/s, {SHORT['jib_echo']}, SQLite", "bound": f"≥ {ECHO_BOUND:,.0f}"}
    if echo is None:
        checks.append(
            {
                **check,
                "measured": None,
                "shown": "—",
                "result": why_missing(result, "jib_echo", "sqlite"),
            }
        )
    else:
        rate = echo["chats_per_s"]
        verdict = "pass" if rate >= ECHO_BOUND else "**FAIL**"
        checks.append({**check, "measured": rate, "shown": f"{rate:,.0f}", "result": verdict})
    for client in ("jib_openai", "jib_echo"):
        checks.append(
            ratio_check(
                result,
                f"wall time, {SHORT[client]}, PostgreSQL / SQLite",
                (client, "postgres"),
                (client, "sqlite"),
                "wall_s",
                POSTGRES_BOUND,
            )
        )
    return checks


# --- the page ----------------------------------------------------------------------------------


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def figures_rows(result: dict[str, Any]) -> list[list[str]]:
    """One table row per client and store, with its ratios to the floor in the same store."""
    rows = []
    for store in result["stores"]:
        floor = row_of(result, "floor", store)
        for client in LABELS:
            row = row_of(result, client, store)
            if row is None:
                continue
            compared = floor is not None and client == "jib_openai"
            rows.append(
                [
                    LABELS[client],
                    STORE_LABELS[store],
                    f"{row['wall_s']:.2f}",
                    times(row["wall_s"] / floor["wall_s"]) if compared and floor else "—",
                    f"{row['cpu_s']:.2f}",
                    times(row["cpu_s"] / floor["cpu_s"]) if compared and floor else "—",
                    f"{row['cpu_us_per_chat']:,.0f}",
                    f"{row['chats_per_s']:,.0f}",
                    f"{row['peak_rss_mb']:.0f}",
                    f"{row['user_s']:.2f} / {row['sys_s']:.2f}",
                    f"{row['stub_cpu_s']:.2f}" if client != "jib_echo" else "—",
                ]
            )
    return rows


def runs_rows(result: dict[str, Any]) -> list[list[str]]:
    """Every run's wall and CPU time, and the load when it started: the noise, in the open."""
    return [
        [
            LABELS[row["client"]],
            STORE_LABELS[row["store"]],
            ", ".join(f"{value:.2f}" for value in row["wall_s_runs"]),
            ", ".join(f"{value:.2f}" for value in row["cpu_s_runs"]),
            ", ".join(f"{value:.2f}" for value in row["load_1min_runs"]),
        ]
        for row in result["rows"]
    ]


def notes(result: dict[str, Any]) -> list[str]:
    lines = [f"- {key}: **failed**: {why}" for key, why in result["failed"].items()]
    if result.get("postgres_note"):
        lines.append(f"- PostgreSQL {result['postgres_note']}")
    return [*lines, ""] if lines else []


def markdown(result: dict[str, Any], chart_name: str, chart_note: str | None) -> str:
    """The whole page."""
    prompts = f"{result['prompts']:,}"
    lines = [
        "# Benchmarks: the main job (`jib run`) against its floor",
        "",
        "Written by `python benchmarks/main_job.py` (also run by `benchmarks/run_all.py`); do not "
        f"edit by hand. `jib run` sends {prompts} prompts from a file through `openai!` to a "
        "local OpenAI-compatible stub (`benchmarks/openai_stub.py`, its own process, a constant "
        "answer) and stores every chat; the floor is the same job written the simplest way "
        "(`benchmarks/main_job_floor.py`): aiohttp with the same number in flight, each answer "
        "stored as one JSON row, 500 rows per `executemany`, into the same kind of store. "
        "`jib run 'echo!bench'` does the job offline, so what it measures is jib alone.",
        "",
    ]
    if result.get("smoke"):
        lines += ["**Smoke run**: tiny N, one run; it checks the benchmark works.", ""]
    lines += [
        *result["machine"],
        f"- command: `{result['command']}` ({result['seconds'] / 60:.1f} min)",
        "",
        f"![wall time, CPU time and peak RSS of jib run and its floor]({chart_name})",
        "",
    ]
    if chart_note:
        lines += [chart_note, ""]
    checks = [[c["check"], c["shown"], c["bound"], c["result"]] for c in acceptance(result)]
    lines += [
        "## Acceptance (issue 19)",
        "",
        *table(["check", "measured", "bound", "result"], checks),
        "",
        "## Figures",
        "",
        f"{prompts} prompts, {result['concurrency']} in flight, median of {result['repeat']} "
        "run(s) taken in turns. Each run is a fresh process measured whole, from its start to "
        "its exit (interpreter start-up and imports included, as a user waits for it): wall "
        "time, CPU time (user + system, from `os.wait4`: that process alone, every thread) and "
        f"peak RSS (`ru_maxrss`; it cannot read below the driver's own "
        f"{result.get('driver_peak_rss_mb', 0):.0f} MB, which Linux carries into every child "
        "it starts). Each run writes into a fresh store: a new SQLite file, or a new "
        "PostgreSQL database dropped afterwards. × floor compares with the floor script in the "
        "same kind of store; stub CPU is what the stub spent serving the run. The PostgreSQL "
        "server's own CPU is in no client's CPU time; its wall time includes waiting for it "
        "(the server shares the machine's cores).",
        "",
        *table(
            [
                "client",
                "store",
                "wall s",
                "× floor",
                "CPU s",
                "× floor",
                "CPU µs/chat",
                "chats/s",
                "peak RSS MB",
                "user / sys s",
                "stub CPU s",
            ],
            figures_rows(result),
        ),
        "",
        *notes(result),
        "Every run, in the order taken (wall s; CPU s; 1-minute load average when it started):",
        "",
        *table(["client", "store", "wall s", "CPU s", "load"], runs_rows(result)),
        "",
        "## How each run is driven",
        "",
        f"- jib `openai!`: `python -m jib.cli run 'openai!stub,api_base=http://127.0.0.1:PORT/v1,"
        f"api_key=x' --prompts prompts.txt --concurrency {result['concurrency']} --run main-job "
        "--store STORE`, the defaults otherwise (chunks of a quarter of the concurrency, retries "
        "on, progress as text lines since its output is a file).",
        "- jib `echo!`: the same with `echo!bench`, no server involved.",
        "- floor: `python benchmarks/main_job_floor.py prompts.txt http://127.0.0.1:PORT/v1 "
        "STORE`: one `aiohttp.ClientSession`, 32 workers, `json=` bodies, "
        "`await response.json()`; SQLite through `sqlite3` (WAL, `synchronous=NORMAL`, as jib "
        "sets it), PostgreSQL through psycopg into a `jsonb` column.",
        "",
        "After every run the store is read back (jib's with `jib.storage.open_store`): one chat "
        "per prompt, none failed, each answer the stub's constant (or, for `echo!`, the prompt); "
        "a run that stored anything else fails. The machine is shared: compare figures from one "
        "run (the rounds take turns so that load falls on every client alike), not across runs.",
        "",
    ]
    return "\n".join(lines)


def console_summary(result: dict[str, Any]) -> list[str]:
    """The acceptance checks, one line each, for the terminal."""
    return [
        f"{c['check']}: {c['shown']} ({c['bound']}): {c['result']}" for c in result["acceptance"]
    ]


# --- the chart ---------------------------------------------------------------------------------


PANELS = [
    ("wall_s", "wall time, s", "{:.1f}"),
    ("cpu_s", "CPU time, s", "{:.1f}"),
    ("peak_rss_mb", "peak RSS, MB", "{:.0f}"),
]
COLORS = {"sqlite": "#4c72b0", "postgres": "#dd8452"}
CHART_LABELS = {
    "floor": "floor script",
    "jib_openai": "jib run openai!",
    "jib_echo": "jib run echo!",
}


def write_chart(result: dict[str, Any], path: Path) -> str | None:
    """Draw the chart to `path`; return a note for the page when it could not be drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch
    except ImportError:
        return 'No chart: matplotlib is not installed (`pip install -e ".[bench]"`).'
    figure, axes = plt.subplots(
        1, len(PANELS), figsize=(13, 4.6), sharey=True, layout="constrained"
    )
    for panel, (key, title, shape) in zip(axes, PANELS, strict=True):
        draw_panel(result, panel, key, title, shape)
    handles = [Patch(color=COLORS[s], label=STORE_LABELS[s]) for s in result["stores"]]
    handles.append(
        Line2D([], [], color="grey", linestyle="--", label=f"{FLOOR_BOUND}× the floor, SQLite")
    )
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles))
    smoke = " — SMOKE RUN, not a measurement" if result.get("smoke") else ""
    figure.suptitle(
        f"jib run over {result['prompts']:,} prompts against the floor script, "
        f"{result['concurrency']} in flight ({result['date']}, median of {result['repeat']})"
        f"{smoke}",
        fontweight="bold",
    )
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return None


def draw_panel(result: dict[str, Any], axes: Any, key: str, title: str, shape: str) -> None:
    """Horizontal bars: one group per client, one bar per store; × floor on jib `openai!`."""
    clients = [c for c in LABELS if any(r["client"] == c for r in result["rows"])]
    stores = result["stores"]
    height = 0.8 / max(len(stores), 1)
    for index, store in enumerate(stores):
        offset = (index - (len(stores) - 1) / 2) * height
        floor = row_of(result, "floor", store)
        for position, client in enumerate(clients):
            row = row_of(result, client, store)
            if row is None:
                continue
            value = row[key]
            axes.barh(position + offset, value, height=height, color=COLORS[store])
            text = "  " + shape.format(value)
            if client == "jib_openai" and floor and key != "peak_rss_mb":
                text += f"  ({times(value / floor[key])})"
            axes.text(value, position + offset, text, va="center", fontsize=8)
    floor = row_of(result, "floor", "sqlite")
    if floor and key != "peak_rss_mb":
        axes.axvline(FLOOR_BOUND * floor[key], color="grey", linestyle="--", linewidth=1)
    axes.set_yticks(range(len(clients)), [CHART_LABELS[c] for c in clients])
    axes.set_ylim(len(clients) - 0.5, -0.5)
    highest = max([r[key] for r in result["rows"]] or [1.0])
    axes.set_xlim(0, highest * 1.4)
    axes.set_title(f"{title} (lower is better)")
    axes.grid(axis="x", alpha=0.3)


# --- writing -----------------------------------------------------------------------------------


def write(result: dict[str, Any], json_path: Path, page_path: Path) -> None:
    """Write the JSON, the page and its chart (beside the page, same name, `.png`)."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    page_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    chart = page_path.with_suffix(".png")
    note = write_chart(result, chart)
    page_path.write_text(markdown(result, chart.name, note))
    root = Path(__file__).resolve().parent.parent
    for path in (json_path, page_path) if note else (json_path, page_path, chart):
        print(f"wrote {path.relative_to(root) if path.is_relative_to(root) else path}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    here = Path(__file__).resolve().parent
    source = Path(argv[0]) if argv else here / "results" / "main_job.json"
    target = Path(argv[1]) if len(argv) > 1 else here.parent / "docs" / "benchmarks_main_job.md"
    result = json.loads(source.read_text())
    chart = target.with_suffix(".png")
    note = write_chart(result, chart)
    target.write_text(markdown(result, chart.name, note))
    print(f"wrote {target} and {chart}")


if __name__ == "__main__":
    main()
