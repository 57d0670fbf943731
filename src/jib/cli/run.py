"""`jib run`: every prompt of a file against every generator, stored as it goes (the main job)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from jib.cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
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
    out_console,
    parse_params,
    resolve_generators,
    trust_policy,
)
from jib.cli._progress import GeneratorStats, Reporter, RichReporter, TextReporter
from jib.cli._prompts import PromptsFile
from jib.messages import Message

if TYPE_CHECKING:
    from jib.storage import ChatStore

__all__ = ["run_command"]

OFFLINE_PROVIDERS = ("echo!", "fixed!", "fail!", "always_fail!")


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
            help="Prompts file: .txt (one prompt per line) or .jsonl (one conversation per "
            'line: "text", [messages], or {"prompt"|"messages": …, "params": {…}}).',
            show_default=False,
        ),
    ] = None,
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
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Skip the prompts this --run already stored (per generator), run the rest.",
        ),
    ] = False,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", "-c", min=1, metavar="N", help="Most prompts in flight at once."
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
            "--system", "-s", metavar="TEXT", help="A system message sent before every prompt."
        ),
    ] = None,
    param: ParamOption = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Live progress bars, or plain text lines. Default: bars on a terminal.",
            show_default=False,
        ),
    ] = None,
    store: StoreOption = None,
    allow_env: AllowEnvOption = None,
    allow_host: AllowHostOption = None,
    trust_remote_code: TrustRemoteCodeOption = False,
) -> None:
    """Run every prompt of a file against every generator, storing each chat as it finishes.

    A live progress bar shows rate and ETA; failed chats are stored as failures and the run goes
    on; a summary table follows. Exit status: 0 when every chat succeeded, 1 when some failed
    or the store could not be written (finish with --resume), 2 on bad input, 130 when
    interrupted (finish with --resume).

    \b
    Example (single-quote identifiers holding ! in bash/zsh):
      jib run 'echo!demo' --prompts examples/prompts.txt
    """
    with handle_errors():
        if prompts is None:
            fail("missing --prompts FILE (a .txt file, one prompt per line, or .jsonl)", EXIT_USAGE)
        if resume and not run:
            fail("--resume needs --run NAME: the run to finish (see `jib log`)", EXIT_USAGE)
        params = parse_params(param)
        generators = resolve_generators([*(identifiers or []), *(generator or [])], command="run")
        prompts_file = PromptsFile(prompts, trust_policy(allow_env, allow_host, trust_remote_code))
        run_name = run or _default_run_name()

        from jib.cli._runner import execute, plan_run
        from jib.storage import StoreError

        with open_cli_store(store) as chat_store:
            keys = chat_store.stored_keys(run_name) if resume else None
            if resume and not keys:  # most often a mistyped run name
                err_console.print(
                    f"note: run {run_name} has nothing stored in {chat_store.url} yet, so every "
                    "prompt runs (see the run names with `jib log`)",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )
            plan = plan_run(
                generators,
                prompts_file,
                system=[Message("system", system)] if system else [],
                params=params,
                run=run_name,
                resume_keys=keys,
            )
            total = sum(s.total for s in plan.stats)
            err_console.print(
                f"run [bold]{escape(run_name)}[/]: {prompts_file.count} prompts × "
                f"{len(generators)} generator(s) → {escape(chat_store.url)}",
                highlight=False,
            )
            use_bars = progress if progress is not None else err_console.is_terminal
            reporter: Reporter = (
                RichReporter(err_console) if use_bars else TextReporter(err_console)
            )
            try:
                if total:
                    asyncio.run(
                        execute(
                            plan,
                            chat_store,
                            reporter,
                            concurrency=concurrency,
                            batch_size=batch_size,
                        )
                    )
            except KeyboardInterrupt:
                err_console.print(
                    f"interrupted: {_resume_hint(chat_store, run_name)}",
                    markup=False,
                    soft_wrap=True,
                )
                raise typer.Exit(EXIT_INTERRUPTED) from None
            except StoreError as exc:  # storing a chunk failed: stop, say what is kept
                fail(f"{exc}; {_resume_hint(chat_store, run_name)}", EXIT_FAILED)
        _print_summary(plan.stats, resumed=resume)
        _print_hints(run_name, [s.label for s in plan.stats], prompts)
        failed = sum(s.failed for s in plan.stats)
        if failed:
            done = sum(s.done for s in plan.stats)
            first = next(s.first_error for s in plan.stats if s.first_error)
            fail(
                f"{failed} of {done} chats failed (first: {first}); see "
                f"`jib log --run {run_name} --failed`",
                EXIT_FAILED,
            )


def _resume_hint(chat_store: ChatStore, run_name: str) -> str:
    """What is stored of the run, and the command that finishes it."""
    from jib.storage import StoreError

    try:
        stored = f"{chat_store.count(run=run_name)} chats of run {run_name} are stored"
    except StoreError:  # the store itself is what failed
        stored = f"the chats of run {run_name} stored so far are kept"
    return f"{stored}; finish with --run {run_name} --resume"


def _print_summary(stats: list[GeneratorStats], *, resumed: bool) -> None:
    table = Table(title="Summary", title_justify="left")
    table.add_column("generator", overflow="fold")
    table.add_column("ok", justify="right")
    table.add_column("failed", justify="right")
    if resumed:
        table.add_column("skipped", justify="right")
    table.add_column("input tokens", justify="right")
    table.add_column("output tokens", justify="right")
    table.add_column("time", justify="right")
    table.add_column("chats/s", justify="right")
    for s in stats:
        rate = s.rate
        row = [s.label, str(s.ok), f"[red]{s.failed}[/]" if s.failed else "0"]
        if resumed:
            row.append(str(s.skipped))
        row += [
            f"{s.input_tokens:,}",
            f"{s.output_tokens:,}",
            f"{s.seconds:.1f}s",
            f"{rate:.1f}" if rate else "–",
        ]
        table.add_row(*row)
    out_console.print(table)


def _print_hints(run_name: str, labels: list[str], prompts: Path) -> None:
    shown = prompts.as_posix()
    err_console.print(
        f"See the chats: jib log --run {run_name}  ·  export: "
        f"jib export --run {run_name} --format csv -o {run_name}.csv",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if labels and all(label.startswith(OFFLINE_PROVIDERS) for label in labels):
        err_console.print(
            "This run used an offline test generator. Swap in a real model, e.g.:\n"
            f"  jib run openai/gpt-4o-mini --prompts {shown}    (key from OPENAI_API_KEY)\n"
            f'  jib run "ollama_chat/qwen3:0.6b,api_base=http://localhost:11434" --prompts {shown}',
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
