"""`jib run` measures each chat: latency, cost (set prices or LiteLLM's map), and a summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from jib.storage import open_store
from tests.cli.conftest import JibRunner, assert_one_clean_error_line
from tests.support.fault_server import RunningFaultServer


def lines(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(f"{text}\n" for text in texts))
    return path


def test_every_chat_stores_its_latency_and_the_summary_shows_p50_and_p95(
    jib: JibRunner, fault_server: RunningFaultServer, tmp_path: Path, default_store: Path
) -> None:
    fault_server.state.reset(delay=0.25)
    prompts = lines(tmp_path / "p.txt", ["one", "two", "three"])
    identifier = f"openai/test-model,api_base={fault_server.url},api_key=k"

    result = jib("run", identifier, "-f", str(prompts), "-r", "lat", "-c", "1")

    assert result.code == 0, result.stderr
    with open_store(default_store) as store:
        chats = store.query(run="lat", rebuild_generator=False)
    assert len(chats) == 3
    assert all(c.latency_ms is not None and 250 <= c.latency_ms < 10_000 for c in chats)
    header, row = result.stdout.splitlines()[1:3]
    assert header.split()[:6] == ["generator", "ok", "failed", "p50", "p95", "tokens"]
    p50, p95 = row.split()[3:5]
    assert p50.endswith("ms") and 250 <= float(p50.removesuffix("ms")) < 10_000
    assert p95.endswith("ms") and float(p95.removesuffix("ms")) >= float(p50.removesuffix("ms"))


def test_litellm_models_are_priced_from_the_local_map_and_unknown_ones_stay_empty(
    jib: JibRunner, fault_server: RunningFaultServer, tmp_path: Path, default_store: Path
) -> None:
    from jib.generator.litellm._runtime import import_litellm

    prices = import_litellm().model_cost["gpt-4o-mini"]
    prompts = lines(tmp_path / "p.txt", ["how much is this"])
    known = f"openai/gpt-4o-mini,api_base={fault_server.url}"
    unknown = f"openai/my-own-model,api_base={fault_server.url}"

    result = jib(
        "run", known, unknown, "-f", str(prompts), "-r", "cost", env_update={"OPENAI_API_KEY": "k"}
    )

    assert result.code == 0, result.stderr
    with open_store(default_store) as store:
        [priced] = store.query(run="cost", model="openai/gpt-4o-mini", rebuild_generator=False)
        [unpriced] = store.query(run="cost", model="openai/my-own-model", rebuild_generator=False)
    assert priced.usage is not None
    expected = (
        priced.usage.input_tokens * prices["input_cost_per_token"]
        + priced.usage.output_tokens * prices["output_cost_per_token"]
    )
    assert priced.cost_usd == pytest.approx(expected)
    assert unpriced.cost_usd is None
    summary = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:4]}
    assert summary[known][-3].startswith("$")
    assert summary[unknown][-3] == "–"


def test_prices_from_the_option_and_from_the_prices_file(
    jib: JibRunner, tmp_path: Path, default_store: Path
) -> None:
    prompts = lines(tmp_path / "p.txt", ["four words right here"])
    prices = tmp_path / "prices.txt"
    prices.write_text("# per million tokens\necho!a=1,2\necho!b=3,4\n")

    result = jib(
        "run",
        "echo!a",
        "echo!b",
        "-f",
        str(prompts),
        "-r",
        "p",
        "--price",
        "echo!b=10,20",
        env_update={"JIB_PRICES": str(prices)},
    )

    assert result.code == 0, result.stderr
    with open_store(default_store) as store:
        a = store.query(run="p", model="echo!a", rebuild_generator=False)[0].cost_usd
        b = store.query(run="p", model="echo!b", rebuild_generator=False)[0].cost_usd
    assert a == pytest.approx((4 * 1 + 4 * 2) / 1e6)
    assert b == pytest.approx((4 * 10 + 4 * 20) / 1e6)  # --price wins over the file
    assert "$0.000120" in result.stdout
    runs = jib("runs", "--json").json()
    assert runs[0]["cost_usd"] == pytest.approx(a + b)


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--price", "echo!demo"], {}, "--price: 'echo!demo' is not MODEL=IN,OUT"),
        (["--price", "echo!demo=1,x"], {}, "--price: 'x' is not a number"),
        ([], {"JIB_PRICES": "missing.txt"}, "cannot read the prices file 'missing.txt'"),
    ],
)
def test_bad_prices_are_one_line(
    jib: JibRunner, prompts_file: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    result = jib("run", "echo!demo", "-f", str(prompts_file), *args, env_update=env)

    assert_one_clean_error_line(result, expected)
    assert result.code == 2


def test_the_summary_fits_80_columns_and_never_cuts_an_identifier(
    jib: JibRunner, prompts_file: Path
) -> None:
    long = "fixed!demo,text=a-fairly-long-answer,max_tokens=10,temperature=0.5,top_p=0.9,seed=7"

    result = jib(
        "run", "echo!demo", long, "-f", str(prompts_file), "--resume", "-r", "w",
        env_update={"COLUMNS": "80"},
    )  # fmt: skip

    assert result.code == 0, result.stderr
    output = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in output), output
    for part in long.split(","):
        assert any(part in line for line in output), part
    assert any(line.split()[:2] == ["ok", "failed"] for line in output)
    assert any(line.split()[:3] == ["8", "0", "0"] for line in output)  # ok, failed, skipped
