"""Seeing a run: `jib runs`, `jib compare`, `jib report`, and `jib log` at any width."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from jib import get_generator
from tests.cli.conftest import (
    REPO,
    JibRunner,
    assert_one_clean_error_line,
    isolated_env,
    make_runner,
)

DATASET = REPO / "examples" / "dataset.jsonl"
IDS = [json.loads(line)["id"] for line in DATASET.read_text().splitlines()]
HOSTILE = "fixed!evil,text=<script>alert(1)</script><img src=x onerror=alert(2)>"
HOSTILE_ID = get_generator(HOSTILE).to_identifier()  # as stored: spaces and "=" escaped
LONG = "echo!a-rather-long-generator-name,max_tokens=6,temperature=0.7,top_p=0.9"


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> JibRunner:
    """A store holding run "eval": the example dataset × three generators, one always failing."""
    folder = tmp_path_factory.mktemp("compare")
    jib = make_runner(isolated_env(folder), folder)
    result = jib(
        "run",
        "echo!demo",
        HOSTILE,
        "always_fail!down",
        "-f",
        str(DATASET),
        "-r",
        "eval",
        "--price",
        "echo!demo=0.15,0.60",
    )
    assert result.code == 1, result.stderr  # the failing generator's chats
    assert jib("run", LONG, "-f", str(DATASET), "-r", "later").code == 0
    return jib


def test_runs_lists_each_run_with_generators_chats_failures_and_cost(filled: JibRunner) -> None:
    result = filled("runs")

    assert result.code == 0, result.stderr
    text = result.stdout
    assert text.index("later") < text.index("eval")  # newest first
    assert "echo!demo" in text and "always_fail!down" in text
    assert re.search(r"eval .* 18 +6 +\$0\.0000", text)
    runs = filled("runs", "--json").json()
    assert [r["run"] for r in runs] == ["later", "eval"]
    # In the order each first appears in the store: which chunk is stored first depends on
    # which finishes first (the failing generator's may), so only the set is certain.
    assert sorted(runs[1]["generators"]) == sorted(["echo!demo", HOSTILE_ID, "always_fail!down"])
    assert (runs[1]["records"], runs[1]["failed"], runs[1]["priced"]) == (18, 6, 6)
    assert runs[1]["cost_usd"] > 0 and runs[0]["cost_usd"] is None


def test_runs_on_an_empty_store_says_how_to_make_one(jib: JibRunner) -> None:
    result = jib("runs")

    assert result.code == 0
    assert "No runs are stored" in result.stdout
    assert jib("runs", "--json").json() == []


def test_compare_shows_each_prompt_with_every_generators_answer(filled: JibRunner) -> None:
    result = filled("compare", "--run", "eval", env_update={"COLUMNS": "160"})

    assert result.code == 0, result.stderr
    text = result.stdout
    for prompt_id in IDS:
        assert prompt_id in text
    assert "expected" in text and "Paris" in text
    assert "failed: ServerError" in text
    assert "<script>alert(1)</script>" in text  # shown as text, as it is
    assert all(len(line) <= 160 for line in text.splitlines())


def test_compare_as_csv_has_an_answer_and_an_error_column_per_generator(
    filled: JibRunner,
) -> None:
    result = filled("compare", "--run", "eval", "--format", "csv")

    assert result.code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert sorted(r["prompt_id"] for r in rows) == sorted(IDS)
    first = next(r for r in rows if r["prompt_id"] == "capital-fr")
    assert first["expected"] == "Paris" and first["category"] == "geography"
    assert first["echo!demo"] == "What is the capital of France? Answer in one word."
    assert first["echo!demo error"] == ""
    assert first[HOSTILE_ID] == "<script>alert(1)</script><img src=x onerror=alert(2)>"
    assert first["always_fail!down"] == ""
    assert first["always_fail!down error"].startswith("ServerError: ")
    assert "compared 6 prompts × 3 generators as csv to stdout" in result.stderr


def test_compare_as_jsonl_to_a_file(filled: JibRunner, tmp_path: Path) -> None:
    target = tmp_path / "out" / "eval.jsonl"

    result = filled("compare", "--run", "eval", "-F", "jsonl", "-o", str(target))

    assert result.code == 0, result.stderr
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [line["prompt_id"] for line in lines] == sorted(IDS)  # natural order of the ids
    sky = next(line for line in lines if line["prompt_id"] == "sky")
    assert sky["metadata"] == {"expected": "Blue", "category": "science"}
    assert sky["answers"]["echo!demo"]["text"] == "What colour is the sky on a clear day?"
    assert sky["answers"]["echo!demo"]["cost_usd"] > 0
    assert sky["answers"]["always_fail!down"]["failed"] is True


@pytest.mark.parametrize("command", ["compare", "report", "export"])
def test_a_run_that_does_not_exist_is_one_line_and_fails(filled: JibRunner, command: str) -> None:
    result = filled(command, "--run", "no-such-run")

    assert_one_clean_error_line(result, "no run named 'no-such-run' in sqlite:///")
    assert result.code == 1
    assert "jib runs" in result.last_error_line


def test_report_is_one_self_contained_html_page(filled: JibRunner, tmp_path: Path) -> None:
    target = tmp_path / "report.html"

    result = filled("report", "--run", "eval", "-o", str(target))

    assert result.code == 0, result.stderr
    assert f"wrote {target} (6 prompts × 3 generators)" in result.stderr
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    # Offline: nothing to fetch, no script at all; charts are inline SVG.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert "default-src 'none'" in page
    assert page.count("<svg") == 3
    for heading in ("Success rate", "Latency of successful chats", "Cost"):
        assert heading in page
    for prompt_id in IDS:
        assert f">{prompt_id}<" in page
    assert "0.0% ok (0 of 6)" in page and "100.0% ok (6 of 6)" in page
    assert "no price known" in page


def test_report_escapes_model_text_and_dataset_values(filled: JibRunner, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    assert filled("report", "--run", "eval", "-o", str(target)).code == 0

    page = target.read_text(encoding="utf-8")

    assert "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    assert "fixed!evil,<wbr>text=&lt;script&gt;" in page  # the identifier, escaped too


def test_report_defaults_to_the_run_name_in_the_current_folder(filled: JibRunner) -> None:
    result = filled("report", "--run", "later")

    assert result.code == 0, result.stderr
    assert "wrote later.html" in result.stderr


def test_log_at_80_columns_keeps_every_line_within_80(filled: JibRunner) -> None:
    result = filled("log", "-n", "5", "--run", "later", env_update={"COLUMNS": "80"})

    assert result.code == 0, result.stderr
    lines = result.stdout.rstrip("\n").splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert re.split(r"\s{2,}", lines[0].strip())[:3] == ["id", "prompt id", "generator"]
    assert all("echo!a-rather" in line for line in lines[1:])


def test_log_wide_shows_every_column_and_whole_identifiers(filled: JibRunner) -> None:
    result = filled("log", "-n", "5", "--run", "later", "--wide", env_update={"COLUMNS": "80"})

    assert result.code == 0, result.stderr
    lines = result.stdout.rstrip("\n").splitlines()
    assert re.split(r"\s{2,}", lines[0].strip()) == [
        "id",
        "time (UTC)",
        "run",
        "prompt id",
        "generator",
        "status",
        "tokens",
        "latency",
        "cost",
        "prompt",
        "answer",
    ]
    assert all(get_generator(LONG).to_identifier() in line for line in lines[1:])


def test_report_of_a_run_with_no_success_and_no_price_says_so(
    jib: JibRunner, prompts_file: Path, tmp_path: Path
) -> None:
    assert jib("run", "always_fail!down", "-f", str(prompts_file), "-r", "down").code == 1

    result = jib("report", "--run", "down")

    assert result.code == 0, result.stderr
    assert "wrote down.html (8 prompts × 1 generator)" in result.stderr
    page = (tmp_path / "down.html").read_text(encoding="utf-8")
    assert "No chat of this run succeeded, so there is no latency to show." in page
    assert "No chat of this run has a known cost." in page
    assert page.count("<svg") == 1


def test_compare_and_runs_never_send_control_characters_to_the_terminal(
    jib: JibRunner, prompts_file: Path
) -> None:
    assert jib("run", "fixed!x,text=a%1B[2Jb", "-f", str(prompts_file), "-r", "esc\x07").code == 0

    compared = jib("compare", "--run", "esc\x07")
    runs = jib("runs")

    assert compared.code == 0, compared.stderr
    assert "\x1b" not in compared.stdout and "a\\x1b[2Jb" in compared.stdout
    assert "\x07" not in runs.stdout + compared.stdout
    assert "esc\\x07" in runs.stdout
