"""`jib run`: every prompt of a dataset against every generator, stored as it goes."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from jib.cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    AllowEnvOption,
    AllowHostOption,
    AllowOptionOption,
    CacheOption,
    CacheStoreOption,
    CacheTTLOption,
    GeneratorOption,
    ParamOption,
    StoreOption,
    TrustRemoteCodeOption,
    close_cli_response_cache,
    err_console,
    fail,
    handle_errors,
    open_cli_response_cache,
    open_cli_store,
    out_console,
    parse_params,
    resolve_generators,
    trust_policy,
)
from jib.cli._dataset_files import DataAllowances
from jib.cli._progress import GeneratorStats, Reporter, RichReporter, TextReporter
from jib.cli._prompts import DEFAULT_MAX_LINE, MIB, PromptsFile, PromptsFormat
from jib.cli._summary import summary_lines
from jib.cost import PRICES_ENV_VAR, PriceError, Prices
from jib.messages import Message, Usage
from jib.params import GenerateParams

if TYPE_CHECKING:
    from jib.batch_api import BatchAPISettings
    from jib.cli._runner import RunPlan
    from jib.generator.base import Generator
    from jib.storage import ChatStore, ResponseCache

__all__ = ["run_command"]

STOP_AFTER = 5
"""Default of `--stop-after`: authentication/bad-request failures in a row that stop a generator."""


def _default_run_name() -> str:
    return datetime.now(timezone.utc).strftime("run-%Y%m%d-%H%M%S")


def run_command(
    identifiers: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="ID",
            help="Generator identifiers, e.g. echo!demo or openai/gpt-4o-mini. "
            "Combined with any --generator; with neither, $JIB_GENERATOR.",
            show_default=False,
        ),
    ] = None,
    prompts: Annotated[
        Path | None,
        typer.Option(
            "--prompts",
            "-f",
            metavar="FILE",
            help="The dataset, - for stdin: .txt (one prompt per line), .jsonl (one per line: "
            '"text", [messages], or {"prompt"|"messages": …, "id": …, "params": {…}, '
            '"attachments": [files], other keys kept as metadata}) or .csv (a header row; see '
            "--column).",
            show_default=False,
        ),
    ] = None,
    prompts_format: Annotated[
        PromptsFormat | None,
        typer.Option(
            "--prompts-format",
            help="txt, jsonl or csv. Default: from the file's suffix; for stdin, jsonl when the "
            "first line is a JSON object or list, else txt.",
            show_default=False,
        ),
    ] = None,
    column: Annotated[
        str | None,
        typer.Option(
            "--column",
            metavar="NAME",
            help="The column (.csv) or key (.jsonl) holding the prompt. Default: 'prompt', or a "
            "CSV's only column. Other columns are kept as metadata; 'id' names the prompt.",
            show_default=False,
        ),
    ] = None,
    max_line_mib: Annotated[
        int,
        typer.Option(
            "--max-line-mib",
            min=1,
            metavar="N",
            help="The longest line (and CSV field) of the dataset, in MiB of text; a longer one "
            "is refused with an error naming its line.",
        ),
    ] = DEFAULT_MAX_LINE // MIB,
    generator: GeneratorOption = None,
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            "-r",
            metavar="NAME",
            help="Name of the run the chats are stored under. Default: run-YYYYMMDD-HHMMSS.",
            show_default=False,
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag",
            "-t",
            metavar="TAG",
            help="A tag stored with every chat (repeatable); filter with jib log/export --tag.",
            show_default=False,
        ),
    ] = None,
    repeat: Annotated[
        int,
        typer.Option(
            "--repeat",
            min=1,
            metavar="N",
            help="Samples per prompt and generator, each stored with its sample index (0…N-1).",
        ),
    ] = 1,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Finish --run NAME: skip what it stored (per generator, prompt id and sample) "
            "and run the rest, including chats that failed with a retryable error (rate limit, "
            "timeout, server or connection error), whose new chat replaces the failure.",
        ),
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="With --resume: also run again every other stored failure (authentication, "
            "bad request, …), e.g. once the key is fixed.",
        ),
    ] = False,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            "-c",
            min=1,
            metavar="N",
            help="Most prompts in flight at once; a remote generator whose identifier sets no "
            "max_connections may then send N requests at once (its identifier unchanged).",
        ),
    ] = 8,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            metavar="N",
            help="Prompts per generator call (default: concurrency/4, at least 1).",
            show_default=False,
        ),
    ] = None,
    system: Annotated[
        str | None,
        typer.Option(
            "--system",
            "-s",
            metavar="TEXT",
            help="A system message sent before every prompt that has none of its own (a "
            "dataset line's own system message wins; the two are never both sent).",
        ),
    ] = None,
    param: ParamOption = None,
    tools: Annotated[
        Path | None,
        typer.Option(
            "--tools",
            metavar="FILE",
            help="Tool definitions the models may call (JSON or YAML: a list of OpenAI-shaped "
            'tools, {"type": "function", "function": {"name", "description", "parameters"}}). '
            "The calls a model makes are recorded in its answer; none is run.",
            show_default=False,
        ),
    ] = None,
    schema: Annotated[
        str | None,
        typer.Option(
            "--schema",
            metavar="FILE|JSON",
            help="A JSON Schema (a .json or .yaml file, or the schema itself as JSON) every "
            "answer must fit: sent as response_format; each answer is validated, its value "
            "stored as the chat's output, and the summary counts the valid ones.",
            show_default=False,
        ),
    ] = None,
    stop_after: Annotated[
        int,
        typer.Option(
            "--stop-after",
            min=0,
            metavar="N",
            help="Stop a generator after N authentication or bad-request failures in a row; "
            "the other generators go on (0: never stop).",
        ),
    ] = STOP_AFTER,
    price: Annotated[
        list[str] | None,
        typer.Option(
            "--price",
            metavar="MODEL=IN,OUT",
            help="US dollars per million input and output tokens for a model, e.g. "
            f"'echo!demo=0.15,0.60' (repeatable; also a file of such lines in ${PRICES_ENV_VAR}). "
            "LiteLLM models default to LiteLLM's bundled prices.",
            show_default=False,
        ),
    ] = None,
    max_cost: Annotated[
        float | None,
        typer.Option(
            "--max-cost",
            min=0,
            metavar="USD",
            help="Stop sending requests once this command has spent this much on chats with a "
            "known cost; what is in flight finishes and is stored. Finish later with --resume.",
            show_default=False,
        ),
    ] = None,
    batch_api: Annotated[
        bool,
        typer.Option(
            "--batch-api",
            help="Send the requests through the providers' batch APIs (half price, answered "
            "within hours): openai! (any server speaking OpenAI's files and batches protocol) "
            "and anthropic/… models. Batches are kept in the store before waiting: --resume "
            "polls them, never submits twice. See `jib batches`.",
        ),
    ] = False,
    batch_api_fallback: Annotated[
        bool,
        typer.Option(
            "--batch-api-fallback",
            help="With --batch-api: send the requests a batch failed or did not run directly, "
            "at the normal price, instead of in a new batch.",
        ),
    ] = False,
    batch_api_max_requests: Annotated[
        int | None,
        typer.Option(
            "--batch-api-max-requests",
            min=1,
            metavar="N",
            help="Most requests per provider batch. Default: the provider's (OpenAI 50,000; "
            "Anthropic 100,000).",
            show_default=False,
        ),
    ] = None,
    batch_api_max_bytes: Annotated[
        int | None,
        typer.Option(
            "--batch-api-max-bytes",
            min=1,
            metavar="BYTES",
            help="Most bytes of input per provider batch. Default: the provider's (OpenAI "
            "200 MB; Anthropic 256 MB).",
            show_default=False,
        ),
    ] = None,
    batch_api_poll: Annotated[
        float,
        typer.Option(
            "--batch-api-poll",
            min=0,
            metavar="SECONDS",
            help="First wait between two polls of a batch; it grows by half each time, up to "
            "5 minutes.",
        ),
    ] = 10.0,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Live progress bars, or plain text lines. Default: bars on a terminal.",
            show_default=False,
        ),
    ] = None,
    store: StoreOption = None,
    cache: CacheOption = False,
    cache_ttl: CacheTTLOption = None,
    cache_store: CacheStoreOption = None,
    allow_env: AllowEnvOption = None,
    allow_host: AllowHostOption = None,
    allow_option: AllowOptionOption = None,
    allow_path: Annotated[
        list[Path] | None,
        typer.Option(
            "--allow-path",
            metavar="DIR",
            help="Let the dataset attach files in DIR (repeatable); by default only files inside "
            "the dataset's own folder.",
            show_default=False,
        ),
    ] = None,
    allow_fetch: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-fetch",
            metavar="HOST",
            help="Let the dataset's parts name URLs on HOST for generators that fetch them from "
            "this machine (local models, LiteLLM); repeatable, '*' for any host.",
            show_default=False,
        ),
    ] = None,
    trust_remote_code: TrustRemoteCodeOption = False,
) -> None:
    """Run every prompt of a dataset against every generator, storing each chat as it finishes.

    A live progress bar shows rate and ETA; failed chats are stored as failures and the run goes
    on; a summary table follows (ok/failed, p50/p95 latency, tokens and cost per generator).
    Exit status: 0 when every chat succeeded (with --cache, even when the cache could not be
    read or written: a note says so), 1 when some failed, a generator was stopped, --max-cost was
    reached or the store could not be written (finish with --resume), 2 on bad input, 130 when
    interrupted (finish with --resume).

    A dataset is data: the files its lines attach must be inside its own folder, and URLs in
    its parts are not fetched from this machine, unless --allow-path or --allow-fetch says so.

    \b
    Example (single-quote identifiers holding ! in bash/zsh):
      jib run 'echo!demo' --prompts examples/prompts.txt
    """
    with handle_errors():
        if prompts is None:
            fail(
                "missing --prompts FILE (.txt, one prompt per line; .jsonl; .csv; or - for stdin)",
                EXIT_USAGE,
            )
        if resume and not run:
            fail("--resume needs --run NAME: the run to finish (see `jib runs`)", EXIT_USAGE)
        if retry_failed and not resume:
            fail("--retry-failed goes with --resume --run NAME (the run to finish)", EXIT_USAGE)
        batch_api_settings = _batch_api_settings(
            batch_api,
            batch_api_fallback,
            batch_api_max_requests,
            batch_api_max_bytes,
            batch_api_poll,
            max_cost=max_cost,
            run_name=run,
        )
        params = parse_params(param)
        answer_schema = None
        if tools is not None:
            from jib.cli._tools_file import load_tools

            params = params.merge_with(GenerateParams(tools=load_tools(tools)))
        if schema is not None:
            from jib.cli._schema import AnswerSchema

            answer_schema = AnswerSchema.load(schema)
            params = params.merge_with(
                GenerateParams(response_format=answer_schema.response_format)
            )
        prices = _prices(price)
        generators = _with_concurrency(
            resolve_generators([*(identifiers or []), *(generator or [])], command="run"),
            concurrency,
        )
        prompts_file = PromptsFile(
            prompts,
            format=prompts_format,
            column=column,
            trust=trust_policy(allow_env, allow_host, trust_remote_code, allow_option),
            max_line=max_line_mib * MIB,
            allowances=DataAllowances.of(map(str, allow_path or ()), allow_fetch),
        )
        if prompts_file.refused_lines:
            _note_refused(prompts_file)
        run_name = run or _default_run_name()
        if max_cost is not None:
            _warn_unpriced(generators, prices)

        from jib.cli._runner import ResumeIndex, execute, plan_run
        from jib.storage import StoreError
        from jib.storage._response_cache import WRITE_SLICE

        with open_cli_store(store) as chat_store:
            # Answers kept before they are written, in one transaction: the cache's write slice.
            response_cache = open_cli_response_cache(
                cache, cache_ttl, cache_store, store, run=run_name, write_every=WRITE_SLICE
            )
            if response_cache is not None:
                response_cache.price = prices.cost
                _note_uncacheable(generators)
            index = None
            if resume:
                index = ResumeIndex(chat_store.stored_results(run_name), retry_failed=retry_failed)
                if not index:  # most often a mistyped run name
                    _note(
                        f"note: run {run_name} has nothing stored in {chat_store.url} yet, so "
                        "every prompt runs (see the run names with `jib runs`)"
                    )
            plan = plan_run(
                generators,
                prompts_file,
                system=[Message("system", system)] if system else [],
                params=params,
                run=run_name,
                resume=index,
                repeat=repeat,
                tags=tag or [],
                prices=prices,
                stop_after=stop_after,
                max_cost=max_cost,
                schema=answer_schema,
            )
            if batch_api_settings is not None:
                from jib.cli._batch_api_runner import check_batch_api

                check_batch_api(plan)
            plan.response_cache = response_cache
            samples = f" × {repeat} samples" if repeat > 1 else ""
            err_console.print(
                f"run [bold]{escape(run_name)}[/]: {prompts_file.count} prompts{samples} × "
                f"{len(generators)} generator(s) → {escape(chat_store.url)}",
                highlight=False,
            )
            use_bars = progress if progress is not None else err_console.is_terminal
            reporter: Reporter = (
                RichReporter(err_console) if use_bars else TextReporter(err_console)
            )
            try:
                if batch_api_settings is None:
                    asyncio.run(
                        execute(
                            plan,
                            chat_store,
                            reporter,
                            concurrency=concurrency,
                            batch_size=batch_size,
                        )
                    )
                else:
                    _run_batch_api(plan, chat_store, reporter, batch_api_settings)
            except KeyboardInterrupt:
                _note(f"interrupted: {_resume_hint(chat_store, run_name)}")
                if batch_api_settings is not None:
                    _note(
                        "the provider batches already submitted go on: --resume collects them "
                        "(see them with `jib batches`)"
                    )
                raise typer.Exit(EXIT_INTERRUPTED) from None
            except StoreError as exc:  # storing a chunk failed: stop, say what is kept
                fail(f"{exc}; {_resume_hint(chat_store, run_name)}", EXIT_FAILED)
            finally:
                if response_cache is not None:
                    close_cli_response_cache(response_cache, "the chats are stored")
        _print_summary(
            plan.stats,
            resumed=resume,
            tools=tools is not None,
            schema=schema is not None,
            cache=response_cache is not None,
        )
        if response_cache is not None:
            _note_cache(plan.stats, response_cache)
        _print_hints(run_name, plan.generators, prompts_file.label)
        _finish(plan)


def _batch_api_settings(
    enabled: bool,
    fallback: bool,
    max_requests: int | None,
    max_bytes: int | None,
    poll: float,
    *,
    max_cost: float | None,
    run_name: str | None,
) -> BatchAPISettings | None:
    """The `--batch-api…` options as settings (`None` without `--batch-api`)."""
    if not enabled:
        if fallback or max_requests or max_bytes:
            fail("--batch-api-fallback and --batch-api-max-… go with --batch-api", EXIT_USAGE)
        return None
    if max_cost is not None:
        fail(
            "--max-cost cannot stop a --batch-api run: its requests are all submitted at once "
            "and priced when their batches end",
            EXIT_USAGE,
        )
    from jib.batch_api import BatchAPISettings

    return BatchAPISettings(
        max_requests=max_requests,
        max_bytes=max_bytes,
        poll_seconds=poll,
        max_poll_seconds=max(poll, 300.0),
        fallback=fallback,
        label=run_name or "jib",
    )


def _run_batch_api(
    plan: RunPlan, chat_store: ChatStore, reporter: Reporter, settings: BatchAPISettings
) -> None:
    from dataclasses import replace

    from jib.cli._batch_api_runner import execute_with_batch_api

    counts = asyncio.run(
        execute_with_batch_api(plan, chat_store, reporter, replace(settings, label=plan.run))
    )
    _note(
        f"batch API: {counts.submitted} batch(es) submitted"
        + (f", {counts.resumed} resumed" if counts.resumed else "")
    )


def _with_concurrency(generators: list[Generator], concurrency: int) -> list[Generator]:
    """The generators, each request-based one whose identifier sets no `max_connections`
    allowed `concurrency` requests in flight (its identifier unchanged, so `--resume` with
    another `-c` still matches)."""
    from jib.generator.remote import RequestGenerator

    return [
        generator.with_concurrency(concurrency)
        if isinstance(generator, RequestGenerator)
        else generator
        for generator in generators
    ]


def _note_uncacheable(generators: list[Generator]) -> None:
    for generator in generators:
        refusal = generator.response_cache_refusal()
        if refusal is not None:
            _note(f"note: --cache: {generator.to_identifier(short=True)}: {refusal}")


def _note_cache(stats: list[GeneratorStats], response_cache: ResponseCache) -> None:
    """The response cache's line under the summary: hits, misses, what the hits saved."""
    hits = sum(s.cache_hits for s in stats)
    misses = sum(s.cache_misses for s in stats)
    saved = sum(s.cache_saved for s in stats)
    saved_text = f", saved ${saved:.4f}" if saved else ""
    _note(
        f"response cache ({response_cache.url}): {hits} hits, {misses} misses{saved_text}; "
        "see `jib cache`"
    )


def _note(text: str) -> None:
    err_console.print(text, markup=False, highlight=False, soft_wrap=True)


def _prices(items: list[str] | None) -> Prices:
    """`$JIB_PRICES`'s prices overridden by `--price` options."""
    try:
        prices = Prices()
        path = os.environ.get(PRICES_ENV_VAR, "").strip()
        if path:
            prices = Prices.from_file(path)
        return prices.merged(Prices.parse(items or ()))
    except PriceError as exc:
        fail(str(exc), EXIT_USAGE)


def _warn_unpriced(generators: list[Generator], prices: Prices) -> None:
    unpriced = [g for g in generators if prices.cost(g, Usage(1, 1)) is None]
    if unpriced:
        names = ", ".join(g.to_identifier() for g in unpriced)
        _note(
            f"note: --max-cost counts only chats with a known cost, and {names} has none: set "
            "one with --price MODEL=IN,OUT"
        )


def _finish(plan: RunPlan) -> None:
    """The last line and the exit status: what failed, stopped or was left to run."""
    stats = plan.stats
    resume_hint = f"finish with --run {plan.run} --resume"
    problems: list[str] = []
    failed = sum(s.failed for s in stats)
    if failed:
        first = next(s.first_error for s in stats if s.first_error)
        problems.append(
            f"{failed} of {sum(s.done for s in stats)} chats failed (first: {first}); see "
            f"`jib log --run {plan.run} --failed`"
        )
    for s in stats:
        if s.stopped:
            problems.append(f"{s.stopped}; fix that, then {resume_hint} --retry-failed")
    if plan.halted:
        left = sum(s.total - s.done for s in stats)
        problems.append(f"stopped at {plan.halted} with {left} chats not run; {resume_hint}")
    kept = sum(s.kept_failed for s in stats)
    if kept:
        _note(
            f"note: {kept} stored failures were not retried (their errors are not retryable); "
            "run them again with --resume --retry-failed"
        )
    if problems:
        fail("; ".join(problems), EXIT_FAILED)


def _resume_hint(chat_store: ChatStore, run_name: str) -> str:
    """What is stored of the run, and the command that finishes it."""
    from jib.storage import StoreError

    try:
        stored = f"{chat_store.count(run=run_name)} chats of run {run_name} are stored"
    except StoreError:  # the store itself is what failed
        stored = f"the chats of run {run_name} stored so far are kept"
    return f"{stored}; finish with --run {run_name} --resume"


def _print_summary(
    stats: list[GeneratorStats], *, resumed: bool, tools: bool, schema: bool, cache: bool = False
) -> None:
    lines = summary_lines(
        stats, resumed=resumed, width=out_console.width, tools=tools, schema=schema, cache=cache
    )
    for line in lines:
        out_console.print(line, soft_wrap=True)


def _note_refused(prompts_file: PromptsFile) -> None:
    """Say up front which lines attach files outside the dataset's folder (each fails alone)."""
    lines = prompts_file.refused_lines
    shown = ", ".join(str(line) for line in lines[:10]) + (" …" if len(lines) > 10 else "")
    _note(
        f"note: {len(lines)} line(s) of {prompts_file.name} attach files outside its folder and "
        f"will fail (lines {shown}); allow a folder with --allow-path DIR"
    )


def _print_hints(run_name: str, generators: list[Generator], shown: str) -> None:
    _note(
        f"See the chats: jib log --run {run_name}  ·  side by side: jib compare --run "
        f"{run_name}  ·  report: jib report --run {run_name} -o {run_name}.html"
    )
    if generators and all(type(generator).offline for generator in generators):
        shown = "FILE" if shown == "-" else shown
        _note(
            "This run used an offline test generator. Swap in a real model, e.g.:\n"
            f"  jib run openai/gpt-4o-mini --prompts {shown}    (key from OPENAI_API_KEY)\n"
            f'  jib run "ollama_chat/qwen3:0.6b,api_base=http://localhost:11434" --prompts {shown}'
        )
