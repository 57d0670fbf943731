"""`jib spec render`: show the exact HTTP request an HTTP spec would send, without sending it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.text import Text

from jib._json import loads as load_json
from jib._secrets import REDACTED, is_secret_name, mask_values
from jib.cli._common import (
    EXIT_USAGE,
    ParamOption,
    fail,
    handle_errors,
    out_console,
    parse_params,
)
from jib.cli._terminal import printable
from jib.errors import ProcessingError
from jib.messages import Message

if TYPE_CHECKING:
    from jib.generator.http import HTTPSpec

__all__ = ["render_command"]

KEY_PLACEHOLDER = "<api_key>"
"""What `api_key` renders as when no key is given, so you can see where the key would go."""


def _load_source(source: str) -> tuple[HTTPSpec, str, str | None, dict[str, Any]]:
    """The spec, model, api key and state from a spec file or an `http!` identifier."""
    from jib.generator.http import HTTPGenerator, HTTPSpec

    if source.startswith(("http!", "ws!")):  # ws!'s spec is an HTTPSpec too (`WSSpec`)
        from jib.cli._spec_files import expand_spec_file
        from jib.identifiers import get_generator

        generator = get_generator(expand_spec_file(source))
        assert isinstance(generator, HTTPGenerator)
        if generator.spec is None:
            fail(f"the identifier has no spec: {generator.to_identifier()!r}", EXIT_USAGE)
        return generator.spec, generator.model, generator.get_api_key(), dict(generator.state)
    path = Path(source)
    try:
        is_file = path.is_file()
    except OSError:
        is_file = False
    if is_file:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read spec file '{source}': {exc}", EXIT_USAGE)
        try:
            return HTTPSpec.model_validate(text), "", None, {}
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "spec"
            fail(f"invalid spec in '{source}': {where}: {first['msg']}", EXIT_USAGE)
    fail(
        f"spec file '{source}' not found (give a YAML/JSON spec file or an http! identifier)",
        EXIT_USAGE,
    )


def _mask_header(name: str, value: str, secrets: list[str]) -> str:
    masked = mask_values(value, secrets)
    if masked != value or KEY_PLACEHOLDER in value or not is_secret_name(name):
        return masked
    scheme, space, _ = value.partition(" ")
    return f"{scheme} {REDACTED}" if space and scheme.isalpha() else REDACTED


def render_command(
    spec: Annotated[
        str,
        typer.Argument(
            metavar="SPEC",
            help="A spec file (YAML or JSON), or an http! identifier carrying a spec.",
        ),
    ],
    prompt: Annotated[
        str, typer.Option("--prompt", metavar="TEXT", help="The user message to render.")
    ] = "Hello!",
    system: Annotated[
        str | None, typer.Option("--system", "-s", metavar="TEXT", help="A system message first.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", metavar="NAME", help="The model name templates see."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            metavar="KEY",
            help=f"The key templates see (masked as {REDACTED} in the output). "
            f"Default: the identifier's, else the placeholder {KEY_PLACEHOLDER}.",
            show_default=False,
        ),
    ] = None,
    param: ParamOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print method, url, headers and body as JSON.")
    ] = False,
) -> None:
    """Show the HTTP request a spec would send for a prompt, secrets masked; nothing is sent.

    Example: jib spec render spec.yaml --prompt "Hello"
    """
    with handle_errors():
        from jib.generator.http import RequestTransformContext

        loaded, loaded_model, loaded_key, state = _load_source(spec)
        key = api_key or loaded_key
        messages = [Message("system", system)] if system else []
        messages.append(Message("user", prompt))
        context = RequestTransformContext.from_messages(
            messages,
            api_key=key or KEY_PLACEHOLDER,
            model=model if model is not None else loaded_model,
            state=state,
            params=parse_params(param),
        )
        try:
            request = loaded.build_request(context)
        except ProcessingError as exc:
            fail(f"the spec cannot render this request: {exc}", EXIT_USAGE)
    secrets = [key] if key else []
    url = mask_values(request.url, secrets)
    headers = {name: _mask_header(name, value, secrets) for name, value in request.headers.items()}
    body = None if request.content is None else mask_values(request.content, secrets)
    if json_output:
        parsed: Any = body
        if body is not None:
            try:
                parsed = load_json(body, what="the request body")
            except (ValueError, ProcessingError):  # not JSON, or too deep to read: as it is
                parsed = body
        typer.echo(
            json.dumps(
                {"method": request.method, "url": url, "headers": headers, "body": parsed},
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    out_console.print(Text(printable(f"{request.method} {url}"), style="bold"))
    for name, value in headers.items():
        out_console.print(Text(printable(f"{name}: {value}")))
    if body is not None:
        out_console.print()
        try:
            shown = json.dumps(
                load_json(body, what="the request body"), ensure_ascii=False, indent=2
            )
        except (ValueError, ProcessingError):
            shown = body
        out_console.print(Text(printable(shown)))
