"""jib against its peer rigging: pipeline overhead, import time and identifier round trip.

Creates (or reuses) a separate virtualenv `benchmarks/.venv-peers` holding `rigging` at the
pinned version below, then measures, each in a fresh subprocess (inside a network namespace with
no network, via `unshare -n`, where the machine allows it):

- pipeline overhead: `run_batch` of N chats (one system message plus one user prompt each,
  `temperature=0.5` in the identifier) through an in-process generator that answers at once,
  reporting client CPU µs per chat (`time.process_time`, best and median of `--repeat` runs) and
  peak RSS, exactly as `benchmarks/pipeline_overhead.py` measures jib. rigging is measured in its
  default `mode="parallel"` and in `mode="merged"` (one batch call, which is what jib does). If a
  probe run shows rigging would need more than `--budget` seconds of CPU for one run of N chats,
  rigging and jib are both measured at a tenth of N and the report says so;
- `import rigging` against `import pydantic` in the peers venv, and jib's core
  (`from jib import Generator, get_generator, ChatPipeline`, since `import jib` alone is lazy)
  against `import pydantic` in jib's venv, taking turns (median of `--runs` fresh processes
  each, after one warm-up);
- identifier round trip: `get_generator(IDENTIFIER)` then `.to_identifier()`, µs per call (best
  of `--loops` timed loops of `--calls` calls, wall and CPU) for jib (in jib's venv) and
  rigging (in the peers venv).

Nothing calls a model: the generators answer in process and the identifier's LiteLLM generator is
built but never used. Writes `benchmarks/results/peers.json`.

    python benchmarks/peers.py [--chats 10000] [--repeat 3] [--runs 5] [--calls 2000] [--loops 5]
                               [--budget 180]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "peers.json"
PEERS_VENV = HERE / ".venv-peers"
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
JIB_PYTHON = ROOT / ".venv" / "bin" / "python"
RIGGING_VERSION = "3.3.5"
IDENTIFIER = "openai/gpt-4o,temperature=0.5,max_tokens=64"
HEAVY = ["litellm", "torch", "transformers", "vllm", "httpx", "dreadnode", "logfire", "openai"]
# No price-map download by litellm, no model hub traffic, no telemetry.
QUIET_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
}


# --- workers: run inside the venv being measured ---------------------------------------------


def _batch_result(times: list[float], chats: int, **extra: Any) -> dict[str, Any]:
    """Summarise timed runs the way `benchmarks/pipeline_overhead.py` does."""
    import resource

    ordered = sorted(times)
    return {
        "chats": chats,
        "runs": len(times),
        "cpu_s_per_run": times,
        "cpu_us_per_chat_best": ordered[0] / chats * 1e6,
        "cpu_us_per_chat_median": ordered[len(ordered) // 2] / chats * 1e6,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "python": sys.version.split()[0],
        **extra,
    }


def worker_rigging_batch(chats: int, repeat: int, mode: str) -> dict[str, Any]:
    """Time rigging's `ChatPipeline.run_batch` over an instant in-process generator."""
    import asyncio
    from collections.abc import Sequence

    import rigging

    # rigging is installed only in the peers venv: to mypy run from jib's venv it is `Any`.
    class InstantGenerator(rigging.Generator):  # type: ignore[misc]
        """Answers every conversation at once with a fixed message."""

        async def generate_messages(
            self,
            messages: Sequence[Sequence[rigging.Message]],
            params: Sequence[rigging.GenerateParams],
        ) -> Sequence[rigging.GeneratedMessage | BaseException]:
            answer = rigging.Message("assistant", "ok")
            return [rigging.GeneratedMessage(message=answer, stop_reason="stop") for _ in messages]

    rigging.register_generator("instant", InstantGenerator)
    shape: list[str] = []

    async def one_run() -> float:
        generator = rigging.get_generator("instant!bench,temperature=0.5")
        prompts = [f"prompt number {i}" for i in range(chats)]
        start = time.process_time()
        result = await generator.chat([{"role": "system", "content": "Be brief."}]).run_batch(
            prompts, mode=mode
        )
        elapsed = time.process_time() - start
        assert len(result) == chats and result[-1].last.content == "ok"
        shape[:] = [message.role for message in result[-1].all]
        return elapsed

    times = [asyncio.run(one_run()) for _ in range(repeat)]
    return _batch_result(
        times, chats, library="rigging", version=rigging.__version__, mode=mode, roles=shape
    )


def worker_jib_batch(chats: int, repeat: int) -> dict[str, Any]:
    """Time jib with the very code of `benchmarks/pipeline_overhead.py`, without its file write."""
    import asyncio

    sys.path.insert(0, str(HERE))
    import jib
    import pipeline_overhead

    times = [asyncio.run(pipeline_overhead.one_run(chats)) for _ in range(repeat)]
    return _batch_result(times, chats, library="jib", version=jib.__version__)


def worker_imports(runs: int) -> dict[str, Any]:
    """Fresh-process import times of jib and rigging, each against pydantic in its own venv.

    The four statements take turns in each of `runs` rounds (after one warm-up round), so jib and
    rigging meet the same load on a shared machine; medians and bests are reported.
    """
    # `import jib` is lazy (PEP 562); rigging imports everything at once, so jib's side loads
    # its whole core to compare like with like.
    cases = {
        "jib": (JIB_PYTHON, "from jib import Generator, get_generator, ChatPipeline"),
        "pydantic_jib_venv": (JIB_PYTHON, "import pydantic"),
        "rigging": (PEERS_PYTHON, "import rigging"),
        "pydantic_peers_venv": (PEERS_PYTHON, "import pydantic"),
    }

    def fresh(python: Path, statement: str) -> float:
        start = time.perf_counter()
        subprocess.run([str(python), "-c", statement], check=True)
        return time.perf_counter() - start

    for python, module in cases.values():  # warm the filesystem and bytecode caches
        fresh(python, module)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, (python, module) in cases.items():
            times[name].append(fresh(python, module))
    result: dict[str, Any] = {"runs": runs}
    for name, values in times.items():
        result[name] = {
            "median_ms": statistics.median(values) * 1000,
            "best_ms": min(values) * 1000,
        }
    for name, pydantic in [("jib", "pydantic_jib_venv"), ("rigging", "pydantic_peers_venv")]:
        python, module = cases[name]
        check = f"import sys; {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
        loaded = subprocess.run(
            [str(python), "-c", check], check=True, capture_output=True, text=True
        ).stdout.strip()
        result[name]["heavy_modules_loaded"] = [m for m in loaded.split(",") if m]
        result[name]["ratio_to_pydantic"] = (
            result[name]["median_ms"] / result[pydantic]["median_ms"]
        )
    return result


def worker_identifier(library: str, calls: int, repeat: int) -> dict[str, Any]:
    """µs per `get_generator(IDENTIFIER).to_identifier()` round trip, best of `repeat` loops."""
    lib: Any = __import__(library)
    written = lib.get_generator(IDENTIFIER).to_identifier()
    for _ in range(min(calls, 200)):  # warm-up: lazy provider imports, pydantic caches
        lib.get_generator(IDENTIFIER).to_identifier()
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(repeat):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            lib.get_generator(IDENTIFIER).to_identifier()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return {
        "library": library,
        "identifier": IDENTIFIER,
        "written_back": written,
        "round_trips_exactly": written == IDENTIFIER,
        "calls": calls,
        "runs": repeat,
        "us_per_call_best": min(wall) / calls * 1e6,
        "us_per_call_median": statistics.median(wall) / calls * 1e6,
        "cpu_us_per_call_best": min(cpu) / calls * 1e6,
        "heavy_modules_loaded": [m for m in HEAVY if m in sys.modules],
    }


def worker_main(argv: list[str]) -> None:
    """Entry point of a measuring subprocess: run one worker and print its result as JSON."""
    parser = argparse.ArgumentParser(prog="peers.py worker")
    parser.add_argument("task", choices=["rigging-batch", "jib-batch", "imports", "identifier"])
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mode", default="parallel")
    parser.add_argument("--module", default="rigging")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)
    if args.task == "rigging-batch":
        result = worker_rigging_batch(args.chats, args.repeat, args.mode)
    elif args.task == "jib-batch":
        result = worker_jib_batch(args.chats, args.repeat)
    elif args.task == "imports":
        result = worker_imports(args.repeat)
    else:
        result = worker_identifier(args.module, args.calls, args.repeat)
    # The last stdout line is the result; anything a library prints comes before it.
    print(json.dumps(result))


# --- driver: runs in jib's venv --------------------------------------------------------------


def network_isolation() -> list[str]:
    """Prefix that runs a command with no network at all, or nothing if the machine forbids it."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True, check=False)
    return [unshare, "-n"] if probe.returncode == 0 else []


def ensure_peers_venv() -> str:
    """Create `benchmarks/.venv-peers` with the pinned rigging unless it is already there."""
    check = "import importlib.metadata as m; print(m.version('rigging'))"
    if not PEERS_PYTHON.exists():
        print(f"creating {PEERS_VENV.relative_to(ROOT)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    # As `python -m venv` does itself from Python 3.13: keep the venv out of git.
    (PEERS_VENV / ".gitignore").write_text("*\n")
    found = subprocess.run(
        [str(PEERS_PYTHON), "-c", check], capture_output=True, text=True, check=False
    ).stdout.strip()
    if found == RIGGING_VERSION:
        return found
    print(f"installing rigging=={RIGGING_VERSION} into the peers venv", flush=True)
    subprocess.run(
        [str(PEERS_PYTHON), "-m", "pip", "install", "-q", f"rigging=={RIGGING_VERSION}"],
        check=True,
    )
    return subprocess.run(
        [str(PEERS_PYTHON), "-c", check], capture_output=True, text=True, check=True
    ).stdout.strip()


def run_worker(python: Path, isolation: list[str], *args: str) -> dict[str, Any]:
    """Run `peers.py worker ARGS` with `python` in a fresh process and return its JSON result."""
    env = {**os.environ, **QUIET_ENV}
    command = [*isolation, str(python), str(Path(__file__).resolve()), "worker", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def choose_chats(
    chats: int, budget: float, isolation: list[str]
) -> tuple[int, bool, dict[str, Any]]:
    """Probe rigging at a tenth of `chats`; use that tenth if a full run would be too slow."""
    probe_chats = max(chats // 10, 1)
    probe = run_worker(
        PEERS_PYTHON, isolation, "rigging-batch", f"--chats={probe_chats}", "--repeat=1"
    )
    projected = probe["cpu_s_per_run"][0] * chats / probe_chats
    probe["projected_cpu_s_for_full_run"] = projected
    if projected > budget:
        return probe_chats, True, probe
    return chats, False, probe


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure jib and rigging side by side, print a table and write the JSON results."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        worker_main(argv[1:])
        return {}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chats", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per import timing")
    parser.add_argument("--calls", type=int, default=2000, help="round trips per timed loop")
    parser.add_argument("--loops", type=int, default=5, help="timed loops of round trips")
    parser.add_argument(
        "--budget",
        type=float,
        default=180.0,
        help="seconds of CPU one rigging run of --chats may take before a tenth is used instead",
    )
    args = parser.parse_args(argv)

    started = time.time()
    version = ensure_peers_venv()
    isolation = network_isolation()
    print(f"rigging {version}; network isolation: {'unshare -n' if isolation else 'none'}")

    chats, reduced, probe = choose_chats(args.chats, args.budget, isolation)
    if reduced:
        print(
            f"rigging would take ~{probe['projected_cpu_s_for_full_run']:.0f} s of CPU per run of "
            f"{args.chats} chats (> {args.budget:.0f} s): measuring both at {chats} chats"
        )
    batch_args = [f"--chats={chats}", f"--repeat={args.repeat}"]
    pipeline = {
        "requested_chats": args.chats,
        "chats": chats,
        "reduced": reduced,
        "probe": probe,
        "jib": run_worker(JIB_PYTHON, isolation, "jib-batch", *batch_args),
        "rigging_parallel": run_worker(
            PEERS_PYTHON, isolation, "rigging-batch", *batch_args, "--mode=parallel"
        ),
        "rigging_merged": run_worker(
            PEERS_PYTHON, isolation, "rigging-batch", *batch_args, "--mode=merged"
        ),
    }
    imports = run_worker(JIB_PYTHON, isolation, "imports", f"--repeat={args.runs}")
    identifier_args = [f"--calls={args.calls}", f"--repeat={args.loops}"]
    identifier = {
        "jib": run_worker(JIB_PYTHON, isolation, "identifier", "--module=jib", *identifier_args),
        "rigging": run_worker(
            PEERS_PYTHON, isolation, "identifier", "--module=rigging", *identifier_args
        ),
    }
    result = {
        "rigging_version": version,
        "network_isolated": bool(isolation),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
        "seconds": time.time() - started,
        "pipeline_overhead": pipeline,
        "import_time": imports,
        "identifier_round_trip": identifier,
    }
    print_table(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return result


def print_table(result: dict[str, Any]) -> None:
    """Print the headline figures of one `main` run."""
    pipeline = result["pipeline_overhead"]
    jib, parallel = pipeline["jib"], pipeline["rigging_parallel"]
    merged = pipeline["rigging_merged"]
    label = f"{pipeline['chats']} chats" + (" (reduced)" if pipeline["reduced"] else "")
    print(f"\n{'pipeline overhead, ' + label:<44}{'µs/chat best':>14}{'median':>10}{'RSS MB':>9}")
    for name, row in [("jib", jib), ("rigging parallel", parallel), ("rigging merged", merged)]:
        print(
            f"{name:<44}{row['cpu_us_per_chat_best']:>14.1f}"
            f"{row['cpu_us_per_chat_median']:>10.1f}{row['peak_rss_mb']:>9.1f}"
        )
    imports = result["import_time"]
    print(f"\n{'import time, interleaved fresh processes':<44}{'median ms':>14}{'best ms':>10}")
    for name in ("jib", "pydantic_jib_venv", "rigging", "pydantic_peers_venv"):
        row = imports[name]
        print(f"{name:<44}{row['median_ms']:>14.1f}{row['best_ms']:>10.1f}")
    for name in ("jib", "rigging"):
        heavy = ", ".join(imports[name]["heavy_modules_loaded"]) or "none"
        print(f"{'heavy modules loaded by ' + name:<44}{heavy}")
    ident = result["identifier_round_trip"]
    print(f"\n{'identifier round trip (best)':<44}{'µs/call':>14}{'CPU µs':>10}")
    for name in ("jib", "rigging"):
        row = ident[name]
        print(f"{name:<44}{row['us_per_call_best']:>14.1f}{row['cpu_us_per_call_best']:>10.1f}")


if __name__ == "__main__":
    main()
