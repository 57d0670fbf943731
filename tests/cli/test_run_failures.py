"""`jib run` when things fail: resume retries what may work now, a broken generator stops early,
and `--max-cost` ends a run cleanly."""

from __future__ import annotations

from pathlib import Path

from jib.generator.http import HTTPGenerator
from jib.storage import open_store
from tests.cli.conftest import JibRunner, assert_one_clean_error_line
from tests.support.fault_server import RunningFaultServer


def openai_over_http(server: RunningFaultServer) -> str:
    """An `http!` identifier for the fault server's chat endpoint that never retries by itself."""
    generator = HTTPGenerator.for_json_endpoint(
        url=f"{server.url}/chat/completions",
        request_body={"model": "m", "messages": "$messages"},
        response={"content_path": "$.choices[0].message.content"},
        max_retries=0,
    )
    return generator.to_identifier()


def lines(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(f"{text}\n" for text in texts))
    return path


def test_resume_runs_again_what_failed_with_a_retryable_error_and_replaces_it(
    jib: JibRunner, fault_server: RunningFaultServer, tmp_path: Path, default_store: Path
) -> None:
    identifier = openai_over_http(fault_server)
    # The server answers 429 to the first request of each flaky prompt, then answers.
    prompts = lines(tmp_path / "p.txt", ["steady one", "flaky:1:a", "steady two", "flaky:1:b"])
    first = jib("run", identifier, "-f", str(prompts), "-r", "r", "-c", "1")
    assert_one_clean_error_line(first, "2 of 4 chats failed", "RateLimitError")
    with open_store(default_store) as store:
        failed_ids = {c.id for c in store.query(run="r", failed=True, rebuild_generator=False)}

    second = jib("run", identifier, "-f", str(prompts), "-r", "r", "--resume", "--no-progress")

    assert second.code == 0, second.stderr
    assert "2 to run (2 already stored, skipped; 2 failed before, run again)" in second.stderr
    with open_store(default_store) as store:
        chats = store.query(run="r", rebuild_generator=False)
    assert len(chats) == 4
    assert not any(c.failed for c in chats)
    assert not failed_ids & {c.id for c in chats}
    assert sorted(c.metadata["prompt_id"] for c in chats) == ["1", "2", "3", "4"]
    assert len(fault_server.state.requests) == 6


def test_resume_keeps_failures_that_are_not_retryable_unless_asked(
    jib: JibRunner, prompts_file: Path, default_store: Path
) -> None:
    generator = "always_fail!key,error=AuthenticationError"
    args = ["run", generator, "-f", str(prompts_file), "-r", "auth", "--stop-after", "0"]
    assert jib(*args).code == 1
    with open_store(default_store) as store:
        first_ids = {c.id for c in store.query(run="auth", rebuild_generator=False)}

    kept = jib(*args, "--resume", "--no-progress")

    assert kept.code == 0, kept.stderr
    assert "0 to run (8 already stored, skipped)" in kept.stderr
    assert "8 stored failures were not retried" in kept.stderr
    assert "--resume --retry-failed" in kept.stderr

    retried = jib(*args, "--resume", "--retry-failed", "--no-progress")

    assert_one_clean_error_line(retried, "8 of 8 chats failed", "AuthenticationError")
    assert "8 to run (8 failed before, run again)" in retried.stderr
    with open_store(default_store) as store:
        chats = store.query(run="auth", rebuild_generator=False)
    assert len(chats) == 8
    assert not first_ids & {c.id for c in chats}


def test_retry_failed_needs_resume(jib: JibRunner, prompts_file: Path) -> None:
    result = jib("run", "echo!demo", "-f", str(prompts_file), "-r", "x", "--retry-failed")

    assert_one_clean_error_line(result, "--retry-failed goes with --resume --run NAME")
    assert result.code == 2


def test_a_generator_failing_authentication_again_and_again_stops_while_others_go_on(
    jib: JibRunner, tmp_path: Path, default_store: Path
) -> None:
    prompts = lines(tmp_path / "p.txt", [f"prompt {i}" for i in range(40)])
    broken = "always_fail!key,error=AuthenticationError,message=Incorrect-API-key"

    result = jib(
        "run", broken, "echo!ok", "-f", str(prompts), "-r", "s", "-c", "1", "--no-progress"
    )

    assert_one_clean_error_line(
        result,
        f"{broken} stopped after 5 failures in a row with AuthenticationError",
        "; fix that, then finish with --run s --resume --retry-failed",
    )
    assert "(the other generators go on)" in result.stderr
    with open_store(default_store) as store:
        assert store.count(run="s", model="always_fail!key") == 5
        assert store.count(run="s", model="echo!ok", failed=False) == 40


def test_stop_after_counts_failures_in_a_row_of_a_real_server_and_is_settable(
    jib: JibRunner, fault_server: RunningFaultServer, tmp_path: Path, default_store: Path
) -> None:
    prompts = lines(tmp_path / "p.txt", [f"fail:401 number {i}" for i in range(30)])
    identifier = f"openai/test-model,api_base={fault_server.url},api_key=sk-wrong-key-123"

    result = jib("run", identifier, "-f", str(prompts), "-r", "k", "-c", "2", "--stop-after", "3")

    assert_one_clean_error_line(
        result, "stopped after 3 failures in a row with AuthenticationError"
    )
    assert "sk-wrong-key-123" not in result.stdout + result.stderr
    # What was in flight when it stopped finishes; nothing more is sent.
    assert 3 <= len(fault_server.state.requests) <= 5
    with open_store(default_store) as store:
        assert store.count(run="k") == len(fault_server.state.requests)


def test_stop_after_zero_never_stops_and_context_errors_never_count(
    jib: JibRunner, prompts_file: Path, default_store: Path
) -> None:
    never = jib(
        "run",
        "always_fail!a,error=BadRequestError",
        "-f",
        str(prompts_file),
        "-r",
        "zero",
        "--stop-after",
        "0",
    )
    long_prompts = jib(
        "run", "always_fail!b,error=ContextLengthError", "-f", str(prompts_file), "-r", "ctx"
    )

    assert_one_clean_error_line(never, "8 of 8 chats failed")
    assert_one_clean_error_line(long_prompts, "8 of 8 chats failed")
    assert "stopped after" not in never.stderr + long_prompts.stderr
    with open_store(default_store) as store:
        assert store.count(run="zero") == 8
        assert store.count(run="ctx") == 8


def test_max_cost_stops_the_run_cleanly_and_resume_finishes_it(
    jib: JibRunner, prompts_file: Path, default_store: Path
) -> None:
    # A dollar per input token: every chat of examples/prompts.txt costs $5 or more.
    priced = ["--price", "echo!demo=1000000,0"]
    args = ["run", "echo!demo", "-f", str(prompts_file), "-r", "budget", *priced]

    stopped = jib(*args, "--max-cost", "10", "-c", "1", "--no-progress")

    assert_one_clean_error_line(
        stopped,
        "stopped at --max-cost 10 reached",
        "chats not run; finish with --run budget --resume",
    )
    with open_store(default_store) as store:
        spent = store.query(run="budget", rebuild_generator=False)
    assert len(spent) == 2
    assert all(c.cost_usd is not None and c.cost_usd >= 5 for c in spent)

    finished = jib(*args, "--resume")

    assert finished.code == 0, finished.stderr
    with open_store(default_store) as store:
        chats = store.query(run="budget", rebuild_generator=False)
    assert sorted(int(c.metadata["prompt_id"]) for c in chats) == list(range(1, 9))


def test_max_cost_says_when_a_generator_has_no_price(jib: JibRunner, prompts_file: Path) -> None:
    result = jib("run", "echo!demo", "-f", str(prompts_file), "--max-cost", "1")

    assert result.code == 0, result.stderr
    assert "note: --max-cost counts only chats with a known cost, and echo!demo has none" in (
        " ".join(result.stderr.split())
    )
