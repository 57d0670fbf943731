"""The main job end to end: `jib run` over a dataset against the least code that does the same.

    python benchmarks/main_job.py [--prompts 20000] [--repeat 3] [--concurrency 32]
                                  [--postgres URL] [--no-postgres] [--smoke] [--out-dir DIR]

Writes a dataset of `--prompts` distinct prompts (a `.txt` file, one a line) to a temporary
folder, starts the stub OpenAI-compatible server (`benchmarks/openai_stub.py`, its own process,
127.0.0.1, a free port), then runs, each in a fresh process:

- `jib_openai`: `python -m jib.cli run 'openai!stub,api_base=…,api_key=x' --prompts FILE
  --concurrency 32 --run main-job --store STORE`, the real CLI as a user types it;
- `floor`: `benchmarks/main_job_floor.py`, the same job written the simplest way (aiohttp, 32 in
  flight, each answer one JSON row, inserted 500 at a time with `executemany`);
- `jib_echo`: `jib run 'echo!bench'` on the same dataset, offline (no stub; no floor: its bar
  is absolute, 5,000 chats/s);

each into a fresh store of its own (`main_job_stores.py`): a SQLite file, and a new database on
a PostgreSQL server when one is given (`--postgres URL`, default `$JIB_TEST_POSTGRES_URL`;
`tests/storage/postgres.sh` starts one), dropped afterwards. Every run is measured whole, from
the process's start to its exit, imports included, as a user waits for it: wall time, CPU time
(user + system, from `os.wait4`, so exactly that process's) and peak RSS (`ru_maxrss`). jib's
source is compiled to bytecode first, as pip does when it installs a package. Runs take
turns, `--repeat` rounds, and the medians are reported. After each run the store is read back
(in a helper process, so that the driver stays small: see `main_job_stores.py` for why that
matters to peak RSS): one chat per prompt, none failed, each answer right; a run that stored
anything else fails.

The jib measured is the one of this checkout (`src/` next to `benchmarks/` goes first on the
child's `PYTHONPATH`), so two checkouts can be compared by running each one's copy.

Writes `benchmarks/results/main_job.json` and its own page, `docs/benchmarks_main_job.md` with
`docs/benchmarks_main_job.png` (`main_job_report.py`). The page is its own rather than a section
of `docs/benchmarks.md` because `transport.py` rewrites that page whole from its own JSON: two
writers of one file would each need the other's latest result. `docs/benchmarks.md` links here
instead, and `run_all.py` puts the acceptance checks in its report. `--smoke` (300 prompts, one
round) writes `benchmarks/results/main_job_smoke.*` (or into `--out-dir`) and leaves docs/ alone.
Exits 1 if a run failed (skipped runs are not failures).
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import main_job_report  # noqa: E402  (sibling scripts, not a package)
import main_job_stores  # noqa: E402
import run_all  # noqa: E402
import transport  # noqa: E402
from main_job_checks import RUN  # noqa: E402
from main_job_stores import Expected, Mismatch, Store, StoreKind, Stores  # noqa: E402

FLOOR = HERE / "main_job_floor.py"
CLIENTS = ["floor", "jib_openai", "jib_echo"]
STORE_KINDS: list[StoreKind] = ["sqlite", "postgres"]
POSTGRES_ENV = "JIB_TEST_POSTGRES_URL"
SMOKE_PROMPTS = 300


@dataclass
class Usage:
    """What one process used, from its start to its exit."""

    wall_s: float
    cpu_s: float
    user_s: float
    sys_s: float
    peak_rss_mb: float


@dataclass
class Job:
    """What the runs share: the dataset, the stub, the stores, the child's environment."""

    dataset: Path
    prompts: list[str]
    concurrency: int
    stub: str
    stores: Stores
    logs: Path
    timeout: float

    def command(self, client: str, store: Store) -> list[str]:
        """The command line of `client` writing into `store`."""
        if client == "floor":
            return [sys.executable, str(FLOOR), str(self.dataset), self.stub, store.floor_url]
        identifier = (
            "echo!bench" if client == "jib_echo" else f"openai!stub,api_base={self.stub},api_key=x"
        )
        return [
            *(sys.executable, "-m", "jib.cli", "run", identifier),
            *("--prompts", str(self.dataset), "--concurrency", str(self.concurrency)),
            *("--run", RUN, "--store", store.jib_url),
        ]


def prompts_for(count: int) -> list[str]:
    """`count` distinct prompts of a few dozen characters, the same every run."""
    return [
        f"Question {i}: what is {i} times {i % 97 + 3}? Answer in one line." for i in range(count)
    ]


def measure(command: list[str], log: Path, timeout: float) -> tuple[int, Usage]:
    """Run `command` to its end, output to `log`; its exit status and what it used."""
    with log.open("w") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            env=transport.worker_env(peer=False),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, Usage(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
    )


EXPECTED: dict[str, Expected] = {"floor": "floor", "jib_openai": "stub", "jib_echo": "echo"}
"""What each client's store is checked for (see `main_job_checks.py`)."""


def run_once(job: Job, client: str, kind: StoreKind, round_: int) -> dict[str, Any]:
    """One run of `client` into a fresh store of `kind`, checked; its figures.

    Raises:
        Mismatch: the run failed or stored something other than one right answer per prompt.
    """
    log = job.logs / f"{client}-{kind}-{round_}.log"
    with job.stores.fresh(kind) as store:
        load = os.getloadavg()[0]
        before = transport.stub_get(job.stub, "/stub/stats")
        status, usage = measure(job.command(client, store), log, job.timeout)
        after = transport.stub_get(job.stub, "/stub/stats")
        if status != 0:
            tail = log.read_text().strip().splitlines()[-3:] or [f"exit status {status}"]
            raise Mismatch(f"exit status {status}: " + " / ".join(tail)[-400:])
        stored = job.stores.check(EXPECTED[client], store, job.dataset)
    return {
        **asdict(usage),
        "chats": len(job.prompts),
        "stored_chats": stored,
        "stub_cpu_s": after["cpu_s"] - before["cpu_s"],
        "stub_requests": after["completions"] - before["completions"],
        "load_1min": load,
    }


def summary(client: str, kind: StoreKind, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of a client's runs into one kind of store."""
    chats = runs[0]["chats"]
    wall = statistics.median(r["wall_s"] for r in runs)
    cpu = statistics.median(r["cpu_s"] for r in runs)
    return {
        "client": client,
        "store": kind,
        "chats": chats,
        "runs": len(runs),
        "stored_chats": [r["stored_chats"] for r in runs],
        "wall_s": wall,
        "cpu_s": cpu,
        "user_s": statistics.median(r["user_s"] for r in runs),
        "sys_s": statistics.median(r["sys_s"] for r in runs),
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "chats_per_s": chats / wall,
        "cpu_us_per_chat": cpu / chats * 1e6,
        "stub_cpu_s": statistics.median(r["stub_cpu_s"] for r in runs),
        "wall_s_runs": [r["wall_s"] for r in runs],
        "cpu_s_runs": [r["cpu_s"] for r in runs],
        "load_1min_runs": [r["load_1min"] for r in runs],
    }


def measure_all(job: Job, kinds: list[StoreKind], repeat: int) -> dict[str, Any]:
    """Every client into every kind of store, `repeat` rounds taken in turns; medians."""
    runs: dict[tuple[str, StoreKind], list[dict[str, Any]]] = {}
    failed: dict[str, str] = {}
    for round_ in range(1, repeat + 1):
        for kind in kinds:
            for client in CLIENTS:
                key = f"{client}/{kind}"
                if key in failed:
                    continue
                what = f"{client}, {kind}, run {round_}/{repeat}"
                try:
                    result = run_once(job, client, kind, round_)
                except Mismatch as exc:
                    failed[key] = str(exc)
                    print(f"{what}: FAILED ({exc})", flush=True)
                    continue
                runs.setdefault((client, kind), []).append(result)
                print(
                    f"{what}: {result['wall_s']:.2f} s wall, {result['cpu_s']:.2f} s CPU, "
                    f"{result['peak_rss_mb']:.0f} MB, load {result['load_1min']:.2f}",
                    flush=True,
                )
    rows = [summary(client, kind, found) for (client, kind), found in runs.items()]
    return {"rows": rows, "failed": failed}


def postgres_server(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The PostgreSQL server to use, or why PostgreSQL is skipped."""
    url = args.postgres or os.environ.get(POSTGRES_ENV, "").strip() or None
    if args.no_postgres:
        return None, "skipped: --no-postgres"
    if url is None:
        return None, f"skipped: no PostgreSQL (give --postgres URL or set ${POSTGRES_ENV})"
    problem = main_job_stores.postgres_problem(url)
    return (None, f"skipped: no PostgreSQL ({problem})") if problem else (url, None)


@contextmanager
def job_for(args: argparse.Namespace, postgres: str | None) -> Iterator[Job]:
    """The dataset in a temporary folder and the stub running, for the length of the runs."""
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jib-main-job-")))
        prompts = prompts_for(args.prompts)
        dataset = folder / "prompts.txt"
        dataset.write_text("\n".join(prompts) + "\n")
        logs = folder / "logs"
        logs.mkdir()
        stub = stack.enter_context(transport.stub_server())
        yield Job(
            dataset=dataset,
            prompts=prompts,
            concurrency=args.concurrency,
            stub=stub,
            stores=Stores(folder, postgres),
            logs=logs,
            timeout=args.timeout,
        )


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--prompts", type=int, default=20_000, help="prompts in the dataset")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (medians are reported)")
    parser.add_argument("--concurrency", type=int, default=32, help="chats in flight")
    parser.add_argument("--postgres", metavar="URL", help=f"a server (default ${POSTGRES_ENV})")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run at most")
    parser.add_argument("--smoke", action="store_true", help="tiny N for CI; leaves docs/ alone")
    parser.add_argument("--out-dir", type=Path, help="where the JSON, Markdown and PNG go")
    args = parser.parse_args(argv)
    if args.smoke:
        args.prompts, args.repeat = SMOKE_PROMPTS, 1
    return args


def outputs(args: argparse.Namespace) -> tuple[Path, Path]:
    """Where the JSON and the page go."""
    if args.smoke or args.out_dir:
        out_dir = args.out_dir or HERE / "results"
        name = "main_job_smoke" if args.smoke else "main_job"
        return out_dir / f"{name}.json", out_dir / f"{name}.md"
    return HERE / "results" / "main_job.json", ROOT / "docs" / "benchmarks_main_job.md"


def main(argv: list[str] | None = None) -> int:
    """Measure, write the JSON, the page and its chart; 1 if a run failed."""
    args = parse(argv)
    started = time.time()
    # jib as installed: pip writes every module's bytecode at install time, so no run of ours
    # compiles jib's source (with PYTHONDONTWRITEBYTECODE set, every run would, ~0.15 s each).
    compileall.compile_dir(ROOT / "src", quiet=1)
    load_at_start = os.getloadavg()
    postgres, postgres_note = postgres_server(args)
    kinds = [kind for kind in STORE_KINDS if kind == "sqlite" or postgres]
    if postgres_note:
        print(f"PostgreSQL {postgres_note}", flush=True)
    with job_for(args, postgres) as job:
        print(f"stub at {job.stub}; {len(job.prompts):,} prompts; {args.repeat} round(s)")
        result: dict[str, Any] = measure_all(job, kinds, args.repeat)
    given = sys.argv[1:] if argv is None else argv
    result |= {
        "smoke": args.smoke,
        "prompts": args.prompts,
        "concurrency": args.concurrency,
        "repeat": args.repeat,
        "stores": kinds,
        "postgres_note": postgres_note,
        "machine": run_all.machine(load_at_start),
        # A child's ru_maxrss never reads below this (see main_job_stores.py).
        "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "seconds": time.time() - started,
        "command": " ".join(["python benchmarks/main_job.py", *given]),
    }
    result["acceptance"] = main_job_report.acceptance(result)
    json_path, page_path = outputs(args)
    main_job_report.write(result, json_path, page_path)
    for line in main_job_report.console_summary(result):
        print(line)
    if result["failed"]:
        print("failed: " + "; ".join(result["failed"]), file=sys.stderr)
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
