"""`Tool`: a Python function described for a model (schema from its signature, text from its
docstring), and the errors a function that cannot be offered gets."""

from __future__ import annotations

import pickle
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from jib.errors import StructuredOutputError, ToolDepthError, ToolError
from jib.pipeline import Tool
from jib.tools import ToolDefinition


class Place(BaseModel):
    city: str
    country: str = "FR"


def weather(
    place: Place,
    unit: Literal["c", "f"] = "c",
    days: Annotated[int, Field(ge=1, le=7, description="How many days ahead.")] = 1,
) -> str:
    """Get the weather forecast for a place.

    More detail that the model is not sent.

    Args:
        place: where to look,
            over two lines.
        unit: degrees Celsius or Fahrenheit.
        days: ignored here: the type's own description wins.
    """
    return "sunny"


def test_a_functions_signature_and_docstring_make_its_definition() -> None:
    definition = Tool.from_function(weather).definition.to_dict()

    assert definition["type"] == "function"
    function = definition["function"]
    assert function["name"] == "weather"
    assert function["description"] == "Get the weather forecast for a place."
    parameters = function["parameters"]
    assert parameters["type"] == "object"
    assert parameters["required"] == ["place"]
    assert parameters["additionalProperties"] is False
    assert parameters["properties"] == {
        "place": {"$ref": "#/$defs/Place", "description": "where to look, over two lines."},
        "unit": {
            "default": "c",
            "description": "degrees Celsius or Fahrenheit.",
            "enum": ["c", "f"],
            "type": "string",
        },
        "days": {
            "default": 1,
            "description": "How many days ahead.",
            "maximum": 7,
            "minimum": 1,
            "type": "integer",
        },
    }
    assert parameters["$defs"]["Place"]["required"] == ["city"]


def test_numpy_and_rest_docstrings_describe_parameters_too() -> None:
    def numpy_style(a: int) -> int:
        """Numpy style.

        Parameters
        ----------
        a : int
            The number.
        """
        return a

    def rest_style(a: int) -> int:
        """reST style.

        :param a: The number.
        """
        return a

    for function in (numpy_style, rest_style):
        parameters = Tool.from_function(function).definition.function.parameters
        assert parameters["properties"]["a"]["description"] == "The number."


def test_name_and_description_can_be_given() -> None:
    def f(x: str) -> str:
        return x

    tool = Tool.from_function(f, name="echo.v1", description="Echo the text.")
    assert tool.name == "echo.v1"
    assert tool.definition.function.description == "Echo the text."
    assert tool.definition.function.parameters["properties"] == {"x": {"type": "string"}}
    assert Tool.from_function(f).definition.function.description is None


def test_methods_and_async_functions_are_tools() -> None:
    class Calculator:
        def add(self, a: int, b: int) -> int:
            """Add."""
            return a + b

    async def later(delay: float) -> None:
        """Wait."""

    assert Tool.from_function(Calculator().add).definition.function.parameters["required"] == [
        "a",
        "b",
    ]
    assert Tool.from_function(later).runs


def test_definitions_and_dicts_are_only_offered() -> None:
    definition = {"type": "function", "function": {"name": "lookup", "description": "Find."}}
    tool = Tool.of(definition)
    assert not tool.runs and tool.name == "lookup"
    assert Tool.of(tool) is tool
    assert Tool.of(ToolDefinition.model_validate(definition)).definition == tool.definition


def _args(*values: Any) -> None:
    """Varargs."""


def _kwargs(**values: Any) -> None:
    """Kwargs."""


def _positional(a: int, /) -> None:
    """Positional only."""


class Opaque:
    pass


def _opaque(thing: Opaque) -> None:
    """A type pydantic cannot describe."""


@pytest.mark.parametrize(
    ("function", "error", "message"),
    [
        (lambda x: x, TypeError, "has no name a model can call it by: pass name="),
        (_args, TypeError, "tool '_args': a model passes named arguments, so \\*values"),
        (_kwargs, TypeError, "tool '_kwargs': a model passes named arguments"),
        (_positional, TypeError, "parameter 'a' is positional-only"),
        (_opaque, ValueError, "tool '_opaque': no JSON schema for its parameters"),
        ("not callable", TypeError, "a tool must be a function, not str"),
    ],
)
def test_a_function_that_cannot_be_offered_says_why(
    function: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Tool.from_function(function)


def test_a_name_a_model_cannot_call_is_refused() -> None:
    with pytest.raises(ValueError, match="tool name 'two words' is not one a model can call"):
        Tool.from_function(weather, name="two words")


def test_type_hints_that_cannot_be_resolved_say_so() -> None:
    def later(thing: Undefined) -> None:  # type: ignore[name-defined]  # noqa: F821
        """Refers to a name that does not exist."""

    with pytest.raises(TypeError, match="tool 'later': its type hints cannot be resolved"):
        Tool.from_function(later)


def test_pipeline_errors_survive_pickling() -> None:
    errors = [
        ToolError("tool 'f' (call 'c') raised ValueError: x", "f", "c"),
        ToolDepthError("too deep", 3),
        StructuredOutputError("no answer validated", "City", "{}", ("name: Field required",)),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert copy.__dict__ == error.__dict__
