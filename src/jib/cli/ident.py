"""`jib id`: check an identifier and explain what it configures, secrets masked."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from pydantic import BaseModel, SecretStr
from rich.table import Table
from rich.text import Text

from jib._secrets import ENV_REFERENCE_PREFIX, REDACTED, is_secret_name
from jib.cli._common import handle_errors, out_console
from jib.cli._spec_files import expand_spec_file
from jib.cli._terminal import printable_data
from jib.generator.base import Generator
from jib.identifiers import get_generator
from jib.registry import DEFAULT_PROVIDER, provider_name_for

__all__ = ["describe_generator", "id_command"]


def _shown(name: str, value: Any) -> Any:
    if isinstance(value, SecretStr) or name == "api_key" or is_secret_name(name):
        raw = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return raw if raw.startswith(ENV_REFERENCE_PREFIX) else REDACTED
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_defaults=True)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def describe_generator(generator: Generator) -> dict[str, Any]:
    """What `jib id` reports: provider, class, model, params, attributes and the identifier."""
    cls = type(generator)
    attributes: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        if name in ("model", "params"):
            continue
        value = getattr(generator, name)
        if value is None or (
            name != "api_key" and value == info.get_default(call_default_factory=True)
        ):
            continue
        attributes[name] = _shown(name, value)
    defaults = {
        name: _shown(name, info.get_default(call_default_factory=True))
        for name, info in cls.model_fields.items()
        if name not in ("model", "params", "api_key") and name not in attributes
    }
    return {
        "identifier": generator.to_identifier(),
        "provider": provider_name_for(cls) or DEFAULT_PROVIDER,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "model": generator.model,
        "params": generator.params.model_dump(exclude_none=True, exclude_defaults=True),
        "attributes": attributes,
        "defaults": defaults,
    }


def id_command(
    identifier: Annotated[
        str,
        typer.Argument(
            metavar="IDENTIFIER", help='An identifier: "[provider!]model[,key=value]...".'
        ),
    ],
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check an identifier and explain it: provider, model, params and generator attributes.

    Secrets are masked; `spec=@file` reads the spec from that file. Exits 2 with the reason
    when the identifier is not valid.
    """
    with handle_errors():
        report = describe_generator(get_generator(expand_spec_file(identifier)))
    if json_output:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    report = printable_data(report)  # an identifier copied from data may hold escapes
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("identifier", Text(report["identifier"]))
    table.add_row("provider", Text(f"{report['provider']} ({report['class']})"))
    table.add_row("model", Text(report["model"]))
    for section in ("params", "attributes"):
        values = report[section]
        if not values:
            table.add_row(section, Text("–", style="dim"))
        for index, (name, value) in enumerate(values.items()):
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            table.add_row(section if index == 0 else "", Text(f"{name} = {text}"))
    if report["defaults"]:
        names = ", ".join(report["defaults"])
        table.add_row("other keys", Text(f"{names} (at their defaults)", style="dim"))
    out_console.print(table)
    out_console.print(Text("✓ valid identifier", style="green"))
