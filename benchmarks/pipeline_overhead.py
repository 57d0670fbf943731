"""How much client CPU the pipeline spends per chat, and the peak memory of a large batch.

Runs `ChatPipeline.run_batch` over N prompts through an in-process generator that answers at
once (so everything measured is jib's own overhead), reports CPU µs per chat and peak RSS, and
writes `benchmarks/results/pipeline_overhead.json`.

    python benchmarks/pipeline_overhead.py [--chats 10000] [--repeat 3]

Goal (issue 2): at most 50 µs per chat and 100 MB peak RSS for 10,000 chats.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import jib
from jib import GeneratedMessage, GenerateParams, Message

RESULTS = Path(__file__).parent / "results" / "pipeline_overhead.json"


class InstantGenerator(jib.Generator):
    """Answers every conversation at once with a fixed message: the cheapest possible provider."""

    async def generate_messages(
        self, messages: Sequence[Sequence[Message]], params: Sequence[GenerateParams]
    ) -> Sequence[GeneratedMessage | BaseException]:
        answer = Message("assistant", "ok")
        return [GeneratedMessage(answer, "stop") for _ in messages]


jib.register_generator("instant", InstantGenerator)


async def one_run(count: int) -> float:
    generator = jib.get_generator("instant!bench,temperature=0.5")
    prompts = [f"prompt number {i}" for i in range(count)]
    start = time.process_time()
    chats = await generator.chat([{"role": "system", "content": "Be brief."}]).run_batch(prompts)
    elapsed = time.process_time() - start
    assert len(chats) == count and chats[-1].content == "ok"
    return elapsed


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    times = [asyncio.run(one_run(args.chats)) for _ in range(args.repeat)]
    best = min(times)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "chats": args.chats,
        "cpu_us_per_chat_best": best / args.chats * 1e6,
        "cpu_us_per_chat_median": sorted(times)[len(times) // 2] / args.chats * 1e6,
        "peak_rss_mb": peak_rss_mb,
        "python": sys.version.split()[0],
    }
    print(f"{'metric':<28}{'value':>12}{'goal':>10}")
    print(f"{'CPU µs per chat (best)':<28}{result['cpu_us_per_chat_best']:>12.1f}{'<= 50':>10}")
    print(f"{'CPU µs per chat (median)':<28}{result['cpu_us_per_chat_median']:>12.1f}{'':>10}")
    print(f"{'peak RSS (MB)':<28}{peak_rss_mb:>12.1f}{'<= 100':>10}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
