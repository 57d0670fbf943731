"""What every `jib` subcommand shares: errors as one line, generators, params, the store."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from jib._secrets import redact
from jib._values import decode_value, field_kind
from jib.cli._spec_files import expand_spec_file
from jib.cli._terminal import printable
from jib.errors import InvalidGeneratorError, JibError, MissingDependencyError
from jib.generator.base import Generator
from jib.identifiers import get_generator
from jib.params import GenerateParams
from jib.trust import (
    ALLOW_ENV_VARIABLE,
    ALLOW_HOSTS_VARIABLE,
    ALLOW_OPTIONS_VARIABLE,
    TrustPolicy,
)

if TYPE_CHECKING:
    from jib.storage import ChatStore, ResponseCache

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "GENERATOR_ENV_VAR",
    "AllowEnvOption",
    "AllowHostOption",
    "AllowOptionOption",
    "CacheOption",
    "CacheStoreOption",
    "CacheTTLOption",
    "CliError",
    "GeneratorOption",
    "ParamOption",
    "StoreOption",
    "TrustRemoteCodeOption",
    "close_cli_response_cache",
    "err_console",
    "fail",
    "handle_errors",
    "open_cli_response_cache",
    "open_cli_store",
    "out_console",
    "parse_params",
    "quiet_litellm",
    "require_run",
    "resolve_generators",
    "trust_policy",
]

EXIT_FAILED = 1
"""Something did not work: a generation failed, a record is missing, the store is unreachable."""
EXIT_USAGE = 2
"""The input was wrong: a bad identifier, a missing file, a malformed option."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C."""

GENERATOR_ENV_VAR = "JIB_GENERATOR"

EXAMPLE_IDENTIFIERS = (
    ("echo!demo", "offline: answers with your prompt (no key, no server)"),
    ("openai/gpt-4o-mini", "OpenAI, key from OPENAI_API_KEY"),
    ("ollama_chat/qwen3:0.6b,api_base=http://localhost:11434", "a local Ollama server"),
    ("openai/MODEL,api_base=http://localhost:8000/v1", "any OpenAI-compatible server"),
)


def _console(*, stderr: bool) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 200  # logs and pipes: do not squeeze tables into 80 columns
    return console


out_console = _console(stderr=False)
"""Results: tables, answers, JSON (stdout)."""
err_console = _console(stderr=True)
"""Progress, hints and errors (stderr)."""

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        metavar="URL|PATH",
        help="Database URL or SQLite file path. Default: $JIB_STORE, else "
        "~/.local/share/jib/jib.db ($XDG_DATA_HOME/jib/jib.db when set).",
        show_default=False,
    ),
]
CacheOption = Annotated[
    bool,
    typer.Option(
        "--cache",
        help="Use jib's response cache: a request asked before (the same request on the wire, "
        "the same sample index) is answered from the cache, free and at once; new successful "
        "answers are kept. Not the provider's prompt cache. See docs/response_cache.md.",
    ),
]
CacheTTLOption = Annotated[
    str | None,
    typer.Option(
        "--cache-ttl",
        metavar="DURATION",
        help="With --cache: serve only answers kept less than this long ago (90s, 15m, 12h, "
        "7d). Default: no expiry.",
        show_default=False,
    ),
]
CacheStoreOption = Annotated[
    str | None,
    typer.Option(
        "--cache-store",
        metavar="URL|PATH",
        help="Keep the response cache in this database (URL or SQLite file path) instead of "
        "the store.",
        show_default=False,
    ),
]
GeneratorOption = Annotated[
    list[str] | None,
    typer.Option(
        "--generator",
        "-g",
        metavar="ID",
        help=f"A generator identifier (repeatable). Default: ${GENERATOR_ENV_VAR}.",
        show_default=False,
    ),
]
ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        metavar="KEY=VALUE",
        help="A generation param as key=value, e.g. temperature=0.2 or stop='###;END' "
        "(repeatable).",
        show_default=False,
    ),
]

AllowEnvOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-env",
        metavar="NAME",
        help="Let identifiers read from data (a stored chat, a JSONL file) read environment "
        f"variable NAME as their key (repeatable; also ${ALLOW_ENV_VARIABLE}).",
        show_default=False,
    ),
]
AllowHostOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-host",
        metavar="HOST",
        help="Let identifiers and params read from data send your keys to HOST (repeatable; "
        f"also ${ALLOW_HOSTS_VARIABLE}). The provider's own host and loopback are allowed.",
        show_default=False,
    ),
]
AllowOptionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-option",
        metavar="NAME",
        help="Let identifiers and params read from data set option NAME (an attribute such as "
        "model_kwargs, or extra.KEY for a params.extra key) beyond the inert options of its "
        f"provider (repeatable; also ${ALLOW_OPTIONS_VARIABLE}).",
        show_default=False,
    ),
]
TrustRemoteCodeOption = Annotated[
    bool,
    typer.Option(
        "--trust-remote-code",
        help="Let identifiers read from data run model code (trust_remote_code=True).",
    ),
]


def trust_policy(
    allow_env: Sequence[str] | None,
    allow_host: Sequence[str] | None,
    remote_code: bool,
    allow_option: Sequence[str] | None = None,
) -> TrustPolicy:
    """What data may do: `$JIB_ALLOW_ENV` / `$JIB_ALLOW_HOSTS` / `$JIB_ALLOW_OPTIONS`, plus the
    command's options."""
    return TrustPolicy.from_env().allowing(
        env=allow_env or (),
        hosts=allow_host or (),
        options=allow_option or (),
        remote_code=remote_code,
    )


class CliError(Exception):
    """An error to report as one `error: …` line and an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def one_line(message: object) -> str:
    """`message` as text on one line, secrets masked (see `jib._secrets.redact`) and control
    characters shown as escapes (a server's error text may hold terminal escape sequences)."""
    return redact(" ".join(printable(str(message)).split()))


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Stop the command with `error: message` on stderr and exit `code`."""
    raise CliError(message, code)


def report(error: BaseException, code: int) -> NoReturn:
    """Print `error: …` (one line) to stderr and exit with `code`."""
    typer.echo(f"error: {one_line(error)}", err=True)
    raise typer.Exit(code)


@contextmanager
def handle_errors() -> Iterator[None]:
    """Turn the errors a user can act on into one line on stderr and a non-zero exit."""
    from jib.storage import StoreError

    try:
        yield
    except CliError as exc:
        report(exc, exc.code)
    except InvalidGeneratorError as exc:
        report(exc, EXIT_USAGE)
    except (StoreError, JibError) as exc:
        report(exc, EXIT_FAILED)
    except BrokenPipeError:  # `jib … | head`: click exits quietly, as other tools do
        raise
    except OSError as exc:  # files: a folder given as --output, no permission, disk full
        report(exc, EXIT_FAILED)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def no_generator_message(command: str) -> str:
    """What to say when no generator was given: how to give one, with examples."""
    lines = [
        "no generator given.",
        f"Pass an identifier (jib {command} IDENTIFIER …), use --generator, or set "
        f"{GENERATOR_ENV_VAR}. Examples (single-quote identifiers with '!' in bash/zsh):",
    ]
    lines += [f"  {identifier:58} {what}" for identifier, what in EXAMPLE_IDENTIFIERS]
    return "\n".join(lines)


def resolve_generators(
    identifiers: Sequence[str],
    *,
    command: str,
    params: GenerateParams | None = None,
    trusted: bool | TrustPolicy = True,
) -> list[Generator]:
    """Build the generators named on the command line, else by `$JIB_GENERATOR`.

    Identifiers the user gave (`trusted=True`, the default): `spec=@path` reads that file,
    relative to the current directory. For identifiers read from data (a stored chat's), pass a
    trust policy: they go to `get_generator` as they are, checked by it. `$JIB_GENERATOR` is the
    user's own, so always trusted.

    Raises:
        CliError: none given (the message lists example identifiers).
        InvalidGeneratorError: an identifier is not valid.
        UntrustedIdentifierError: an identifier from data wants what `trusted` does not allow.
    """
    chosen = [i for i in identifiers if i.strip()]
    if not chosen:
        from_env = os.environ.get(GENERATOR_ENV_VAR, "").strip()
        if from_env:
            chosen, trusted = [from_env], True
    if not chosen:
        typer.echo(f"error: {no_generator_message(command)}", err=True)
        raise typer.Exit(EXIT_USAGE)
    # Identifiers from the user (arguments, options, their environment): `spec=@file` reads the
    # file, relative to the current directory. Identifiers from data are never expanded.
    generators = [
        get_generator(
            expand_spec_file(identifier) if trusted is True else identifier,
            params=params,
            trusted=trusted,
        )
        for identifier in chosen
    ]
    quiet_litellm(generators)
    return generators


def quiet_litellm(generators: Sequence[Generator]) -> None:
    """Stop LiteLLM printing its "Give Feedback / Get Help" banner to stdout on errors.

    The banner would break `--json` output and tables. Only done when a LiteLLM generator is
    about to run (importing litellm takes a while), and only by the CLI: a library user keeps
    LiteLLM's own settings.
    """
    provider = sys.modules.get("jib.generator.litellm")  # not imported: no LiteLLM generator
    chosen = provider.LiteLLMGenerator if provider is not None else None
    litellm_generators = [g for g in generators if chosen is not None and isinstance(g, chosen)]
    if not litellm_generators:
        return
    try:
        litellm_generators[0].load()  # imports litellm as jib does: no price-map download
    except MissingDependencyError:  # the generator reports the missing extra when it runs
        return
    litellm: Any = sys.modules["litellm"]
    litellm.suppress_debug_info = True


def parse_params(items: Sequence[str] | None) -> GenerateParams:
    """`--param key=value` options as `GenerateParams`, each value checked against its field.

    Raises:
        CliError: an item is not `key=value`, names no param, or has a value of the wrong type.
    """
    values: dict[str, object] = {}
    fields = GenerateParams.model_fields
    for item in items or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            fail(f"--param {item!r} is not key=value (e.g. --param temperature=0.2)", EXIT_USAGE)
        if key not in fields:
            valid = ", ".join(name for name in fields)
            fail(f"--param {key!r} is not a generation param; valid keys: {valid}", EXIT_USAGE)
        values[key] = decode_value(raw, field_kind(fields[key].annotation), what=f"--param {key}")
    try:
        return GenerateParams.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        fail(f"invalid --param: {problems}", EXIT_USAGE)


def open_cli_store(location: str | None) -> ChatStore:
    """Open the store named by `--store` (or the default one)."""
    from jib.storage import open_store

    return open_store(location)


def open_cli_response_cache(
    cache: bool,
    ttl: str | None,
    location: str | None,
    store_url: str | None,
    *,
    run: str | None = None,
    write_every: int = 1,
) -> ResponseCache | None:
    """The response cache `--cache` asks for (in `--cache-store`, else beside the chats at
    `store_url`), or `None`; `--cache-ttl`/`--cache-store` without `--cache` is a usage error."""
    if not cache:
        if ttl is not None or location is not None:
            given = "--cache-ttl" if ttl is not None else "--cache-store"
            fail(f"{given} goes with --cache (use the response cache)", EXIT_USAGE)
        return None
    from jib.cli._durations import parse_duration
    from jib.storage import open_response_cache

    seconds = None
    if ttl is not None:
        try:
            seconds = parse_duration(ttl, "--cache-ttl")
        except ValueError as exc:
            fail(str(exc), EXIT_USAGE)
    return open_response_cache(location or store_url, ttl=seconds, run=run, write_every=write_every)


def close_cli_response_cache(response_cache: ResponseCache, done: str | None = None) -> None:
    """Close the response cache. Its writes failing is a note, not the command's failure (the
    chats were made, and `done` says what became of them): the cache stopped working (see
    `ResponseCache.failure`), and the next run asks for what it did not keep."""
    from jib.storage import StoreError

    try:
        response_cache.close()
    except StoreError as exc:
        then = f"; {done}" if done else ""
        err_console.print(
            f"note: the response cache stopped working ({exc}); requests were sent uncached{then}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def require_run(chat_store: ChatStore, run: str) -> None:
    """Stop with a clear error when the store holds no record of `run`.

    Raises:
        CliError: no such run (the message names the store and how to list the runs).
    """
    if chat_store.count(run=run) == 0:
        fail(f"no run named {run!r} in {chat_store.url} (see the runs with `jib runs`)")
