"""jib's response cache: a cached re-run against the run that filled the cache, and what the
cache costs a request that misses.

    python benchmarks/response_cache.py [--prompts 10000] [--seed 3000] [--repeat 3]
                                        [--concurrency 32] [--smoke] [--out-dir DIR]

Writes a dataset of `--prompts` distinct prompts, starts the stub OpenAI-compatible server
(`benchmarks/openai_stub.py`, its own process, 127.0.0.1, a free port), and runs, each in a fresh
process measured whole (wall time, and CPU time from `os.wait4`), in turns, `--repeat` rounds
(medians reported). Each round starts from a copy of one seeded SQLite store: before the rounds
(unmeasured), `jib run --cache` of `--seed` other prompts against the same generator filled its
cache (and stored those chats), so every lookup searches a populated index, as a cache in use
does:

- `plain`: `python -m jib.cli run 'openai!stub,api_base=…,api_key=x,max_connections=32'
  --prompts FILE --concurrency 32 --run plain --store STORE`: no cache, every request sent;
- `filling`: the same with `--cache --run filling`: every request is looked up, misses (the
  cache holds only the seed's answers), is sent, and its answer kept. This is the uncached run
  of the acceptance check, and beside `plain` it gives what the cache adds to a request that
  misses (the lookup, the key, the write);
- `cached`: the same again with `--run cached`: every request hits, none is sent (the stub's
  own count of completions is checked to be 0), every chat stored.

A warm-up run (5 prompts, unmeasured) compiles every module to bytecode first, as an installed
jib has it (`PYTHONDONTWRITEBYTECODE` is dropped for the runs). The three runs are taken twice
per round: with the stub answering at once (`instant`: the
client's CPU is all there is to wait for), and with the stub answering after `--latency-ms`
(default 50; its `delay-MS` model), as a model that takes time would (`model`).

Acceptance (issue 20): `cached` wall time ≤ 1/5 of `filling`'s in the same round, and the
cache adds ≤ 10 % client CPU per request that misses (`filling` CPU / `plain` CPU − 1 with the
stub answering at once, both whole processes, so interpreter start-up and storing the chats are
in both).

Writes `benchmarks/results/response_cache.json` and puts its section into `docs/benchmarks.md`
(between the markers `transport_report.py` keeps when it rewrites that page). `--smoke` (300
prompts, one round) writes `benchmarks/results/response_cache_smoke.json` (or into
`--out-dir`) and leaves docs/ alone. Exits 1 if a run failed or stored something else.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import run_all  # noqa: E402  (sibling scripts, not a package)
import transport  # noqa: E402
from main_job import measure, prompts_for  # noqa: E402
from response_cache_report import put_section, section  # noqa: E402

CLIENTS = ["plain", "filling", "cached"]
SMOKE_PROMPTS = 300
SMOKE_SEED = 300
LATENCY_MS = 50
"""The stub's answer time in the second scenario (`--latency-ms`)."""
MAX_RATIO = 0.2
MAX_OVERHEAD = 0.10
PAGE = ROOT / "docs" / "benchmarks.md"


def command(
    client: str, stub: str, dataset: Path, store: Path, concurrency: int, latency_ms: int
) -> list[str]:
    """The `jib run` command line of `client` (the stub's `delay-MS` model for a latency);
    every client but `plain` uses the cache."""
    cache = [] if client == "plain" else ["--cache"]
    model = f"delay-{latency_ms}" if latency_ms else "stub"
    return [
        # max_connections: the generator's own cap (10 by default) would hold the run below
        # `--concurrency`, which only bounds prompts in flight.
        *(sys.executable, "-m", "jib.cli", "run", f"openai!{model},{_options(stub, concurrency)}"),
        *("--prompts", str(dataset), "--concurrency", str(concurrency)),
        *("--run", client, "--store", str(store), "--no-progress", *cache),
    ]


def _options(stub: str, concurrency: int) -> str:
    return f"api_base={stub},api_key=x,max_connections={concurrency}"


def seed_prompts(count: int) -> list[str]:
    """`count` distinct prompts, none of them one of `prompts_for`'s."""
    return [f"Seed {i}: name a prime number above {i * 7 + 11}." for i in range(count)]


def seeded_store(
    stub: str, folder: Path, count: int, concurrency: int, latencies: list[int]
) -> Path:
    """A store whose cache holds the answers to `count` seed prompts, for the generator of each
    scenario (the stub's latency of each; unmeasured); each round's runs start from a copy."""
    dataset = folder / "seed.txt"
    dataset.write_text("".join(f"{p}\n" for p in seed_prompts(count)))
    store = folder / "seed.db"
    for latency_ms in latencies:
        log = folder / f"seed-{latency_ms}.log"
        args = command("seed", stub, dataset, store, concurrency, latency_ms)
        status, _ = measure(args, log, timeout=1800)
        if status != 0:
            raise RuntimeError(f"seeding the cache failed: {log.read_text()[-2000:]}")
    for leftover in ("-wal", "-shm"):  # a closed SQLite store has none; a copy needs none
        if Path(f"{store}{leftover}").exists():
            raise RuntimeError(f"the seeded store left {store}{leftover} behind")
    return store


def check_store(store: Path, run: str, count: int, cached: bool) -> None:
    """One chat per prompt, none failed, the stub's answer; marked as cached when `cached`."""
    from jib.storage import open_store

    with open_store(store) as chat_store:
        chats = chat_store.query(run=run)
    if len(chats) != count:
        raise RuntimeError(f"{run}: {len(chats)} chats stored, expected {count}")
    for chat in chats:
        if chat.failed or chat.content != "Hello from the stub.":
            raise RuntimeError(f"{run}: a chat failed or holds {chat.content!r}")
        if bool(chat.extra.get("response_cache")) != cached:
            raise RuntimeError(f"{run}: a chat is {'not ' if cached else ''}marked as cached")


def one_round(
    stub: str,
    dataset: Path,
    count: int,
    concurrency: int,
    folder: Path,
    number: int,
    seed: Path,
    latency_ms: int = 0,
) -> dict[str, dict[str, Any]]:
    """`plain` into one copy of the seeded store; `filling` then `cached` into another."""
    figures: dict[str, dict[str, Any]] = {}
    for client in CLIENTS:
        name = f"{number}-{latency_ms}"
        store = folder / (f"plain-{name}.db" if client == "plain" else f"cache-{name}.db")
        if client != "cached":
            shutil.copyfile(seed, store)
        before = transport.stub_get(stub, "/stub/stats")
        log = folder / f"{client}-{name}.log"
        status, usage = measure(
            command(client, stub, dataset, store, concurrency, latency_ms), log, timeout=1800
        )
        after = transport.stub_get(stub, "/stub/stats")
        if status != 0:
            tail = log.read_text().strip().splitlines()[-3:]
            raise RuntimeError(f"{client}: exit status {status}: {' / '.join(tail)}")
        sent = after["completions"] - before["completions"]
        expected = 0 if client == "cached" else count
        if sent != expected:
            raise RuntimeError(f"{client}: the stub answered {sent} requests, expected {expected}")
        check_store(store, client, count, cached=client == "cached")
        figures[client] = {"wall_s": usage.wall_s, "cpu_s": usage.cpu_s, "requests": sent}
        print(
            f"round {number + 1} {client} (stub latency {latency_ms} ms): {usage.wall_s:.2f} s "
            f"wall, {usage.cpu_s:.2f} s CPU, {sent} requests",
            flush=True,
        )
    return figures


def warm_up(stub: str, folder: Path, concurrency: int) -> None:
    """Run each command once on a few prompts, unmeasured, so every module is compiled to
    bytecode (as in an installed jib) before the runs are timed."""
    dataset = folder / "warm-up.txt"
    dataset.write_text("".join(f"{p}\n" for p in prompts_for(5)))
    for client in ("plain", "filling"):
        store = folder / f"warm-up-{client}.db"
        status, _ = measure(
            command(client, stub, dataset, store, concurrency, 0), folder / "warm-up.log", 300
        )
        if status != 0:
            raise RuntimeError(f"the warm-up run failed: {(folder / 'warm-up.log').read_text()}")


def medians_of(runs: list[dict[str, dict[str, Any]]], count: int) -> dict[str, Any]:
    """Per client: median wall and CPU seconds, CPU µs per chat; and the wall-time ratio
    cached / filling and the CPU overhead filling / plain − 1 (each the median of its rounds)."""
    medians = {
        client: {
            "wall_s": statistics.median(r[client]["wall_s"] for r in runs),
            "cpu_s": statistics.median(r[client]["cpu_s"] for r in runs),
            "cpu_us_per_chat": statistics.median(r[client]["cpu_s"] for r in runs) / count * 1e6,
        }
        for client in CLIENTS
    }
    return {
        "clients": medians,
        "cached_over_filling_wall": statistics.median(
            r["cached"]["wall_s"] / r["filling"]["wall_s"] for r in runs
        ),
        "cache_cpu_overhead": statistics.median(
            r["filling"]["cpu_s"] / r["plain"]["cpu_s"] - 1 for r in runs
        ),
    }


def summarize(
    rounds: list[dict[str, dict[str, dict[str, Any]]]], count: int, latency_ms: int
) -> dict[str, Any]:
    """Medians per scenario, and the acceptance checks."""
    scenarios = {name: medians_of([r[name] for r in rounds], count) for name in rounds[0]}
    acceptance = []
    for name, figures in scenarios.items():
        ratio = figures["cached_over_filling_wall"]
        answering = "at once" if name == "instant" else f"after {latency_ms} ms, as a model does"
        acceptance.append(
            {
                "check": f"wall time, cached re-run / the run that filled the cache (the stub "
                f"answering {answering})",
                "measured": f"{ratio:.2f}× (1/{1 / ratio:.1f})",
                "bound": f"≤ {MAX_RATIO:g}× (1/5)",
                "ok": ratio <= MAX_RATIO,
            }
        )
    overhead = scenarios["instant"]["cache_cpu_overhead"]
    acceptance.append(
        {
            "check": "client CPU the cache adds to a request that misses (key, lookup, write)",
            "measured": f"{overhead * 100:+.1f} %",
            "bound": f"≤ {MAX_OVERHEAD * 100:.0f} %",
            "ok": overhead <= MAX_OVERHEAD,
        }
    )
    return {"scenarios": scenarios, "acceptance": acceptance}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument(
        "--seed",
        type=int,
        default=3000,
        help="other prompts whose answers the cache holds before the measured runs",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--latency-ms",
        type=int,
        default=LATENCY_MS,
        help="a second scenario where the stub answers after this long (0: none)",
    )
    parser.add_argument("--smoke", action="store_true", help="300 prompts, one round, no docs")
    parser.add_argument("--out-dir", type=Path, help="write the JSON here (docs/ left alone)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.prompts, args.repeat = min(args.prompts, SMOKE_PROMPTS), 1
        args.seed = min(args.seed, SMOKE_SEED)
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure, write the JSON and the docs section; 1 if a run failed."""
    args = parse(argv)
    started = time.time()
    load_at_start = os.getloadavg()
    given = sys.argv[1:] if argv is None else argv
    # The runs are timed as a user's installed jib runs: its bytecode written once (below).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    rounds: list[dict[str, dict[str, dict[str, Any]]]] = []
    failure = None
    with tempfile.TemporaryDirectory(prefix="jib-response-cache-") as temporary:
        folder = Path(temporary)
        dataset = folder / "prompts.txt"
        dataset.write_text("".join(f"{p}\n" for p in prompts_for(args.prompts)))
        with transport.stub_server() as stub:
            print(f"stub at {stub}; {args.prompts:,} prompts; {args.repeat} round(s)", flush=True)
            try:
                warm_up(stub, folder, args.concurrency)
                latencies = [0, args.latency_ms] if args.latency_ms else [0]
                seed = seeded_store(stub, folder, args.seed, args.concurrency, latencies)
                for number in range(args.repeat):
                    taken = {
                        "instant": one_round(
                            *(stub, dataset, args.prompts, args.concurrency, folder, number),
                            seed,
                        )
                    }
                    if args.latency_ms:
                        taken["model"] = one_round(
                            *(stub, dataset, args.prompts, args.concurrency, folder, number),
                            seed,
                            latency_ms=args.latency_ms,
                        )
                    rounds.append(taken)
            except RuntimeError as exc:
                failure = str(exc)
    if failure is not None:
        print(f"failed: {failure}", file=sys.stderr)
        return 1
    result: dict[str, Any] = summarize(rounds, args.prompts, args.latency_ms) | {
        "rounds_figures": rounds,
        "rounds": args.repeat,
        "prompts": args.prompts,
        "seed": args.seed,
        "concurrency": args.concurrency,
        "latency_ms": args.latency_ms,
        "smoke": args.smoke,
        "machine": run_all.machine(load_at_start),
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "seconds": time.time() - started,
        "command": " ".join(["python benchmarks/response_cache.py", *given]),
    }
    out_dir = args.out_dir or HERE / "results"
    name = "response_cache_smoke" if args.smoke else "response_cache"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    if not args.smoke and args.out_dir is None:
        put_section(PAGE, section(result))
    for check in result["acceptance"]:
        verdict = "pass" if check["ok"] else "FAIL"
        print(f"{check['check']}: {check['measured']} (bound {check['bound']}): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
