"""The capped child process of the LiteLLM size-bound tests (test_litellm_bounds.py).

    python -m tests.security.litellm_bounds_child ORIGIN ROUTE HEADROOM_MB

Imports jib and LiteLLM, warms two generators of ROUTE (`openai`, `hosted_vllm`, `ollama_chat`)
at the hostile server ORIGIN up with normal answers (one with the default bound, one with
`SMALL_BOUND`), then caps its own address space (`RLIMIT_AS`) at what it has mapped then plus
HEADROOM_MB, and runs every case of `CASES`: each a batch (or two concurrent streams) of one
hostile or control prompt and one normal prompt. Prints one JSON object: the baseline (RSS and
address space after warming up), and per case the first item's outcome, whether the second item
got its normal answer, the CPU seconds the case took, and the peak RSS since the baseline
(`VmHWM`, reset then: `ru_maxrss` would include the forked parent's).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
from typing import Any

MIB = 1 << 20
DEFAULT_BOUND = 16 * MIB
"""`max_response_bytes`' default, which most cases run with."""
SMALL_BOUND = 1 * MIB
"""The bound of the cases that make LiteLLM parse a stream chunk by chunk up to the bound: at
about half a millisecond (Ollama's: three) per chunk, the default bound would take a minute."""

CASES: dict[str, tuple[str, str, int]] = {
    # name: (how, prompt, max_response_bytes); how is "chat", "stream" or "text"
    "chat-bomb": ("chat", "bomb", DEFAULT_BOUND),
    "chat-line": ("chat", "line", DEFAULT_BOUND),
    "chat-big": ("chat", "big", DEFAULT_BOUND),
    "chat-declared": ("chat", "declared", DEFAULT_BOUND),
    "stream-bomb": ("stream", "bomb", DEFAULT_BOUND),
    "stream-line": ("stream", "line", DEFAULT_BOUND),
    "stream-big": ("stream", "big", SMALL_BOUND),
    "stream-tiny": ("stream", "tiny", SMALL_BOUND),
    "text-bomb": ("text", "bomb", DEFAULT_BOUND),
    "text-line": ("text", "line", DEFAULT_BOUND),
    "control-chat": ("chat", "hello", DEFAULT_BOUND),
    "control-stream": ("stream", "hello", DEFAULT_BOUND),
    "control-text": ("text", "hello", DEFAULT_BOUND),
    "control-chat-gzip": ("chat", "hello gzip", DEFAULT_BOUND),
    "control-stream-gzip": ("stream", "hello gzip", DEFAULT_BOUND),
    "control-chat-under": ("chat", f"under:{DEFAULT_BOUND}", DEFAULT_BOUND),
    "control-chat-under-gzip": ("chat", f"under:{DEFAULT_BOUND} gzip", DEFAULT_BOUND),
    "control-stream-under": ("stream", f"under:{SMALL_BOUND}", SMALL_BOUND),
}


def identifier(origin: str, route: str, bound: int) -> str:
    """The identifier a user would write for ROUTE at ORIGIN, bounded by `bound`."""
    if route == "openai":
        server = f"openai/m,api_base={origin}/v1,api_key=sk-test-key"
    elif route == "hosted_vllm":
        server = f"hosted_vllm/m,api_base={origin}/v1"
    else:
        server = f"ollama_chat/m,api_base={origin}"
    return server if bound == DEFAULT_BOUND else f"{server},max_response_bytes={bound}"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_mb() -> float:
    """The peak RSS since `_reset_peak()`."""
    return _status_mb("VmHWM")


def _reset_peak() -> None:
    """Start measuring the peak RSS afresh (Linux: writing 5 to clear_refs resets VmHWM)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise LookupError(field)


def _outcome(record: Any) -> dict[str, Any]:
    error = record.error
    return {
        "failed": record.failed,
        "error_type": None if error is None else type(error).__name__,
        "jib_error": error is not None and type(error).__module__.startswith("jib"),
        "message": None if error is None else str(error),
        "content_length": None if record.failed else len(record.content),
        "content_start": None if record.failed else record.content[:40],
    }


async def run_case(generator: Any, how: str, prompt: str) -> dict[str, Any]:
    """One batch: `prompt` and a normal prompt, side by side."""
    if how == "stream":

        async def drain(text: str) -> Any:
            stream = generator.chat(text).stream(on_failed="include")
            async for _ in stream:
                pass
            return stream.chat

        first, second = await asyncio.gather(drain(prompt), drain("neighbour"))
    else:
        pipeline = generator.chat() if how == "chat" else generator.complete("")
        first, second = await pipeline.run_batch([prompt, "neighbour"], on_failed="include")
    return {
        "first": _outcome(first),
        "neighbour_ok": not second.failed and second.content == "echo: neighbour",
    }


async def main(origin: str, route: str, headroom_mb: int) -> dict[str, Any]:
    import jib

    generators = {
        b: jib.get_generator(identifier(origin, route, b)) for b in (DEFAULT_BOUND, SMALL_BOUND)
    }
    for generator in generators.values():
        for how in ("chat", "stream", "text"):  # first use: clients, threads, caches
            await run_case(generator, how, "warm up")
    baseline = {
        "rss_mb": _status_mb("VmRSS"),
        "mapped_mb": _status_mb("VmSize"),
        "peak_before_mb": _status_mb("VmHWM"),
    }
    _reset_peak()
    cap = int((baseline["mapped_mb"] + headroom_mb) * MIB)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    results: dict[str, Any] = {}
    for name, (how, prompt, bound) in CASES.items():
        before = _cpu()
        try:
            result = await run_case(generators[bound], how, prompt)
        except BaseException as exc:  # the test reports it; a MemoryError among them
            result = {"raised": f"{type(exc).__name__}: {exc}"[:500]}
        result["cpu_s"] = _cpu() - before
        result["peak_rss_mb"] = _peak_mb()
        results[name] = result
    return {
        "baseline": baseline,
        "cases": results,
    }


if __name__ == "__main__":
    origin_arg, route_arg, headroom_arg = sys.argv[1:4]
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    print(json.dumps(asyncio.run(main(origin_arg, route_arg, int(headroom_arg)))))
