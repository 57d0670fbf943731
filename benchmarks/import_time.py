"""Wall time of `import jib` in a fresh process, against a bare `import pydantic`.

    python benchmarks/import_time.py [--runs 5]

`import jib` loads its public names on first use (PEP 562), as `import pydantic` does, so the
issue-2 goal (at most 2.5x `import pydantic`) is met by the bare import. So that the lazy
import hides nothing, it also times what using jib costs: the core (`from jib import Generator,
get_generator, ChatPipeline`, which builds the pydantic machinery) against
`from pydantic import BaseModel`, and a first `get_generator(...)`. Medians of N fresh
processes; writes `benchmarks/results/import_time.json`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "import_time.json"
HEAVY = [
    "litellm",
    "torch",
    "transformers",
    "vllm",
    "httpx",
    "jinja2",
    "sqlalchemy",
    "typer",
    "rich",
]
STATEMENTS = {
    "import_pydantic": "import pydantic",
    "import_jib": "import jib",
    "pydantic_basemodel": "from pydantic import BaseModel",
    "jib_core": "from jib import Generator, get_generator, ChatPipeline",
    "jib_first_use": "import jib; jib.get_generator('echo!demo').to_identifier()",
}


def fresh_seconds(statement: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)

    for statement in STATEMENTS.values():
        fresh_seconds(statement)  # warm the filesystem and bytecode caches
    samples: dict[str, list[float]] = {name: [] for name in STATEMENTS}
    for _ in range(args.runs):  # take turns, so every statement meets the same machine load
        for name, statement in STATEMENTS.items():
            samples[name].append(fresh_seconds(statement))
    ms = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    check = f"import sys, jib; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", check], check=True, capture_output=True, text=True
    ).stdout.strip()
    result = {
        "runs": args.runs,
        "import_pydantic_ms": ms["import_pydantic"],
        "import_jib_ms": ms["import_jib"],
        "ratio": ms["import_jib"] / ms["import_pydantic"],
        "pydantic_basemodel_ms": ms["pydantic_basemodel"],
        "jib_core_ms": ms["jib_core"],
        "core_ratio": ms["jib_core"] / ms["pydantic_basemodel"],
        "jib_first_use_ms": ms["jib_first_use"],
        "heavy_modules_loaded": [m for m in loaded.split(",") if m],
    }
    rows = [
        ("import pydantic", ms["import_pydantic"]),
        ("import jib", ms["import_jib"]),
        ("from pydantic import BaseModel", ms["pydantic_basemodel"]),
        ("jib core (Generator, ...)", ms["jib_core"]),
        ("import jib + get_generator", ms["jib_first_use"]),
    ]
    for label, value in rows:
        print(f"{label:<34}{value:>10.1f} ms (median of {args.runs})")
    print(f"{'import jib / import pydantic':<34}{result['ratio']:>10.2f}   (goal <= 2.5)")
    print(f"{'jib core / BaseModel':<34}{result['core_ratio']:>10.2f}")
    print(f"{'heavy modules loaded':<34}{', '.join(result['heavy_modules_loaded']) or 'none':>10}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
