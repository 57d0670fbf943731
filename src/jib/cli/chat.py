"""`jib chat`: one turn of a conversation, printed and stored."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from jib.chat import Chat
from jib.cli._common import (
    EXIT_FAILED,
    EXIT_USAGE,
    GENERATOR_ENV_VAR,
    AllowEnvOption,
    AllowHostOption,
    GeneratorOption,
    ParamOption,
    StoreOption,
    TrustRemoteCodeOption,
    err_console,
    fail,
    handle_errors,
    open_cli_store,
    parse_params,
    resolve_generators,
    trust_policy,
)
from jib.messages import Message

__all__ = ["ChatUsage", "chat_command"]


class ChatUsage(TyperCommand):
    """Shows the usage as `jib chat [OPTIONS] [ID] PROMPT` (the arguments are one list)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """The usage line after the command name."""
        return ["[OPTIONS]", "[ID] PROMPT"]


def chat_command(
    arguments: Annotated[
        list[str],
        typer.Argument(
            metavar="[ID] PROMPT",
            help="An optional generator identifier, then the prompt. Without an ID the "
            f"generator comes from --generator, ${GENERATOR_ENV_VAR}, or (with --continue) the "
            "stored conversation.",
            show_default=False,
        ),
    ],
    generator: GeneratorOption = None,
    system: Annotated[
        str | None,
        typer.Option("--system", "-s", metavar="TEXT", help="A system message sent first."),
    ] = None,
    param: ParamOption = None,
    continue_: Annotated[
        bool,
        typer.Option(
            "--continue",
            help="Continue the last stored conversation (with its generator unless one is given).",
        ),
    ] = False,
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not store the chat.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the whole chat as JSON instead of the answer.")
    ] = False,
    store: StoreOption = None,
    allow_env: AllowEnvOption = None,
    allow_host: AllowHostOption = None,
    trust_remote_code: TrustRemoteCodeOption = False,
) -> None:
    """Send one prompt, print the answer, and store the chat.

    With --continue and no ID, the stored conversation's identifier is data: it may not read
    environment variables beyond provider keys, send your key to a host it chose, or run code,
    unless --allow-env, --allow-host or --trust-remote-code says so (docs/security.md).

    \b
    Example (single-quote identifiers holding ! in bash/zsh):
      jib chat 'echo!demo' "Hello there"
    """
    with handle_errors():
        if len(arguments) > 2:
            fail(
                f"expected [ID] PROMPT, got {len(arguments)} arguments; quote a prompt that "
                'has spaces: jib chat ID "your prompt"',
                EXIT_USAGE,
            )
        identifier = [arguments[0]] if len(arguments) == 2 else []
        prompt = arguments[-1]
        identifiers = [*identifier, *(generator or [])]
        if len(identifiers) > 1:
            fail("jib chat takes one generator; use `jib run` for several", EXIT_USAGE)
        params = parse_params(param)
        chat_store = None if no_store and not continue_ else open_cli_store(store)
        try:
            if continue_:
                if system:
                    fail("--system cannot be used with --continue", EXIT_USAGE)
                assert chat_store is not None
                previous = chat_store.last(kind="chat", rebuild_generator=False)
                if previous is None:
                    fail(f"no stored conversation to continue in {chat_store.url}")
                assert isinstance(previous, Chat)
                if identifiers:
                    model = resolve_generators(identifiers, command="chat")[0]
                else:
                    model = resolve_generators(
                        [previous.generator_id or ""],
                        command="chat",
                        trusted=trust_policy(allow_env, allow_host, trust_remote_code),
                    )[0]
                pipeline = model.chat([*previous.all, Message("user", prompt)]).with_(params)
                pipeline = pipeline.meta(**previous.metadata, continued_from=previous.id)
            else:
                model = resolve_generators(identifiers, command="chat")[0]
                messages = [Message("system", system)] if system else []
                pipeline = model.chat([*messages, Message("user", prompt)]).with_(params)
            record = asyncio.run(pipeline.catch(Exception).run(on_failed="include"))
            if chat_store is not None and not no_store:
                chat_store.save(record)
        finally:
            if chat_store is not None:
                chat_store.close()
        if json_output:
            typer.echo(record.to_json())
        elif not record.failed:
            typer.echo(record.content)
        if record.failed:
            fail(f"{type(record.error).__name__}: {record.error}", EXIT_FAILED)
        if not no_store and not json_output:
            err_console.print(
                f"[dim]stored as {record.id[:12]} (jib show {record.id[:12]})[/]", highlight=False
            )
