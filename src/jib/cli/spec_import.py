"""`jib spec import`: a spec and an `http!` identifier from a copied request (raw HTTP or curl).

The secrets of the copy are never printed nor written: the spec and the identifier refer to
them (`api_key=env:NAME`), and the command says on stderr which variable to set to what.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jib.cli._common import EXIT_USAGE, fail, handle_errors
from jib.cli._terminal import printable

if TYPE_CHECKING:
    from jib.generator.http.copied import ImportedRequest

__all__ = ["DEFAULT_KEY_VARIABLE", "import_command"]

DEFAULT_KEY_VARIABLE = "JIB_TARGET_KEY"
"""The environment variable the printed identifier reads the copy's first secret from."""


def _read(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        fail(f"copied request file '{source}' not found", EXIT_USAGE)
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read copied request file '{source}': {exc}", EXIT_USAGE)


def _identifier(
    imported: ImportedRequest, model: str, key_variable: str, spec_file: str | None
) -> str:
    from jib.generator.http import HTTPGenerator

    key = f"env:{key_variable}" if imported.api_key is not None else None
    generator = HTTPGenerator(model=model, spec=imported.spec, api_key=key, **imported.options)
    identifier = generator.to_identifier()
    if spec_file is not None:
        identifier = identifier.replace(
            f"spec={imported.spec.to_base64()}", f"spec=@{spec_file}", 1
        )
    return identifier


def _notes(imported: ImportedRequest, key_variable: str) -> list[str]:
    notes = []
    for secret in imported.secrets:
        what = f" ({secret.hint})" if secret.hint else ""
        if secret.reference == "api_key":
            notes.append(
                f"{secret.where} → api_key: set {key_variable} to its value{what}; the "
                f"identifier reads it (api_key=env:{key_variable})"
            )
        else:
            notes.append(
                f"{secret.where} → {secret.reference}{what}: state cannot be set on the command "
                "line; a login step (steps: … extract:) must fill it, or pass state= in Python"
                + (", or import with --no-cookies" if secret.reference == "state.cookie" else "")
            )
    return notes


def import_command(
    source: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help="A raw HTTP request (from Burp, ZAP or dev tools) or a curl command, with "
            "{PROMPT} where the prompt goes; - reads standard input.",
        ),
    ],
    marker: Annotated[
        str, typer.Option("--marker", metavar="TEXT", help="The prompt marker.")
    ] = "{PROMPT}",
    model: Annotated[
        str, typer.Option("--model", "-m", metavar="NAME", help="The identifier's model name.")
    ] = "target",
    scheme: Annotated[
        str | None,
        typer.Option(
            "--scheme",
            metavar="http|https",
            help="The scheme of a raw request, when the copy does not say (default https).",
        ),
    ] = None,
    response_path: Annotated[
        str | None,
        typer.Option(
            "--response-path",
            metavar="JSONPATH",
            help="Where the answer is in a JSON response (default: the whole body).",
        ),
    ] = None,
    error_path: Annotated[
        str | None,
        typer.Option(
            "--error-path", metavar="JSONPATH", help="Where an error response's message is."
        ),
    ] = None,
    key_variable: Annotated[
        str,
        typer.Option(
            "--key-env",
            metavar="NAME",
            help="The environment variable the identifier reads the copy's secret from.",
        ),
    ] = DEFAULT_KEY_VARIABLE,
    cookies: Annotated[
        bool,
        typer.Option(
            "--cookies/--no-cookies",
            help="Keep the copied Cookie header (--no-cookies: a login step or the server's "
            "own cookies supply them).",
        ),
    ] = True,
    from_state: Annotated[
        list[str] | None,
        typer.Option(
            "--from-state",
            metavar="NAME[=KEY]",
            help="A header or field whose value a login step fetches (a CSRF token): read "
            "from state.KEY (default: NAME in snake case) instead of the copy. Repeatable.",
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write the spec (YAML) to FILE; the identifier then names it (spec=@FILE).",
        ),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print spec, identifier and secrets as one JSON object."),
    ] = False,
) -> None:
    """Make an HTTP spec and an http! identifier from a copied request; secrets stay out.

    Example: jib spec import request.txt --response-path '$.reply' -o spec.yaml
    """
    with handle_errors():
        from jib.generator.http.copied import import_curl, import_raw_request, is_curl_command

        text = _read(source)
        response: dict[str, Any] = {}
        if response_path:
            response["content_path"] = response_path
        if error_path:
            response["error_path"] = error_path
        if is_curl_command(text):
            if scheme is not None:
                fail("--scheme is for raw requests; a curl command names its URL", EXIT_USAGE)
            imported = import_curl(
                text,
                marker=marker,
                response=response,
                cookies=cookies,
                from_state=from_state or (),
            )
        else:
            imported = import_raw_request(
                text,
                marker=marker,
                scheme=scheme,
                response=response,
                cookies=cookies,
                from_state=from_state or (),
            )
        if output is not None:
            try:
                Path(output).write_text(imported.spec.to_yaml(), encoding="utf-8")
            except OSError as exc:
                fail(f"cannot write the spec to '{output}': {exc}")
        identifier = _identifier(imported, model, key_variable, output)
    notes = _notes(imported, key_variable)
    if json_output:
        typer.echo(
            json.dumps(
                {
                    "spec": imported.spec.to_dict(),
                    "identifier": identifier,
                    "secrets": [
                        {"where": s.where, "reference": s.reference, "hint": s.hint}
                        for s in imported.secrets
                    ],
                    "env": {key_variable: "api_key"} if imported.api_key is not None else {},
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        if output is None:
            typer.echo("# spec")
            typer.echo(printable(imported.spec.to_yaml().rstrip("\n")))
            typer.echo()
            typer.echo("# identifier")
        else:
            typer.echo(f"# spec written to {output}; identifier:")
        typer.echo(identifier)
    for note in notes:
        typer.echo(f"secret: {printable(note)}", err=True)
