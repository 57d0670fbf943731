"""jib's transports against raw aiohttp, httpx, the openai SDK, LiteLLM and rigging, side by side.

    python benchmarks/transport.py [--requests 2000] [--repeat 3] [--concurrency 8 64]
                                   [--image-requests 300] [--streams 30] [--rss-chats 5000]
                                   [--import-runs 5]
                                   [--peer-requests N] [--no-rigging] [--clients NAME ...]
                                   [--smoke] [--out-dir DIR]

Starts the stub OpenAI-compatible server (`benchmarks/openai_stub.py`) in its own process on
127.0.0.1, then measures, each client in a fresh subprocess per run (so imports and memory do not
mix; the code is in `benchmarks/transport_clients.py`):

- client CPU µs per request (the client process's CPU time over the requests), requests/s and
  peak RSS, for `--requests` chats at each `--concurrency` (requests in flight), median of
  `--repeat` runs taken in turns, for raw aiohttp, httpx, the openai SDK, `litellm.acompletion`,
  jib `openai!`, jib's LiteLLM path (`openai/…`), jib `http!`, and rigging (the seed's own system,
  in `benchmarks/.venv-peers`, created by `benchmarks/peers.py`'s code) through its LiteLLM and
  HTTP generators;
- the same for `--image-requests` chats at 8 in flight that each carry one 1 MiB image and a
  short text (issue 18): raw aiohttp posting a body it encoded once up front, and jib `openai!`
  sending `Message("user", [text, image])` with one `ContentImageUrl` shared by every chat; the
  stub counts the body bytes it received, to show the image went out with every request;
- time to first streamed token: the delay from the stub writing the first chunk of a slow stream
  to the caller receiving the first delta, median and p95 over `--streams` streams, for
  `openai!` and the LiteLLM path (raw aiohttp and litellm direct as references);
- the peak RSS of one `run_batch` of `--rss-chats` chats on `openai!` (and `http!` and the
  LiteLLM path for comparison);
- the cold import time of each library (median of `--import-runs` fresh processes).

A client this checkout cannot run yet (jib's `openai!` or streaming before they land) is skipped
with a note. Writes `benchmarks/results/transport.json`, `docs/benchmarks.md` (tables, ratios to
raw aiohttp, the acceptance checks of issues 11 and 18) and `docs/benchmarks.png`.
`--peer-requests` lowers N for rigging alone (it spends tens of ms per request). `--smoke` is a
quick check for CI (50 requests at 8 in flight, 20 image chats, one run, no rigging, under a
minute on a quiet machine) that writes its JSON, Markdown and chart to
`benchmarks/results/transport_smoke.*` (or `--out-dir`) and leaves docs/ alone. Exits 1 if a
client failed (skipped clients are not failures).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import peers  # noqa: E402  (a sibling script, not a package)
import run_all  # noqa: E402
import transport_clients  # noqa: E402
import transport_report  # noqa: E402

STUB = HERE / "openai_stub.py"
CLIENTS_SCRIPT = HERE / "transport_clients.py"
RIGGING_CLIENTS = ["rigging_litellm", "rigging_http"]
JIB_CLIENTS = ["raw_aiohttp", "httpx", "openai_sdk", "litellm", "jib_openai", "jib_litellm"]
JIB_CLIENTS += ["jib_http"]
STREAM_CLIENTS = ["raw_aiohttp", "jib_openai", "jib_litellm", "litellm"]
RSS_CLIENTS = ["jib_openai", "jib_http", "jib_litellm"]
IMAGE_CLIENTS = list(transport_clients.IMAGE_CLIENTS)
IMAGE_CONCURRENCY = 8
IMPORTS = {
    "raw_aiohttp": "import aiohttp",
    "httpx": "import httpx",
    "openai_sdk": "import openai",
    "litellm": "import litellm",
    "jib": "import jib",
    "jib_openai": "import jib, jib._wire.http1; jib.get_generator('openai!m')",
    "jib_litellm": "import litellm, jib; jib.get_generator('openai/m')",
    "jib_http": "import httpx, jib.generator.http",
    "rigging": "import rigging",
}
# Imports only a checkout with this module can time; without it they are skipped, not failed.
IMPORT_NEEDS = {"jib_openai": ("jib.generator.openai", "openai!")}


@dataclass
class Outcome:
    """One worker's result, or why there is none."""

    result: dict[str, Any] | None
    skipped: str | None = None
    failed: str | None = None


@dataclass
class Tally:
    """The clients of one measurement that were skipped or failed, and why."""

    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def done(self, client: str) -> bool:
        return client in self.skipped or client in self.failed

    def result(self, what: str, client: str, outcome: Outcome) -> dict[str, Any] | None:
        """The worker's result; or None, with the skip or failure noted and printed."""
        if outcome.skipped:
            self.skipped[client] = outcome.skipped
            print(f"{what}: skipped ({outcome.skipped})", flush=True)
        elif outcome.failed or outcome.result is None:
            self.fail(what, client, outcome.failed or "no result")
        return None if self.done(client) else outcome.result

    def fail(self, what: str, client: str, why: str) -> None:
        self.failed[client] = why
        print(f"{what}: FAILED ({why})", flush=True)

    def summary(self, **measured: Any) -> dict[str, Any]:
        return {**measured, "skipped": self.skipped, "failed": self.failed}


# --- the stub ----------------------------------------------------------------------------------


@contextmanager
def stub_server() -> Iterator[str]:
    """Run the stub in its own process; yield its base URL (…/v1)."""
    process = subprocess.Popen(
        [sys.executable, str(STUB), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"the stub did not start (it printed {line!r})")
        yield line.removeprefix("listening on ") + "/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


def stub_get(base: str, path: str, method: str = "GET") -> Any:
    root = base.removesuffix("/v1")
    request = urllib.request.Request(root + path, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


# --- workers -----------------------------------------------------------------------------------


def worker_env(peer: bool) -> dict[str, str]:
    """The environment of a worker: quiet libraries, and this checkout's jib first on the path."""
    env = {**os.environ, **peers.QUIET_ENV}
    if not peer:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
    return env


def run_worker(client: str, *args: str, timeout: float = 1800) -> Outcome:
    """Run `transport_clients.py ARGS` for `client` in a fresh process."""
    peer = client.startswith("rigging")
    python = str(peers.PEERS_PYTHON) if peer else sys.executable
    command = [python, str(CLIENTS_SCRIPT), args[0], client, *args[1:]]
    try:
        done = subprocess.run(
            command,
            env=worker_env(peer),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Outcome(None, failed=f"no result within {timeout:.0f} s")
    if done.returncode == transport_clients.UNAVAILABLE:
        return Outcome(None, skipped=done.stderr.strip().splitlines()[-1])
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        return Outcome(None, failed=tail[0][-300:])
    return Outcome(json.loads(done.stdout.strip().splitlines()[-1]))


def percentile(values: list[float], fraction: float) -> float:
    """The `fraction` quantile (nearest rank) of `values`."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


# --- the measurements --------------------------------------------------------------------------


def measure_batches(
    base: str,
    clients: list[str],
    concurrencies: list[int],
    requests: int,
    peer_requests: int,
    repeat: int,
) -> dict[str, Any]:
    """Every client at every concurrency, `repeat` times in turns; medians per cell."""
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    tally = Tally()
    for round_ in range(repeat):
        for concurrency in concurrencies:
            for client in clients:
                if tally.done(client):
                    continue
                count = peer_requests if client in RIGGING_CLIENTS else requests
                before = stub_get(base, "/stub/stats")
                outcome = run_worker(
                    client,
                    "batch",
                    f"--url={base}",
                    f"--requests={count}",
                    f"--concurrency={concurrency}",
                )
                after = stub_get(base, "/stub/stats")
                what = f"{client} C={concurrency} run {round_ + 1}/{repeat}"
                result = tally.result(what, client, outcome)
                if result is None:
                    continue
                result["stub_cpu_s"] = after["cpu_s"] - before["cpu_s"]
                result["stub_requests"] = after["requests"] - before["requests"]
                runs.setdefault((client, concurrency), []).append(result)
                print(
                    f"{what}: {result['cpu_s'] / count * 1e6:,.0f} µs CPU/request, "
                    f"{count / result['wall_s']:,.0f} requests/s, "
                    f"{result['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
    cells = []
    for (client, concurrency), found in runs.items():
        count = found[0]["requests"]
        cells.append(
            {
                "client": client,
                "concurrency": concurrency,
                "requests": count,
                "runs": len(found),
                "cpu_us_per_request": statistics.median(r["cpu_s"] for r in found) / count * 1e6,
                "cpu_us_per_request_runs": [r["cpu_s"] / count * 1e6 for r in found],
                "requests_per_s": statistics.median(count / r["wall_s"] for r in found),
                "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in found),
                "stub_cpu_us_per_request": statistics.median(
                    r["stub_cpu_s"] / max(r["stub_requests"], 1) for r in found
                )
                * 1e6,
            }
        )
    return tally.summary(requests=requests, peer_requests=peer_requests, repeat=repeat, cells=cells)


def measure_image(base: str, clients: list[str], requests: int, repeat: int) -> dict[str, Any]:
    """Chats carrying a 1 MiB image, every client `repeat` times in turns; medians per client.

    A run fails when the stub received less per request than the image's base64: the image
    did not go out with every chat.
    """
    runs: dict[str, list[dict[str, Any]]] = {}
    tally = Tally()
    image_bytes = transport_clients.IMAGE_SIZE
    least = (image_bytes + 2) // 3 * 4  # the image's base64, which every body holds
    for round_ in range(repeat):
        for client in clients:
            if tally.done(client):
                continue
            before = stub_get(base, "/stub/stats")
            outcome = run_worker(
                client,
                "image",
                f"--url={base}",
                f"--requests={requests}",
                f"--concurrency={IMAGE_CONCURRENCY}",
            )
            after = stub_get(base, "/stub/stats")
            what = f"image chats, {client} run {round_ + 1}/{repeat}"
            result = tally.result(what, client, outcome)
            if result is None:
                continue
            received = after["completions"] - before["completions"]
            result["stub_cpu_s"] = after["cpu_s"] - before["cpu_s"]
            result["stub_requests"] = received
            sent = after["completion_bytes"] - before["completion_bytes"]
            result["body_bytes_per_request"] = sent / max(received, 1)
            if result["body_bytes_per_request"] < least:
                tally.fail(
                    what,
                    client,
                    f"the stub received {result['body_bytes_per_request']:,.0f} bytes per "
                    f"request, less than the image's {least:,} bytes of base64",
                )
                continue
            runs.setdefault(client, []).append(result)
            print(
                f"{what}: {result['cpu_s'] / requests * 1e6:,.0f} µs CPU/request, "
                f"{requests / result['wall_s']:,.0f} requests/s, "
                f"{result['body_bytes_per_request'] / 1e6:.2f} MB/request, "
                f"{result['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    rows = [
        {
            "client": client,
            "requests": requests,
            "runs": len(found),
            "cpu_us_per_request": statistics.median(r["cpu_s"] for r in found) / requests * 1e6,
            "cpu_us_per_request_runs": [r["cpu_s"] / requests * 1e6 for r in found],
            "requests_per_s": statistics.median(requests / r["wall_s"] for r in found),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in found),
            "body_bytes_per_request": statistics.median(r["body_bytes_per_request"] for r in found),
            "stub_cpu_us_per_request": statistics.median(
                r["stub_cpu_s"] / max(r["stub_requests"], 1) for r in found
            )
            * 1e6,
        }
        for client, found in runs.items()
    ]
    return tally.summary(
        requests=requests,
        concurrency=IMAGE_CONCURRENCY,
        repeat=repeat,
        image_bytes=image_bytes,
        rows=rows,
    )


def measure_streams(base: str, clients: list[str], streams: int) -> dict[str, Any]:
    """Time from the stub sending each slow stream's first chunk to the caller's first delta."""
    rows = []
    tally = Tally()
    for client in clients:
        what = f"first delta, {client}"
        outcome = run_worker(client, "stream", f"--url={base}", f"--streams={streams}")
        result = tally.result(what, client, outcome)
        if result is None:
            continue
        sent = stub_get(base, "/stub/first-chunks")
        delays = [
            (received - sent[key]) * 1000
            for key, received in result["received"].items()
            if key in sent
        ]
        if len(delays) != streams:
            tally.fail(what, client, f"the stub recorded {len(delays)} of {streams} first chunks")
            continue
        row = {
            "client": client,
            "streams": streams,
            "median_ms": statistics.median(delays),
            "p95_ms": percentile(delays, 0.95),
            "max_ms": max(delays),
        }
        rows.append(row)
        print(f"{what}: median {row['median_ms']:.2f} ms, p95 {row['p95_ms']:.2f} ms", flush=True)
    return tally.summary(rows=rows)


def measure_rss(base: str, clients: list[str], chats: int) -> dict[str, Any]:
    """Peak RSS of one `run_batch` of `chats` chats per jib client."""
    rows = []
    tally = Tally()
    for client in clients:
        what = f"run_batch RSS, {client}"
        outcome = run_worker(client, "rss", f"--url={base}", f"--chats={chats}")
        result = tally.result(what, client, outcome)
        if result is not None:
            rows.append({"client": client, **result})
            print(
                f"{what}: {result['peak_rss_mb']:.0f} MB for {chats} chats in "
                f"{result['wall_s']:.1f} s",
                flush=True,
            )
    return tally.summary(chats=chats, rows=rows)


def measure_imports(names: list[str], runs: int, warm_up: bool) -> dict[str, Any]:
    """Wall time of a fresh `python -c STATEMENT` per library, in turns; medians."""
    notes: dict[str, str] = {}
    for name, (module, what) in IMPORT_NEEDS.items():
        probe = f"import importlib.util as u, sys; sys.exit(u.find_spec({module!r}) is None)"
        found = subprocess.run([sys.executable, "-c", probe], env=worker_env(False), check=False)
        if name in names and found.returncode != 0:
            notes[name] = f"jib {what}: not available in this checkout"
            names = [n for n in names if n != name]
    samples: dict[str, list[float]] = {name: [] for name in names}
    failures: dict[str, str] = {}
    # A first round, not counted, warms the filesystem and bytecode caches.
    for round_ in range(0 if warm_up else 1, runs + 1):
        for name in names:
            if name in failures:
                continue
            peer = name == "rigging"
            python = str(peers.PEERS_PYTHON) if peer else sys.executable
            start = time.perf_counter()
            done = subprocess.run(
                [python, "-c", IMPORTS[name]],
                env=worker_env(peer),
                capture_output=True,
                text=True,
                check=False,
            )
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                failures[name] = (done.stderr.strip().splitlines() or ["failed"])[-1][-300:]
            elif round_:
                samples[name].append(elapsed)
    rows = [
        {
            "name": name,
            "statement": IMPORTS[name],
            "median_ms": statistics.median(values) * 1000,
            "best_ms": min(values) * 1000,
            "runs": len(values),
        }
        for name, values in samples.items()
        if values
    ]
    for row in rows:
        print(f"import, {row['name']}: {row['median_ms']:.0f} ms (median)", flush=True)
    return {"rows": rows, "skipped": notes, "failed": failures}


def rigging_version(wanted: bool) -> tuple[str | None, str | None]:
    """rigging's version in the peers venv (created if needed), or why it is not measured."""
    if not wanted:
        return None, "rigging not measured (--no-rigging or --smoke)"
    try:
        return peers.ensure_peers_venv(), None
    except (subprocess.CalledProcessError, OSError) as exc:
        return None, f"rigging could not be installed into benchmarks/.venv-peers: {exc}"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000, help="chats per client and run")
    parser.add_argument(
        "--peer-requests", type=int, help="chats per rigging run (default: --requests)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per client (median)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 64])
    parser.add_argument(
        "--image-requests",
        type=int,
        default=300,
        help="chats carrying an image, per client and run",
    )
    parser.add_argument("--streams", type=int, default=30, help="slow streams per client")
    parser.add_argument("--rss-chats", type=int, default=5000, help="chats in the RSS run_batch")
    parser.add_argument("--import-runs", type=int, default=5, help="fresh processes per import")
    parser.add_argument("--no-rigging", action="store_true", help="skip the peers venv")
    parser.add_argument("--clients", nargs="+", metavar="NAME", help="only these clients")
    parser.add_argument("--smoke", action="store_true", help="tiny N for CI; leaves docs/ alone")
    parser.add_argument("--out-dir", type=Path, help="where the JSON, Markdown and PNG go")
    args = parser.parse_args(argv)
    if args.smoke:
        args.requests, args.repeat, args.concurrency, args.streams = 50, 1, [8], 3
        args.image_requests = 20
        args.rss_chats, args.import_runs, args.no_rigging = 100, 1, True
    if args.peer_requests is None:
        args.peer_requests = args.requests
    known = [*JIB_CLIENTS, *RIGGING_CLIENTS]
    for name in args.clients or []:
        if name not in known:
            parser.error(f"unknown client {name!r}; choose from {', '.join(known)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure everything, write the JSON, the Markdown and the chart; 1 if a client failed."""
    args = parse(argv)
    started = time.time()
    chosen = args.clients or [*JIB_CLIENTS, *RIGGING_CLIENTS]
    version, rigging_note = rigging_version(
        not args.no_rigging and any(c in RIGGING_CLIENTS for c in chosen)
    )
    clients = [c for c in chosen if version or c not in RIGGING_CLIENTS]
    load_at_start = os.getloadavg()
    result: dict[str, Any] = {
        "smoke": args.smoke,
        "rigging_version": version,
        "rigging_note": rigging_note,
        "concurrency": args.concurrency,
    }
    with stub_server() as base:
        print(f"stub at {base}; clients: {', '.join(clients)}", flush=True)
        result["batch"] = measure_batches(
            base, clients, args.concurrency, args.requests, args.peer_requests, args.repeat
        )
        in_scope = [c for c in IMAGE_CLIENTS if c in chosen]
        result["image"] = measure_image(base, in_scope, args.image_requests, args.repeat)
        in_scope = [c for c in STREAM_CLIENTS if c in chosen]
        result["first_delta"] = measure_streams(base, in_scope, args.streams)
        in_scope = [c for c in RSS_CLIENTS if c in chosen]
        result["run_batch_rss"] = measure_rss(base, in_scope, args.rss_chats)
    imports = [name for name in IMPORTS if name != "rigging" or version]
    result["imports"] = measure_imports(imports, args.import_runs, warm_up=not args.smoke)
    result["machine"] = run_all.machine(load_at_start)
    result["date"] = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    result["seconds"] = time.time() - started
    result["command"] = "python benchmarks/transport.py" + (
        " " + " ".join(argv if argv is not None else sys.argv[1:])
        if (argv if argv is not None else sys.argv[1:])
        else ""
    )

    out_dir = args.out_dir or (HERE / "results" if args.smoke else None)
    name = "transport_smoke" if args.smoke else "transport"
    json_path = (out_dir or HERE / "results") / f"{name}.json"
    markdown_path = out_dir / f"{name}.md" if out_dir else ROOT / "docs" / "benchmarks.md"
    chart_path = markdown_path.with_suffix(".png")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    chart_note = transport_report.write_chart(result, chart_path)
    page = transport_report.markdown(result, chart_path.name, chart_note, markdown_path.parent)
    markdown_path.write_text(page)
    for path in (json_path, markdown_path, chart_path):
        if path.exists():
            print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    failed = [
        f"{part}: {client}"
        for part in ("batch", "image", "first_delta", "run_batch_rss", "imports")
        for client in result[part]["failed"]
    ]
    if failed:
        print("failed: " + "; ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
