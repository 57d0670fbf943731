"""Providers describe themselves; trust, cost and the CLI ask them instead of guessing.

The declarations are what data may set, so they are checked here against the classes: every
inert option is a real attribute (or an `extra.` key), none is a secret, an endpoint or a code
option, and docs/security.md's table lists exactly what the code declares.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import jib
from jib._limits import REQUEST_LIMIT_OPTIONS
from jib._secrets import is_secret_name
from jib.generator.base import Generator
from jib.registry import resolve_provider
from jib.trust import ANY_EXTRA, EXTRA_PREFIX

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "jib"
BUILT_IN = [
    "litellm",
    "openai",
    "http",
    "transformers",
    "vllm",
    "echo",
    "fixed",
    "fail",
    "always_fail",
]
OFFLINE = {"echo", "fixed", "fail", "always_fail"}


def provider(name: str) -> type[Generator]:
    cls = resolve_provider(name)
    assert isinstance(cls, type) and issubclass(cls, Generator)
    return cls


@pytest.mark.parametrize("name", BUILT_IN)
def test_inert_options_are_real_harmless_attributes(name: str) -> None:
    cls = provider(name)
    attributes = {option for option in cls.inert_options if not option.startswith(EXTRA_PREFIX)}

    assert attributes <= set(cls.model_fields), attributes - set(cls.model_fields)
    for option in cls.inert_options:
        key = option.removeprefix(EXTRA_PREFIX)
        assert key, option
        assert not is_secret_name(key), option
        assert key not in ("model", "params", "api_key", "trust_remote_code"), option
        assert not key.endswith(("_cls", "_class", "_module", "_url", "_base", "proxy")), option
    assert cls.endpoint_field is None or cls.endpoint_field in cls.model_fields
    assert cls.endpoint_field not in cls.inert_options


@pytest.mark.parametrize("name", BUILT_IN)
def test_only_the_test_generators_are_offline(name: str) -> None:
    assert provider(name).offline == (name in OFFLINE)


def test_a_generator_you_write_declares_nothing_until_you_do() -> None:
    class Custom(jib.Generator):
        custom_field: bool = False

    assert (Custom.endpoint_field, Custom.ambient_credentials, Custom.offline) == (
        None,
        False,
        False,
    )
    assert Custom.inert_options == frozenset()
    assert Custom(model="m").secret_destinations() == []


def test_an_http_generator_sends_secrets_to_its_spec_url_and_its_proxy() -> None:
    from jib.generator.http import HTTPGenerator

    spec = {"request": {"url": "https://{{ state.host }}/x"}}
    generator = HTTPGenerator(model="m", spec=spec, proxy="http://127.0.0.1:8080")

    assert generator.secret_destinations() == [
        ("the spec's request.url", "https://{{ state.host }}/x"),
        ("proxy", "http://127.0.0.1:8080"),
    ]


@pytest.mark.parametrize(
    ("identifier", "destinations"),
    [
        ("openai!m", []),
        ("openai!m,api_base=http://127.0.0.1:8000/v1", [("api_base", "http://127.0.0.1:8000/v1")]),
        ("openai/m", []),
        ("openai/m,api_base=http://h:1/v1", [("api_base", "http://h:1/v1")]),
        ("transformers!m", []),
    ],
)
def test_the_endpoint_is_a_destination_unless_it_is_the_default(
    identifier: str, destinations: list[tuple[str, str]]
) -> None:
    assert jib.get_generator(identifier).secret_destinations() == destinations


def _documented_table() -> dict[str, tuple[str, set[str]]]:
    text = (ROOT / "docs" / "security.md").read_text()
    section = text.split("### What data may set", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, set[str]]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        name, endpoint, attributes, extra = cells
        options = set(re.findall(r"`([^`]+)`", attributes))
        if "request limits" in attributes:
            options |= REQUEST_LIMIT_OPTIONS
        if extra.startswith("any"):
            options.add(ANY_EXTRA)
        else:
            options |= {f"{EXTRA_PREFIX}{key}" for key in re.findall(r"`([^`]+)`", extra)}
        rows[name.strip("`")] = (endpoint.strip("`"), options)
    return rows


def test_the_documented_table_is_what_the_providers_declare() -> None:
    table = _documented_table()

    assert sorted(table) == sorted(BUILT_IN)
    for name, (endpoint, options) in table.items():
        cls = provider(name)
        assert endpoint == (cls.endpoint_field or "—"), name
        assert options == set(cls.inert_options), name


def _imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
    return modules


def test_no_module_outside_the_litellm_package_imports_its_private_runtime() -> None:
    outside = [
        path.relative_to(SRC).as_posix()
        for path in SRC.rglob("*.py")
        if "generator/litellm" not in path.as_posix()
        and "jib.generator.litellm._runtime" in _imports(path)
    ]

    assert outside == []


def test_the_cli_names_no_provider_to_decide_what_is_offline() -> None:
    run = (SRC / "cli" / "run.py").read_text()

    assert not re.search(r"['\"](echo|fixed|fail|always_fail)!['\"]", run)
