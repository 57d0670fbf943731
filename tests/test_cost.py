"""What a generation cost: prices the user sets, LiteLLM's bundled price map, or unknown."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from jib import get_generator
from jib.cost import Price, PriceError, Prices
from jib.messages import Usage
from jib.testing import EchoGenerator

USAGE = Usage(input_tokens=2_000, output_tokens=500)


def test_a_price_set_for_provider_and_model_gives_the_cost() -> None:
    prices = Prices.parse(["echo!demo=0.15,0.60"])

    assert prices.cost(EchoGenerator(model="demo"), USAGE) == pytest.approx(0.0006)


def test_provider_and_model_wins_over_the_bare_model() -> None:
    prices = Prices.parse(["demo=1,1", "echo!demo=2,2", "other=9,9"])

    assert prices.price_of(EchoGenerator(model="demo")) == Price(2, 2)
    assert prices.price_of(get_generator("fixed!demo")) == Price(1, 1)
    assert prices.price_of(EchoGenerator(model="unpriced")) is None


def test_a_later_price_and_a_merged_table_win() -> None:
    base = Prices.parse(["a=1,1", "b=1,1"])
    override = Prices.parse(["b=2,3", "b=4,5"])

    merged = base.merged(override)

    assert merged.price_of(EchoGenerator(model="a")) == Price(1, 1)
    assert merged.price_of(EchoGenerator(model="b")) == Price(4, 5)


def test_unknown_price_or_usage_is_none() -> None:
    assert Prices().cost(EchoGenerator(model="demo"), USAGE) is None
    assert Prices.parse(["demo=1,1"]).cost(EchoGenerator(model="demo"), None) is None


def test_litellm_models_are_priced_from_the_bundled_map_without_the_network() -> None:
    generator = get_generator("openai/gpt-4o-mini").load()  # LiteLLM as jib imports it
    litellm = sys.modules["litellm"]  # the bundled map, nothing downloaded
    entry = litellm.model_cost["gpt-4o-mini"]
    expected = 2_000 * entry["input_cost_per_token"] + 500 * entry["output_cost_per_token"]

    cost = Prices().cost(generator, USAGE)

    assert cost == pytest.approx(expected)
    assert cost is not None and cost > 0


def test_a_litellm_model_missing_from_the_map_has_no_cost() -> None:
    generator = get_generator("openai/my-own-model,api_base=http://127.0.0.1:9/v1")

    assert Prices().cost(generator, USAGE) is None
    assert Prices.parse(["openai/my-own-model=1,2"]).cost(generator, USAGE) == pytest.approx(0.003)


class MeteredGenerator(EchoGenerator):
    """A provider that publishes its prices: $1 per million input and $2 per million output."""

    def list_price(self, usage: Usage) -> float | None:
        return (usage.input_tokens * 1 + usage.output_tokens * 2) / 1_000_000


def test_a_provider_prices_its_own_calls_and_a_price_you_set_wins() -> None:
    generator = MeteredGenerator(model="demo")

    assert Prices().cost(generator, USAGE) == pytest.approx(0.003)
    assert Prices.parse(["demo=0,0"]).cost(generator, USAGE) == 0
    assert EchoGenerator(model="demo").list_price(USAGE) is None


def test_pricing_other_generators_never_imports_litellm() -> None:
    code = (
        "import sys\n"
        "from jib.cost import Prices\n"
        "from jib.messages import Usage\n"
        "from jib.testing import EchoGenerator\n"
        "assert Prices().cost(EchoGenerator(model='demo'), Usage(1, 1)) is None\n"
        "assert 'litellm' not in sys.modules, 'litellm was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("gpt-4o-mini", "'gpt-4o-mini' is not MODEL=IN,OUT"),
        ("gpt-4o-mini=0.15", "is not MODEL=IN,OUT (US dollars per million input and output"),
        ("=1,2", "'=1,2' is not MODEL=IN,OUT"),
        ("m=1,x", "--price: 'x' is not a number"),
        ("m=-1,2", "a price is a number of dollars >= 0, not '-1'"),
        ("m=nan,2", "a price is a number of dollars >= 0, not 'nan'"),
    ],
)
def test_malformed_prices_say_what_was_expected(item: str, expected: str) -> None:
    with pytest.raises(PriceError) as caught:
        Prices.parse([item])

    assert expected in str(caught.value)


def test_a_prices_file_skips_comments_and_names_a_bad_line(tmp_path: Path) -> None:
    good = tmp_path / "prices.txt"
    good.write_text("# my models\n\necho!demo = 1.5, 3\nhttp!bot=0,0\n")
    bad = tmp_path / "bad.txt"
    bad.write_text("a=1,1\n\nb=1\n")

    prices = Prices.from_file(good)

    assert prices.price_of(EchoGenerator(model="demo")) == Price(1.5, 3)
    with pytest.raises(PriceError, match=r"bad.txt line 3: 'b=1' is not MODEL=IN,OUT"):
        Prices.from_file(bad)
    with pytest.raises(PriceError, match=r"cannot read the prices file '.*missing.txt'"):
        Prices.from_file(tmp_path / "missing.txt")


def test_an_ollama_model_is_free_and_no_ollama_server_is_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # LiteLLM would price it by asking OLLAMA_API_BASE's /api/show, blocking, whatever api_base
    # says: here a listener that would never answer.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        monkeypatch.setenv("OLLAMA_API_BASE", f"http://127.0.0.1:{listener.getsockname()[1]}")
        generator = get_generator("ollama_chat/qwen3:0.6b,api_base=http://127.0.0.1:9")

        assert Prices().cost(generator, Usage(input_tokens=1000, output_tokens=500)) == 0.0
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
