"""TransformersGenerator against plain transformers on the tiny test model.

Generates 32 prompts x 16 new tokens (greedy) three ways on one model object:

- jib batched: `generator.complete("").run_batch(prompts)` (one padded `generate` call);
- jib one by one: 32 awaited `generator.complete(prompt)` calls;
- raw transformers: `model.generate` on the same prompts padded by the tokenizer.

Prints a table of the best and median of `--repeat` timed runs (taking turns, after a warm-up)
and the ratios to raw transformers, and writes `benchmarks/results/local_models.json`. The ratios
that count use the best times: on a shared machine, the median mostly measures the neighbours.

    HF_HUB_OFFLINE=1 python benchmarks/local_models.py [--repeat 15]

jib generates on its own worker thread and raw transformers on the main thread, so two OpenMP
thread teams take turns; on a small, busy machine their spin-waiting slows whichever runs next.
`OMP_WAIT_POLICY=PASSIVE` removes that effect from the medians.

Goal (issue 5): jib batched within 1.2x of raw transformers, and clearly faster than one by one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "local_models.json"
PROMPTS = 32
NEW_TOKENS = 16
SENTENCE = (
    "the quick brown fox jumps over the lazy dog hello world this is a tiny model for tests "
    "what is the capital of france paris one two three four five six seven eight nine ten"
)


def make_prompts() -> list[str]:
    """32 prompts of 3 to 18 words, so the batch needs padding."""
    words = SENTENCE.split(" ")
    return [" ".join(words[i % 7 : i % 7 + 3 + i % 16]) for i in range(PROMPTS)]


def interleaved(
    runs: dict[str, Callable[[], list[str]]], repeat: int
) -> tuple[dict[str, list[float]], dict[str, list[str]]]:
    """Time each run `repeat` times, taking turns, after one warm-up each.

    Taking turns spreads drift of a shared machine (other processes, CPU frequency) over all
    methods instead of penalising whichever happens to run during a busy spell.
    """
    outputs = {name: run() for name, run in runs.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for turn in range(repeat):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            start = time.perf_counter()
            outputs[name] = runs[name]()
            times[name].append(time.perf_counter() - start)
    return times, outputs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    import torch
    import transformers
    from tests.support.tiny_model import build_tiny_model

    from jib import GenerateParams
    from jib.generator.transformers import TransformersGenerator

    with tempfile.TemporaryDirectory() as directory:
        path = build_tiny_model(Path(directory) / "tiny")
        model: Any = transformers.AutoModelForCausalLM.from_pretrained(path)
        model.eval()
        tokenizer: Any = transformers.AutoTokenizer.from_pretrained(path)

    prompts = make_prompts()
    params = GenerateParams(temperature=0, max_tokens=NEW_TOKENS)
    generator = TransformersGenerator.from_obj(model=model, tokenizer=tokenizer, batch_size=PROMPTS)

    def jib_batched() -> list[str]:
        async def run() -> list[str]:
            completions = await generator.complete("").run_batch(prompts, [params] * PROMPTS)
            return [c.content for c in completions]

        return asyncio.run(run())

    def jib_one_by_one() -> list[str]:
        async def run() -> list[str]:
            return [(await generator.complete(p, params)).content for p in prompts]

        return asyncio.run(run())

    def raw_transformers() -> list[str]:
        batch = tokenizer(prompts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            output = model.generate(
                **batch,
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        width = batch["input_ids"].shape[1]
        return [str(tokenizer.decode(row[width:], skip_special_tokens=True)) for row in output]

    runs = {
        "raw transformers generate": raw_transformers,
        "jib batched": jib_batched,
        "jib one by one": jib_one_by_one,
    }
    times, outputs = interleaved(runs, args.repeat)
    best = {name: min(values) for name, values in times.items()}
    median = {name: statistics.median(values) for name, values in times.items()}
    raw = "raw transformers generate"
    rows = [
        {
            "method": name,
            "best_seconds": round(best[name], 4),
            "median_seconds": round(median[name], 4),
            "tokens_per_second": round(PROMPTS * NEW_TOKENS / best[name], 1),
            "vs_raw_best": round(best[name] / best[raw], 2),
            "vs_raw_median": round(median[name] / median[raw], 2),
        }
        for name in runs
    ]
    report = {
        "prompts": PROMPTS,
        "new_tokens": NEW_TOKENS,
        "repeat": args.repeat,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "jib_batched_same_text_as_raw": outputs["jib batched"] == outputs[raw],
        "results": rows,
        "batched_vs_raw": round(best["jib batched"] / best[raw], 2),
        "one_by_one_vs_batched": round(best["jib one by one"] / best["jib batched"], 2),
    }

    print(f"{PROMPTS} prompts x {NEW_TOKENS} new tokens, tiny model, {args.repeat} timed runs each")
    print(
        f"{'method':<28}{'best s':>9}{'median s':>10}{'tokens/s':>11}"
        f"{'vs raw (best)':>15}{'vs raw (median)':>17}"
    )
    for row in rows:
        print(
            f"{row['method']:<28}{row['best_seconds']:>9.4f}{row['median_seconds']:>10.4f}"
            f"{row['tokens_per_second']:>11.1f}{row['vs_raw_best']:>14.2f}x"
            f"{row['vs_raw_median']:>16.2f}x"
        )
    print(
        f"jib batched / raw: {report['batched_vs_raw']}x; "
        f"one by one / batched: {report['one_by_one_vs_batched']}x (best times); "
        f"same text as raw: {report['jib_batched_same_text_as_raw']}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return report


if __name__ == "__main__":
    main()
