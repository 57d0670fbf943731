"""What a generation cost, in US dollars: from prices you set, else LiteLLM's bundled price map.

Prices are per million tokens, input then output, and written `MODEL=IN,OUT`:

>>> from jib.cost import Prices
>>> from jib.messages import Usage
>>> from jib.testing import EchoGenerator
>>> prices = Prices.parse(["echo!demo=0.15,0.60"])
>>> prices.cost(EchoGenerator(model="demo"), Usage(input_tokens=1000, output_tokens=500))
0.00045

`MODEL` is matched against a generator's `provider!model` (`echo!demo`, `http!my-endpoint`),
then its bare model (`gpt-4o-mini`, `openai/gpt-4o-mini`). A price you set wins. Without one,
the generator is asked (`Generator.list_price`): a `LiteLLMGenerator` prices a call from the
price map LiteLLM ships with (read from disk, never downloaded: jib sets
`LITELLM_LOCAL_MODEL_COST_MAP`), importing LiteLLM only then. Anything else has no known cost:
`None`, never a guess.

A prices file (`Prices.from_file`, the `jib` command line's `$JIB_PRICES`) holds one `MODEL=IN,OUT`
per line; blank lines and lines starting with `#` are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from jib.errors import JibError
from jib.generator.base import Generator
from jib.messages import Usage
from jib.registry import provider_name_for

__all__ = ["BATCH_API_PRICE_FACTOR", "PRICES_ENV_VAR", "Price", "PriceError", "Prices"]

PRICES_ENV_VAR = "JIB_PRICES"
"""The environment variable the command line reads a prices file from."""

BATCH_API_PRICE_FACTOR = 0.5
"""What a request answered through a provider's batch API costs, as a share of its normal
price (OpenAI's and Anthropic's batch APIs both charge half)."""

_PER = 1_000_000
_MOST_KNOWN = 64


class PriceError(JibError, ValueError):
    """A price could not be read; the message says where and what was expected."""


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million input tokens and per million output tokens."""

    input: float
    output: float

    def cost(self, usage: Usage) -> float:
        """What `usage` costs at this price, in US dollars."""
        return (usage.input_tokens * self.input + usage.output_tokens * self.output) / _PER


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PriceError(f"{where}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise PriceError(f"{where}: a price is a number of dollars >= 0, not {text.strip()!r}")
    return value


def _parse_one(item: str, where: str) -> tuple[str, Price]:
    model, sep, amounts = item.rpartition("=")
    model = model.strip()
    parts = amounts.split(",")
    if not sep or not model or len(parts) != 2:
        raise PriceError(
            f"{where}: {item.strip()!r} is not MODEL=IN,OUT (US dollars per million input and "
            "output tokens, e.g. gpt-4o-mini=0.15,0.60)"
        )
    return model, Price(_number(parts[0], where), _number(parts[1], where))


class Prices:
    """Per-model prices set by the user; `cost()` falls back on LiteLLM's price map."""

    def __init__(self, prices: Mapping[str, Price] | None = None) -> None:
        self._prices = dict(prices or {})
        # id(generator) -> (the generator, its model then, its price): the generator is kept so
        # its id is not reused while the entry stands.
        self._known: dict[int, tuple[Generator, str, Price | None]] = {}

    @classmethod
    def parse(cls, items: Iterable[str], *, source: str = "--price") -> Prices:
        """Prices from `MODEL=IN,OUT` strings (a later one for the same model wins).

        Raises:
            PriceError: an item is not `MODEL=IN,OUT` with two numbers >= 0.
        """
        return cls(dict(_parse_one(item, source) for item in items))

    @classmethod
    def from_file(cls, path: str | Path) -> Prices:
        """Prices from a file of `MODEL=IN,OUT` lines (`#` comments and blank lines skipped).

        Raises:
            PriceError: the file cannot be read, or a line is malformed (the message names it).
        """
        file = Path(path)
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise PriceError(f"cannot read the prices file '{file}': {reason}") from None
        found: dict[str, Price] = {}
        for number, line in enumerate(lines, start=1):
            if line.strip() and not line.lstrip().startswith("#"):
                model, price = _parse_one(line, f"{file.name} line {number}")
                found[model] = price
        return cls(found)

    def merged(self, other: Prices) -> Prices:
        """These prices, overridden by `other`'s."""
        return Prices({**self._prices, **other._prices})

    def __bool__(self) -> bool:
        return bool(self._prices)

    def __repr__(self) -> str:
        return f"Prices({self._prices!r})"

    def price_of(self, generator: Generator) -> Price | None:
        """The price set for `generator`: by `provider!model`, else by its model.

        Looked up once per generator (a run prices thousands of chats of a few generators).
        """
        known = self._known.get(id(generator))
        if known is not None and known[0] is generator and known[1] == generator.model:
            return known[2]
        price = self._look_up(generator)
        if len(self._known) >= _MOST_KNOWN:
            self._known.clear()
        self._known[id(generator)] = (generator, generator.model, price)
        return price

    def _look_up(self, generator: Generator) -> Price | None:
        provider = provider_name_for(type(generator))
        if provider is not None:
            price = self._prices.get(f"{provider}!{generator.model}")
            if price is not None:
                return price
        return self._prices.get(generator.model)

    def cost(self, generator: Generator, usage: Usage | None) -> float | None:
        """What a generation with `usage` cost on `generator`, in US dollars, or `None`."""
        if usage is None:
            return None
        price = self.price_of(generator)
        if price is not None:
            return price.cost(usage)
        return generator.list_price(usage)

    def batch_api_cost(self, generator: Generator, usage: Usage | None) -> float | None:
        """What a generation with `usage` cost on `generator` through its provider's batch
        API: `cost()` at `BATCH_API_PRICE_FACTOR`, or `None`."""
        cost = self.cost(generator, usage)
        return None if cost is None else cost * BATCH_API_PRICE_FACTOR
