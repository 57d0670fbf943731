"""Wall time of `import jib` in a fresh process, against a bare `import pydantic`.

    python benchmarks/import_time.py [--runs 5]

Reports the median of N fresh-process runs for each, their ratio (goal from issue 2: at most 2.5),
and which heavy modules `import jib` pulled in (should be none). Writes
`benchmarks/results/import_time.json`.
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


def fresh_import_seconds(statement: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)

    fresh_import_seconds("import jib")  # warm the filesystem and bytecode caches
    pydantic = statistics.median(fresh_import_seconds("import pydantic") for _ in range(args.runs))
    jib = statistics.median(fresh_import_seconds("import jib") for _ in range(args.runs))
    check = f"import sys, jib; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", check], check=True, capture_output=True, text=True
    ).stdout.strip()
    result = {
        "runs": args.runs,
        "import_pydantic_ms": pydantic * 1000,
        "import_jib_ms": jib * 1000,
        "ratio": jib / pydantic,
        "heavy_modules_loaded": [m for m in loaded.split(",") if m],
    }
    print(f"{'import pydantic (median)':<28}{result['import_pydantic_ms']:>10.1f} ms")
    print(f"{'import jib (median)':<28}{result['import_jib_ms']:>10.1f} ms")
    print(f"{'ratio (goal <= 2.5)':<28}{result['ratio']:>10.2f}")
    print(f"{'heavy modules loaded':<28}{', '.join(result['heavy_modules_loaded']) or 'none':>10}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
