"""A run prompt by prompt: every generator's answer to each prompt, and per-generator figures.

What `jib compare` prints and `jib report` draws. Built from the store's record dicts
(`ChatStore.iter_dicts(run=…)`); prompts come out in natural order of their ids (`q2` before
`q10`), then by sample; generators in the order they first appear in the run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from jib.cli._figures import percentile
from jib.cli._message_view import readable, tool_calls_of
from jib.cli._schema import SCHEMA_ERROR

__all__ = ["Answer", "ComparedPrompt", "Comparison", "GeneratorFigures", "compare_records"]

_HIDDEN_METADATA = ("prompt_id", "sample_index", "tags")
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True, slots=True)
class Answer:
    """One generator's answer to one prompt (or its failure).

    `text` is the answer's text (with a label for each part that is not text); `tool_calls` the
    (name, arguments) of each call it makes; `output` its validated structured value (a run with
    `--schema`), `schema_error` why it did not validate.
    """

    record_id: str
    text: str
    failed: bool
    error: str | None
    latency_ms: float | None
    cost_usd: float | None
    tool_calls: tuple[tuple[str, str], ...] = ()
    output: Any = None
    schema_error: str | None = None


@dataclass(slots=True)
class ComparedPrompt:
    """One prompt (one sample of it) of the run, with every generator's answer.

    `prompt` is the last message sent, as text with a label for each part that is not text;
    `parts` its parts (dicts in the OpenAI shape) when it has any beyond a string.
    """

    prompt_id: str | None
    sample_index: int
    prompt: str
    metadata: dict[str, Any]
    answers: dict[str, Answer] = field(default_factory=dict)
    parts: list[Any] = field(default_factory=list)


@dataclass(slots=True)
class GeneratorFigures:
    """What one generator did in the run."""

    generator: str
    ok: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    latencies: list[float] = field(default_factory=list)
    cost: float = 0.0
    priced: int = 0

    @property
    def chats(self) -> int:
        """Chats stored, ok or failed."""
        return self.ok + self.failed

    @property
    def success_rate(self) -> float:
        """The share of chats that succeeded (0 to 1)."""
        return self.ok / self.chats if self.chats else 0.0

    def latency(self, q: float) -> float | None:
        """The `q`-th percentile latency of the successful chats, in milliseconds."""
        return percentile(self.latencies, q)


@dataclass(slots=True)
class Comparison:
    """A run's prompts side by side, and each generator's figures."""

    run: str
    generators: list[str]
    prompts: list[ComparedPrompt]
    figures: dict[str, GeneratorFigures]
    unreadable: int = 0
    """Stored records of the run skipped because they cannot be read."""

    @property
    def samples(self) -> bool:
        """Whether any prompt has more than one sample."""
        return any(prompt.sample_index for prompt in self.prompts)

    def describe(self) -> str:
        """`6 prompts × 3 samples × 2 generators`: the shape of the run (and how many records
        could not be read, if any: `… · 1 unreadable record skipped`)."""
        distinct = len({(p.prompt_id, p.prompt if p.prompt_id is None else "") for p in self})
        samples = 1 + max((p.sample_index for p in self.prompts), default=0)
        shape = _count(distinct, "prompt")
        if samples > 1:
            shape += f" × {_count(samples, 'sample')}"
        shape = f"{shape} × {_count(len(self.generators), 'generator')}"
        if self.unreadable:
            shape += f" · {_count(self.unreadable, 'unreadable record')} skipped"
        return shape

    def __iter__(self) -> Iterator[ComparedPrompt]:
        return iter(self.prompts)

    def metadata_keys(self) -> list[str]:
        """The metadata keys the prompts carry, in the order first seen."""
        keys: dict[str, None] = {}
        for prompt in self.prompts:
            keys.update(dict.fromkeys(prompt.metadata))
        return list(keys)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _texts(data: dict[str, Any]) -> tuple[str, str]:
    if data["kind"] == "chat":
        sent, generated = data["messages"], data["generated"]
        prompt = readable(sent[-1]) if sent else ""
        return prompt, (readable(generated[-1]) if generated else "")
    return data["text"], data["generated"]


def _prompt_parts(data: dict[str, Any]) -> list[Any]:
    if data["kind"] != "chat" or not data["messages"]:
        return []
    content = data["messages"][-1].get("content")
    return list(content) if isinstance(content, list) else []


def _answer_calls(data: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    if data["kind"] != "chat" or not data["generated"]:
        return ()
    return tuple(tool_calls_of(data["generated"][-1]))


def _natural(prompt: ComparedPrompt) -> tuple[Any, ...]:
    parts = _DIGITS.split(prompt.prompt_id or "")
    key = tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in parts)
    return (prompt.prompt_id is None, key, prompt.sample_index)


def compare_records(run: str, records: Iterable[dict[str, Any]]) -> Comparison:
    """Group a run's record dicts by prompt (id and sample) and by generator.

    Records without a prompt id (stored by a pipeline of your own, or an older jib) are grouped
    by the conversation they sent. When a generator answered one prompt more than once, the
    newest answer is shown.
    """
    prompts: dict[tuple[Any, ...], ComparedPrompt] = {}
    figures: dict[str, GeneratorFigures] = {}
    for data in records:
        generator = data["generator_id"] or "–"
        prompt_text, answer_text = _texts(data)
        prompt_id = data.get("prompt_id")
        sample = data.get("sample_index") or 0
        sent = data["messages"] if data["kind"] == "chat" else data["text"]
        key = ("id", prompt_id, sample) if prompt_id is not None else ("sent", json.dumps(sent))
        compared = prompts.get(key)
        if compared is None:
            metadata = {
                k: v for k, v in (data["metadata"] or {}).items() if k not in _HIDDEN_METADATA
            }
            compared = prompts[key] = ComparedPrompt(
                prompt_id, sample, prompt_text, metadata, parts=_prompt_parts(data)
            )
        error = data["error"]
        failed = bool(data["failed"])
        schema_error = (data.get("extra") or {}).get(SCHEMA_ERROR)
        compared.answers[generator] = Answer(
            record_id=data["id"],
            text="" if failed else answer_text,
            failed=failed,
            error=f"{error['type']}: {error['message']}" if error else None,
            latency_ms=data.get("latency_ms"),
            cost_usd=data.get("cost_usd"),
            tool_calls=() if failed else _answer_calls(data),
            output=None if failed else data.get("output"),
            schema_error=str(schema_error) if schema_error and not failed else None,
        )
        _add(figures.setdefault(generator, GeneratorFigures(generator)), data)
    return Comparison(
        run=run,
        generators=list(figures),
        prompts=sorted(prompts.values(), key=_natural),
        figures=figures,
    )


def _add(figures: GeneratorFigures, data: dict[str, Any]) -> None:
    if data["failed"]:
        figures.failed += 1
    else:
        figures.ok += 1
        if data.get("latency_ms") is not None:
            figures.latencies.append(float(data["latency_ms"]))
    usage = data["usage"] or {}
    figures.input_tokens += int(usage.get("input_tokens") or 0)
    figures.output_tokens += int(usage.get("output_tokens") or 0)
    if data.get("cost_usd") is not None:
        figures.cost += float(data["cost_usd"])
        figures.priced += 1
