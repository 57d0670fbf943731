"""`jib chat`: one turn of a conversation, printed and stored.

The arguments are `[ID] PROMPT`. Which is which, when there is one argument: it is the prompt,
unless the prompt comes on stdin (`echo hi | jib chat 'echo!demo'`), which is read when stdin is
not a terminal and the argument reads as an identifier or no generator is given otherwise.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text
from typer.core import TyperCommand

from jib._syntax import IdentifierSyntaxError, parse_identifier
from jib.chat import Chat
from jib.cli._attachments import AttachmentError, part_from_source
from jib.cli._common import (
    EXIT_FAILED,
    EXIT_USAGE,
    GENERATOR_ENV_VAR,
    AllowEnvOption,
    AllowHostOption,
    AllowOptionOption,
    CacheOption,
    CacheStoreOption,
    CacheTTLOption,
    ParamOption,
    StoreOption,
    TrustRemoteCodeOption,
    close_cli_response_cache,
    err_console,
    fail,
    handle_errors,
    one_line,
    open_cli_response_cache,
    open_cli_store,
    parse_params,
    quiet_litellm,
    resolve_generators,
    trust_policy,
)
from jib.cli._message_view import call_line
from jib.cli._skipped import counting_unreadable
from jib.cli._terminal import printable
from jib.content import ContentPart
from jib.generator.base import Generator
from jib.identifiers import get_generator
from jib.messages import Message
from jib.registry import registered_providers

if TYPE_CHECKING:
    from jib.storage import ChatStore, ResponseCache
    from jib.trust import TrustPolicy

__all__ = ["ChatUsage", "chat_command", "looks_like_identifier"]


class ChatUsage(TyperCommand):
    """Shows the usage as `jib chat [OPTIONS] [ID] PROMPT` (the arguments are one list)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """The usage line after the command name."""
        return ["[OPTIONS]", "[ID] PROMPT"]


def looks_like_identifier(text: str) -> bool:
    """Whether `text` reads as an identifier rather than a prompt.

    It must hold no whitespace, follow the grammar, and name a registered provider
    (`echo!demo`), a provider path (`openai/gpt-4o`) or set a key (`gpt-4o,temperature=0`). A
    bare word such as `hi` or `gpt-4o` does not count: either could be a prompt.
    """
    if not text or any(char.isspace() for char in text):
        return False
    try:
        parsed = parse_identifier(text)
    except IdentifierSyntaxError:
        return False
    if parsed.provider is not None:
        return parsed.provider in registered_providers()
    return "/" in parsed.model or bool(parsed.kwargs)


def _has_spaced_model(text: str) -> bool:
    """Whether `text` parses as an identifier whose model name holds whitespace: a prompt,
    since no model is named that way (an identifier writes a space as %20)."""
    try:
        model = parse_identifier(text).model
    except IdentifierSyntaxError:
        return False
    return any(char.isspace() for char in model)


def _read_stdin() -> str | None:
    """The prompt piped on stdin, or `None` when stdin is a terminal, closed or empty.

    Raises:
        CliError: what was piped is not UTF-8 text.
    """
    stream = sys.stdin
    if stream is None or stream.closed or stream.isatty():
        return None
    data = stream.buffer.read() if hasattr(stream, "buffer") else stream.read().encode()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        fail(f"the prompt on stdin is not UTF-8 text ({exc.reason} at byte {exc.start})")
    text = text.rstrip("\r\n")
    return text if text.strip() else None


def _identifiers_and_prompt(
    arguments: Sequence[str], *, generator_given: bool
) -> tuple[list[str], str]:
    """Split `[ID] PROMPT` into the identifiers and the prompt (read from stdin if need be).

    Raises:
        CliError: too many arguments, ID and PROMPT swapped, or no prompt anywhere.
    """
    if len(arguments) > 2:
        fail(
            f"expected [ID] PROMPT, got {len(arguments)} arguments; quote a prompt that "
            'has spaces: jib chat ID "your prompt"',
            EXIT_USAGE,
        )
    if len(arguments) == 2:
        first, second = arguments
        if looks_like_identifier(second) and not looks_like_identifier(first):
            fail(
                f"{second!r} looks like the generator identifier and {first!r} like the "
                f"prompt: the identifier comes first (jib chat '{second}' \"{first}\"); to send "
                f"{second!r} as the prompt, give the generator with -g",
                EXIT_USAGE,
            )
        if _has_spaced_model(first):
            fail(
                f"{first!r} is not a generator identifier (its model name holds spaces); "
                'jib chat takes [ID] PROMPT: quote the prompt as one argument (jib chat ID "a '
                'prompt with spaces")',
                EXIT_USAGE,
            )
        return [first], second
    if len(arguments) == 1:
        [only] = arguments
        identifier_like = looks_like_identifier(only)
        if identifier_like or not (generator_given or _has_spaced_model(only)):
            piped = _read_stdin()
            if piped is not None:
                return [only], piped
            if identifier_like and not generator_given:
                fail(
                    f"no prompt: {only!r} is a generator identifier; give the prompt after it "
                    f"(jib chat '{only}' \"Hello\") or on stdin (echo Hello | jib chat '{only}')",
                    EXIT_USAGE,
                )
        return [], only
    piped = _read_stdin()
    if piped is None:
        fail(
            'no prompt: give one (jib chat ID "Hello") or pipe it on stdin '
            "(echo Hello | jib chat ID)",
            EXIT_USAGE,
        )
    return [], piped


def _stored_generator(previous: Chat, trusted: TrustPolicy) -> Generator:
    """The generator a stored chat was made with, rebuilt from its identifier.

    The identifier is data read from the store, not something the user typed: it goes to
    `get_generator` as it is (no `spec=@file`), under the trust policy the user's flags set.

    Raises:
        CliError: the chat has no identifier.
        InvalidGeneratorError: the identifier is not valid here.
        UntrustedIdentifierError: it asks for what the policy does not allow (the message says
            which flag allows it).
    """
    if not previous.generator_id:
        fail(
            f"chat {previous.id[:12]} has no generator identifier; give one: "
            f'jib chat --cid {previous.id[:12]} ID "PROMPT"',
            EXIT_USAGE,
        )
    generator = get_generator(previous.generator_id, trusted=trusted)
    quiet_litellm([generator])
    return generator


async def _run_all(pipelines: Sequence[Any]) -> list[Chat]:
    runs = (pipeline.catch(Exception).run(on_failed="include") for pipeline in pipelines)
    return list(await asyncio.gather(*runs))


async def _stream_one(pipeline: Any) -> list[Chat]:
    """Run one pipeline, writing the answer to stdout as it comes (control characters shown)."""
    stream = pipeline.catch(Exception).stream(on_failed="include")
    wrote = False
    async for delta in stream:
        sys.stdout.write(printable(delta))
        sys.stdout.flush()
        wrote = True
    if wrote:
        sys.stdout.write("\n")
        sys.stdout.flush()
    return [stream.chat]


def chat_command(
    arguments: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[ID] PROMPT",
            help="An optional generator identifier, then the prompt. Without an ID the "
            f"generator comes from --generator, ${GENERATOR_ENV_VAR}, or (with --continue/--cid) "
            "the stored conversation. Without a PROMPT it is read from stdin "
            "(echo hi | jib chat ID).",
            show_default=False,
        ),
    ] = None,
    generator: Annotated[
        list[str] | None,
        typer.Option(
            "--generator",
            "-g",
            metavar="ID",
            help="A generator identifier (repeatable: every generator answers the same prompt, "
            f"each chat is stored). Default: ${GENERATOR_ENV_VAR}.",
            show_default=False,
        ),
    ] = None,
    system: Annotated[
        str | None,
        typer.Option("--system", "-s", metavar="TEXT", help="A system message sent first."),
    ] = None,
    attach: Annotated[
        list[str] | None,
        typer.Option(
            "--attach",
            "-a",
            metavar="FILE|URL",
            help="Attach a file or URL to the prompt (repeatable): an image, audio (wav, mp3, "
            "ogg, flac) or a document (PDF, text, office files), told by its suffix.",
            show_default=False,
        ),
    ] = None,
    param: ParamOption = None,
    continue_: Annotated[
        bool,
        typer.Option(
            "--continue",
            help="Continue the last stored conversation (with its generator unless one is given).",
        ),
    ] = False,
    cid: Annotated[
        str | None,
        typer.Option(
            "--cid",
            metavar="CHAT_ID",
            help="Continue this stored conversation (an id or a unique prefix, as jib show "
            "takes), with its generator unless one is given.",
            show_default=False,
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag",
            "-t",
            metavar="TAG",
            help="Tag the stored chat (repeatable); find it with jib log --tag TAG.",
            show_default=False,
        ),
    ] = None,
    stream: Annotated[
        bool,
        typer.Option(
            "--stream/--no-stream",
            help="Print the answer as it is generated (one generator, without --json); "
            "--no-stream waits for the whole answer.",
        ),
    ] = True,
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not store the chat.")] = False,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the whole chat as JSON instead of the answer (one line per generator).",
        ),
    ] = False,
    store: StoreOption = None,
    cache: CacheOption = False,
    cache_ttl: CacheTTLOption = None,
    cache_store: CacheStoreOption = None,
    allow_env: AllowEnvOption = None,
    allow_host: AllowHostOption = None,
    allow_option: AllowOptionOption = None,
    trust_remote_code: TrustRemoteCodeOption = False,
) -> None:
    """Send one prompt, print the answer, and store the chat.

    With --continue and no ID, the stored conversation's identifier is data: it may not read
    environment variables beyond provider keys, send your key to a host it chose, or run code,
    unless --allow-env, --allow-host or --trust-remote-code says so (docs/security.md).

    \b
    Examples (single-quote identifiers holding ! in bash/zsh):
      jib chat 'echo!demo' "Hello there"
      echo "Hello there" | jib chat 'echo!demo'
      jib chat --continue "And then?"
      jib chat openai/gpt-4o-mini "What is in this picture?" -a cat.png
    """
    with handle_errors():
        if continue_ and cid:
            fail("--continue takes the last conversation, --cid a given one: use one", EXIT_USAGE)
        continuing = continue_ or cid is not None
        generator_given = (
            bool(generator) or continuing or bool(os.environ.get(GENERATOR_ENV_VAR, "").strip())
        )
        named, prompt = _identifiers_and_prompt(arguments or [], generator_given=generator_given)
        identifiers = [*named, *(generator or [])]
        if continuing and system:
            fail("--system cannot be used with --continue or --cid", EXIT_USAGE)
        params = parse_params(param)
        parts = _attachments(attach or [])
        response_cache = open_cli_response_cache(cache, cache_ttl, cache_store, store)
        chat_store = None if no_store and not continuing else open_cli_store(store)
        saved = False
        try:
            messages = [Message("system", system)] if system else []
            metadata: dict[str, Any] = {}
            previous = None
            if chat_store is not None and continuing:
                with counting_unreadable(err_console):
                    previous = _previous_chat(chat_store, cid)
                messages = list(previous.all)
                metadata = {**previous.metadata, "continued_from": previous.id}
            if previous is not None and not identifiers:
                models = [
                    _stored_generator(
                        previous,
                        trust_policy(allow_env, allow_host, trust_remote_code, allow_option),
                    )
                ]
            else:
                models = resolve_generators(identifiers, command="chat")
            messages.append(Message("user", [prompt, *parts]) if parts else Message("user", prompt))
            pipelines = [model.chat(messages).with_(params).meta(**metadata) for model in models]
            if response_cache is not None:
                pipelines = [_cached(pipeline, response_cache) for pipeline in pipelines]
            streamed = stream and len(pipelines) == 1 and not json_output
            if streamed:
                records = asyncio.run(_stream_one(pipelines[0]))
            else:
                records = asyncio.run(_run_all(pipelines))
            if chat_store is not None and not no_store:
                chat_store.save(records, tags=tag or ())
                saved = True
        finally:
            if chat_store is not None:
                chat_store.close()
            if response_cache is not None:
                close_cli_response_cache(response_cache, "the chat is stored" if saved else None)
        _print(records, json_output=json_output, stored=not no_store, streamed=streamed)


def _cached(pipeline: Any, response_cache: ResponseCache) -> Any:
    """`pipeline` through the response cache, unless its generator's answers cannot be cached
    (then a note says so and it runs as it is)."""
    refusal = pipeline.generator.response_cache_refusal()
    if refusal is None:
        return pipeline.with_response_cache(response_cache)
    err_console.print(
        f"note: --cache: {pipeline.generator.to_identifier(short=True)}: {refusal}",
        markup=False,
        highlight=False,
    )
    return pipeline


def _attachments(sources: Sequence[str]) -> list[ContentPart]:
    """The parts `-a` attaches, in order.

    Raises:
        CliError: a file is missing, too large or of a type jib cannot send (the message names
            it and what can be sent).
    """
    parts = []
    for source in sources:
        try:
            parts.append(part_from_source(source))
        except AttachmentError as exc:
            fail(f"-a: {exc}", EXIT_USAGE)
    return parts


def _previous_chat(chat_store: ChatStore, cid: str | None) -> Chat:
    """The stored chat to continue: the one `cid` names, else the last one that can be read.

    Raises:
        CliError: nothing is stored, or `cid` names a completion.
        RecordNotFoundError: no record (or several) has that id or prefix.
    """
    if cid is not None:
        found = chat_store.get(cid, rebuild_generator=False)
        if not isinstance(found, Chat):
            fail(f"{cid!r} is a stored completion, not a chat; only chats continue", EXIT_USAGE)
        return found
    last = chat_store.last(kind="chat", rebuild_generator=False)
    if last is None:
        fail(f"no stored conversation to continue in {chat_store.url}")
    assert isinstance(last, Chat)
    return last


def _print(
    records: Sequence[Chat], *, json_output: bool, stored: bool, streamed: bool = False
) -> None:
    """Each answer (or chat as JSON) on stdout, failures on stderr; exit 1 if any failed.

    A `streamed` answer is already on stdout.
    """
    several = len(records) > 1
    for index, record in enumerate(records):
        if json_output:
            typer.echo(record.to_json())
            continue
        if several:
            typer.echo(("\n" if index else "") + f"[{printable(record.generator_id or '?')}]")
        if not record.failed and not streamed:
            typer.echo(printable(record.content))
        if not record.failed:
            for call in record.last.tool_calls:
                typer.echo(printable(call_line(call.function.name, call.function.arguments)))
        elif several:
            error = one_line(f"{type(record.error).__name__}: {record.error}")
            typer.echo(f"error: [{printable(record.generator_id or '?')}] {error}", err=True)
    if stored and not json_output:
        ids = ", ".join(record.id[:12] for record in records)
        err_console.print(
            Text(f"stored as {ids} (jib show {records[0].id[:12]})", style="dim"), highlight=False
        )
    failed = [record for record in records if record.failed]
    if failed and not several:
        fail(f"{type(failed[0].error).__name__}: {failed[0].error}", EXIT_FAILED)
    if failed:
        fail(f"{len(failed)} of {len(records)} generators failed", EXIT_FAILED)
