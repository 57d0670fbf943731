"""Tools a chat pipeline offers a model (`ChatPipeline.using`), and running the calls it makes.

A `Tool` is a name, a `ToolDefinition` (what the model is told) and, for a Python function, the
function. A function's schema comes from its signature through pydantic (type hints, defaults,
`Annotated[..., Field(...)]`), its description from the docstring's first line, and each
parameter's description from the docstring's Args section (Google, NumPy and reST styles, read
by `docstring_parser`). The same pydantic validator checks the arguments a model sends before
the function runs.

A `Toolbox` is the tools of one pipeline and its error policy: it answers the calls of one
assistant message, concurrently, each with a `Message("tool", result, tool_call_id=call.id)`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from jib.content import ContentAudioInput, ContentFile, ContentImageUrl, ContentPart, ContentText
from jib.errors import ToolError
from jib.messages import Message
from jib.pipeline._gather import gather_all
from jib.tools import FunctionDefinition, ToolCall, ToolDefinition

__all__ = ["Catch", "Tool", "Toolbox"]

Catch = bool | Iterable[type[Exception]]
"""Which exceptions of a tool become a result the model sees: all (`True`), none (`False`: the
chat fails with a `ToolError`), or these types."""

_PARTS = (ContentText, ContentImageUrl, ContentAudioInput, ContentFile)
_MAX_ERROR_TEXT = 2000
"""Characters of an exception's text an error result keeps (the model needs the gist)."""
_MAX_PROBLEMS = 10


@dataclass(frozen=True, slots=True, eq=False)
class Tool:
    """A tool a model may call: its definition, and the function that answers (if any).

    A tool without a function is only offered: calls to it are recorded in the chat, not run.

    >>> def add(a: int, b: int) -> int:
    ...     '''Add two numbers.
    ...
    ...     Args:
    ...         a: the first number.
    ...         b: the second.
    ...     '''
    ...     return a + b
    >>> tool = Tool.from_function(add)
    >>> tool.definition.function.description, tool.definition.function.parameters["required"]
    ('Add two numbers.', ['a', 'b'])
    """

    definition: ToolDefinition
    function: Callable[..., Any] | None = None
    _validator: TypeAdapter[Any] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The name the model calls it by."""
        return self.definition.function.name

    @classmethod
    def from_function(
        cls,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> Tool:
        """A tool that runs `function` (sync or async), described by its signature and docstring.

        Raises:
            TypeError: the function takes `*args`/`**kwargs` or positional-only parameters, or
                has no name to be called by (pass `name=`).
            ValueError: the name is not one a model can call (letters, digits, `_.-`, at most
                64 characters), or pydantic cannot make a schema of a parameter's type.
        """
        if not callable(function):
            raise TypeError(f"a tool must be a function, not {type(function).__name__}")
        tool_name = name or getattr(function, "__name__", None)
        if not tool_name or tool_name == "<lambda>":
            raise TypeError(f"{function!r} has no name a model can call it by: pass name=")
        try:
            signature = inspect.signature(function, eval_str=True)
        except NameError as exc:
            raise TypeError(
                f"tool {tool_name!r}: its type hints cannot be resolved ({exc})"
            ) from exc
        for parameter in signature.parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise TypeError(
                    f"tool {tool_name!r}: a model passes named arguments, so *{parameter.name} "
                    "and **kwargs cannot be offered; name each parameter"
                )
            if parameter.kind is parameter.POSITIONAL_ONLY:
                raise TypeError(
                    f"tool {tool_name!r}: parameter {parameter.name!r} is positional-only; a "
                    "model passes named arguments"
                )
        try:
            validator = _validator_for(function, signature)
            schema = validator.json_schema()
        except Exception as exc:  # pydantic's PydanticSchemaGenerationError and kin
            raise ValueError(
                f"tool {tool_name!r}: no JSON schema for its parameters: {exc}"
            ) from exc
        summary, parameter_docs = _docstring(function)
        _describe_parameters(schema, parameter_docs)
        try:
            definition = ToolDefinition(
                function=FunctionDefinition(
                    name=tool_name,
                    description=description if description is not None else summary,
                    parameters=schema,
                )
            )
        except ValidationError as exc:
            raise ValueError(
                f"tool name {tool_name!r} is not one a model can call: use letters, digits, "
                "'_', '.' and '-', at most 64 characters (pass name=)"
            ) from exc
        return cls(definition, function, validator)

    @classmethod
    def from_definition(cls, definition: ToolDefinition | Mapping[str, Any]) -> Tool:
        """A tool that is only offered: the model's calls to it are recorded, not run."""
        if not isinstance(definition, ToolDefinition):
            definition = ToolDefinition.model_validate(definition)
        return cls(definition)

    @classmethod
    def of(cls, value: Tool | ToolDefinition | Mapping[str, Any] | Callable[..., Any]) -> Tool:
        """A tool from what `using()` accepts: a `Tool`, a definition (or its OpenAI-shaped
        dict), or a function."""
        if isinstance(value, Tool):
            return value
        if isinstance(value, (ToolDefinition, Mapping)):
            return cls.from_definition(value)
        return cls.from_function(value)

    @property
    def runs(self) -> bool:
        """Whether calls to it are run (it has a function)."""
        return self.function is not None

    async def run(self, call: ToolCall, catch: Catch) -> Message:
        """Answer `call`: validate its arguments, run the function, and return the tool message.

        Arguments that are not JSON or do not validate become an error result the model sees;
        so does an exception the function raises when `catch` covers it.

        Raises:
            ToolError: the function raised an exception `catch` does not cover.
        """
        function, validator = self.function, self._validator
        assert function is not None and validator is not None  # callers check `runs`
        try:
            arguments = call.parsed_arguments()
            if not isinstance(arguments, dict):
                raise ValueError(
                    f"the arguments must be a JSON object, not {type(arguments).__name__}"
                )
            _, validated = validator.validate_python(arguments)
        except ValidationError as exc:
            problems = _problems(exc)
            return _tool_message(call, f"Error: invalid arguments for {self.name}: {problems}")
        except ValueError as exc:
            return _tool_message(call, f"Error: invalid arguments for {self.name}: {exc}")
        try:
            if inspect.iscoroutinefunction(function):
                result = await function(**validated)
            else:
                # A sync tool may block (files, HTTP): run it off the event loop.
                result = await asyncio.to_thread(function, **validated)
                if inspect.isawaitable(result):
                    result = await result
        except Exception as exc:
            if _caught(exc, catch):
                return _tool_message(call, _error_text(exc))
            raise ToolError(
                f"tool {self.name!r} (call {call.id!r}) raised {type(exc).__name__}: "
                f"{_cut(str(exc))}",
                self.name,
                call.id,
            ) from exc
        return _tool_message(call, result)


def _validator_for(function: Callable[..., Any], signature: inspect.Signature) -> TypeAdapter[Any]:
    """A pydantic validator of `function`'s arguments that returns them instead of calling it.

    Pydantic validates a call against a function's signature; given a stand-in with the same
    signature that hands its arguments back, it checks and converts them, and the pipeline
    calls the real function itself (off the event loop when it is sync).
    """

    @functools.wraps(function)
    def arguments_of(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return args, kwargs

    # The signature with annotations resolved, so pydantic sees no strings it cannot evaluate.
    arguments_of.__signature__ = signature.replace(  # type: ignore[attr-defined]
        return_annotation=inspect.Signature.empty
    )
    arguments_of.__annotations__ = {
        name: parameter.annotation
        for name, parameter in signature.parameters.items()
        if parameter.annotation is not inspect.Parameter.empty
    }
    adapter: TypeAdapter[Any] = TypeAdapter(arguments_of)  # type: ignore[arg-type]
    return adapter


def _docstring(function: Callable[..., Any]) -> tuple[str | None, dict[str, str]]:
    """The docstring's first line, and each parameter's description from its Args section."""
    doc = inspect.getdoc(function)
    if not doc:
        return None, {}
    import docstring_parser  # only needed when a function becomes a tool

    parsed = docstring_parser.parse(doc)
    summary = _one_line(parsed.short_description) if parsed.short_description else None
    parameters = {
        item.arg_name: _one_line(item.description) for item in parsed.params if item.description
    }
    return summary, parameters


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _describe_parameters(schema: dict[str, Any], descriptions: Mapping[str, str]) -> None:
    """Give each property its docstring description (unless its type already gave one), and
    drop the titles pydantic derives from parameter names (noise a model pays tokens for)."""
    schema.pop("title", None)
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return
    for name, prop in properties.items():
        if not isinstance(prop, dict):
            continue
        prop.pop("title", None)
        if name in descriptions and "description" not in prop:
            prop["description"] = descriptions[name]


def _caught(exc: Exception, catch: Catch) -> bool:
    if isinstance(catch, bool):
        return catch
    return isinstance(exc, tuple(catch))


def _problems(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors()[:_MAX_PROBLEMS]:
        where = ".".join(str(part) for part in error["loc"]) or "(arguments)"
        lines.append(f"{where}: {error['msg']}")
    more = exc.error_count() - _MAX_PROBLEMS
    if more > 0:
        lines.append(f"and {more} more")
    return "; ".join(lines)


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 3] + "..."


def _error_text(exc: Exception) -> str:
    message = str(exc)
    name = type(exc).__name__
    return f"Error: {name}: {_cut(message)}" if message else f"Error: {name}"


def _tool_message(call: ToolCall, result: Any) -> Message:
    """The `tool` message answering `call`: text as is, parts as parts, anything else as JSON."""
    content: str | list[ContentPart]
    if isinstance(result, str):
        content = result
    elif isinstance(result, _PARTS):
        content = [result]
    elif isinstance(result, list) and result and all(isinstance(item, _PARTS) for item in result):
        content = list(result)
    elif isinstance(result, BaseModel):
        content = result.model_dump_json()
    else:
        import pydantic_core

        content = pydantic_core.to_json(result, fallback=str).decode("utf-8", "replace")
    return Message("tool", content, tool_call_id=call.id)


class Toolbox:
    """The tools of one pipeline by name, how far many rounds may go, and what a tool's
    exception becomes."""

    __slots__ = ("catch", "max_depth", "tools")

    def __init__(self, tools: Mapping[str, Tool], max_depth: int, catch: Catch) -> None:
        self.tools = dict(tools)
        self.max_depth = max_depth
        self.catch: Catch = catch if isinstance(catch, bool) else tuple(catch)

    @property
    def definitions(self) -> list[ToolDefinition]:
        """What the model is told, in the order the tools were given."""
        return [tool.definition for tool in self.tools.values()]

    def runs_all(self, calls: Sequence[ToolCall], offered: Iterable[str]) -> bool:
        """Whether every call can be answered here: none names a tool that is only offered
        (a definition, in `offered` or here without a function). Calls to names offered
        nowhere are answered, with an error the model sees."""
        only_offered = {name for name, tool in self.tools.items() if not tool.runs}
        only_offered.update(name for name in offered if name not in self.tools)
        return not any(call.function.name in only_offered for call in calls)

    async def answer(self, calls: Sequence[ToolCall]) -> list[Message]:
        """The tool messages answering `calls`, in their order; the calls run concurrently.

        Raises:
            ToolError: a tool raised what `catch` does not cover (the other calls are
                cancelled).
        """
        if len(calls) == 1:
            return [await self._answer_one(calls[0])]
        return await gather_all([self._answer_one(call) for call in calls])

    async def _answer_one(self, call: ToolCall) -> Message:
        tool = self.tools.get(call.function.name)
        if tool is None or not tool.runs:
            known = ", ".join(name for name, tool in self.tools.items() if tool.runs)
            return _tool_message(
                call, f"Error: there is no tool named {call.function.name!r}; tools: {known}"
            )
        return await tool.run(call, self.catch)
