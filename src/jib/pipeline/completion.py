"""`CompletionPipeline`: build and run text completions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jib.chat import Completion
from jib.generator.base import Generator
from jib.messages import GeneratedText
from jib.params import GenerateParams
from jib.pipeline._base import Pipeline

__all__ = ["CompletionPipeline"]


class CompletionPipeline(Pipeline[str, Completion, GeneratedText]):
    """A text completion waiting to run; the same builder and run methods as `ChatPipeline`.

    `run_batch(texts)` appends each text to this pipeline's text.
    """

    __slots__ = ()

    def __init__(
        self, generator: Generator, text: str = "", params: GenerateParams | None = None
    ) -> None:
        if not isinstance(text, str):
            raise TypeError(f"a completion takes text, not {type(text).__name__}")
        super().__init__(generator, text, params)

    @property
    def text(self) -> str:
        """The text this pipeline sends."""
        return self._input

    def add(self, text: str) -> CompletionPipeline:
        """A new pipeline with `text` appended."""
        clone = self._copy()
        clone._input = self._input + self._normalize_input(text)
        return clone

    def fork(self, text: str = "") -> CompletionPipeline:
        """A copy of this pipeline, optionally with more text, to run separately."""
        return self.add(text)

    def _normalize_input(self, value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError(f"a completion takes text, not {type(value).__name__}")
        return value

    def _extend(self, input: str) -> str:
        return self._input + input

    async def _generate(
        self, generator: Generator, inputs: Sequence[str], params: Sequence[GenerateParams]
    ) -> Sequence[GeneratedText | BaseException]:
        return await generator.generate_texts(inputs, params)

    def _make_record(
        self, input: str, result: GeneratedText | None, fields: dict[str, Any]
    ) -> Completion:
        generated = result.text if result is not None else ""
        return Completion(text=input, generated=generated, **fields)
