"""Trust for identifiers read back from data: what a generator rebuilt from one may do.

An identifier the user writes — in code, on the command line, in their own environment
variable — is trusted like code. One read back from data — a stored chat (`Chat.from_json`, a
store, `jib chat --continue`), a JSONL prompts file or an ids file — may have been written by
anyone who can write that data, so a generator rebuilt from it is checked against a
`TrustPolicy` before it exists:

- **Environment variables.** `api_key=env:NAME` (and LiteLLM's own `os.environ/NAME`) may read
  only the provider key variables of `DEFAULT_ALLOWED_ENV` and the variables the user allows.
- **Where secrets go.** A secret of the user's — an `env:` key, or the provider's key or
  credentials that LiteLLM takes from the environment — is only sent to the provider's own host
  (no `api_base`), to loopback (`localhost`, `127.0.0.0/8`, `::1`), or to a host the user
  allows. For `http!` that host is the spec URL's (a URL whose host is a template is unknown:
  only `"*"` allows it); a proxy counts as a destination too.
- **Code.** Options that run code (`trust_remote_code=True`; a class or module to import, such as
  vLLM's `worker_cls`) are refused unless the user allows remote code.

A key written literally in the data (`api_key=sk-…`) is the data's own, not the user's: an
`http!` spec sends it where the data says. LiteLLM, though, may add credentials of the user's
own (cloud providers take them from the environment even when a key is given), so a LiteLLM
identifier from data may point `api_base` only at loopback or at a host the user allows.

Generation params read from data (a JSONL line's `"params"`, a stored chat's params) are checked
the same way: their `extra` entries may not move the request to another host, read other
variables, or run code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

from jib._secrets import ENV_REFERENCE_PREFIX, is_secret_name
from jib._syntax import redact_identifier
from jib.errors import UntrustedIdentifierError

if TYPE_CHECKING:
    from jib.generator.base import Generator
    from jib.params import GenerateParams

__all__ = [
    "ALLOW_ENV_VARIABLE",
    "ALLOW_HOSTS_VARIABLE",
    "DEFAULT_ALLOWED_ENV",
    "TrustPolicy",
    "host_of",
    "policy_for",
]

ALLOW_ENV_VARIABLE = "JIB_ALLOW_ENV"
"""Environment variable listing more variables data may read (`NAME1,NAME2`)."""
ALLOW_HOSTS_VARIABLE = "JIB_ALLOW_HOSTS"
"""Environment variable listing hosts data may send your secrets to (`api.example.com,…`)."""

DEFAULT_ALLOWED_ENV: frozenset[str] = frozenset(
    {
        "ANTHROPIC_API_KEY",
        "AZURE_API_KEY",
        "AZURE_OPENAI_API_KEY",
        "CEREBRAS_API_KEY",
        "CO_API_KEY",
        "COHERE_API_KEY",
        "DEEPINFRA_API_KEY",
        "DEEPSEEK_API_KEY",
        "FIREWORKS_AI_API_KEY",
        "FIREWORKS_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "GROQ_API_KEY",
        "HF_TOKEN",
        "HUGGINGFACE_API_KEY",
        "MISTRAL_API_KEY",
        "NVIDIA_NIM_API_KEY",
        "OPENAI_API_KEY",
        "OPENROUTER_API_KEY",
        "PERPLEXITYAI_API_KEY",
        "REPLICATE_API_KEY",
        "TOGETHER_API_KEY",
        "TOGETHERAI_API_KEY",
        "XAI_API_KEY",
    }
)
"""Provider key variables data may read by default; they still only go to the provider's own
host or to loopback, unless the host is allowed."""

ANY_HOST = "*"
"""In `allow_hosts`: any host, even one a template picks at request time."""

_LITELLM_ENV_PREFIX = "os.environ/"
_DESTINATION_NAMES = frozenset(
    {"api_base", "base_url", "url", "endpoint", "host", "proxy", "proxies", "http_proxy"}
)
_DESTINATION_SUFFIXES = ("_url", "_endpoint", "_host", "_base", "_proxy")
_CODE_SUFFIXES = ("_cls", "_class", "_module")
_MAX_DEPTH = 6


@dataclass(frozen=True, init=False)
class TrustPolicy:
    """What a generator rebuilt from data (a stored chat, a JSONL or ids file) may do.

    >>> TrustPolicy(allow_env={"MY_KEY"}).allows_env("MY_KEY")
    True

    Attributes:
        allow_env: environment variables data may read as `api_key=env:NAME`, beyond the
            provider key variables of `DEFAULT_ALLOWED_ENV`.
        allow_hosts: hosts data may send your secrets to, beyond the provider's own host and
            loopback (`"*"`: any host).
        allow_remote_code: let data set options that run code (`trust_remote_code=True`).
    """

    allow_env: frozenset[str]
    allow_hosts: frozenset[str]
    allow_remote_code: bool

    def __init__(
        self,
        *,
        allow_env: Iterable[str] = (),
        allow_hosts: Iterable[str] = (),
        allow_remote_code: bool = False,
    ) -> None:
        object.__setattr__(self, "allow_env", _names(allow_env))
        object.__setattr__(self, "allow_hosts", frozenset(h.lower() for h in _names(allow_hosts)))
        object.__setattr__(self, "allow_remote_code", bool(allow_remote_code))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrustPolicy:
        """The policy the user set in the environment: `JIB_ALLOW_ENV`, `JIB_ALLOW_HOSTS`.

        Both hold names separated by commas or spaces. Running code is never allowed from the
        environment: that takes `allow_remote_code=True` in code (or `--trust-remote-code`).
        """
        environ = os.environ if environ is None else environ
        return cls(
            allow_env=_split(environ.get(ALLOW_ENV_VARIABLE, "")),
            allow_hosts=_split(environ.get(ALLOW_HOSTS_VARIABLE, "")),
        )

    def allowing(
        self,
        *,
        env: Iterable[str] = (),
        hosts: Iterable[str] = (),
        remote_code: bool = False,
    ) -> TrustPolicy:
        """A policy allowing what this one does, plus `env`, `hosts` and (if set) remote code."""
        return TrustPolicy(
            allow_env=self.allow_env | _names(env),
            allow_hosts=self.allow_hosts | _names(hosts),
            allow_remote_code=self.allow_remote_code or remote_code,
        )

    def allows_env(self, name: str) -> bool:
        """Whether data may read environment variable `name`."""
        return name in DEFAULT_ALLOWED_ENV or name in self.allow_env

    def allows_host(self, host: str | None) -> bool:
        """Whether data may send your secrets to `host` (None: a host not known in advance)."""
        if ANY_HOST in self.allow_hosts:
            return True
        return host is not None and (_is_loopback(host) or host.lower() in self.allow_hosts)

    # -- checks ----------------------------------------------------------------------------------

    def check_generator(
        self,
        generator: Generator,
        *,
        identifier: str | None = None,
        params: GenerateParams | None = None,
    ) -> None:
        """Refuse a generator built from data that does what this policy does not allow.

        Args:
            generator: the generator the data describes (built, not yet used).
            identifier: the identifier it was built from, for the message (redacted).
            params: more params read from the same data (a stored chat's own params).

        Raises:
            UntrustedIdentifierError: one line per refused option, each saying how to allow it.
        """
        found = _Findings()
        for name, info in type(generator).model_fields.items():
            # Runtime fields (`Field(exclude=True)`) never come from an identifier.
            if name not in ("model", "params") and not info.exclude:
                found.scan(name, getattr(generator, name))
        for extra in (generator.params.extra, params.extra if params is not None else {}):
            for key, value in extra.items():
                found.scan(str(key), value)
        spec_url = _spec_url(generator)
        if spec_url is not None:
            found.destinations.append(("the spec's request.url", spec_url))

        problems = self._code_problems(found)
        problems += [self._env_problem(name) for name in found.env if not self.allows_env(name)]
        sent = [f"the key in environment variable {name}" for name in found.env]
        if "api_base" in type(generator).model_fields:
            # LiteLLM falls back to the provider's key variable (OPENAI_API_KEY, ...), and some
            # providers add credentials from the environment even when a key is given.
            sent.append("the provider's key or credentials from your environment")
        if sent:
            problems += self._destination_problems(found, " and ".join(sent))
        if problems:
            shown = _shortened(redact_identifier(identifier or generator.to_identifier()))
            raise UntrustedIdentifierError(
                f"refused to build a generator from {shown!r}, an identifier read from data "
                f"(a stored chat, a JSONL or ids file): {'; '.join(problems)}. Identifiers you "
                "write yourself (code, command line) are trusted; see docs/security.md",
                tuple(problems),
            )

    def check_params(self, params: GenerateParams, *, where: str) -> None:
        """Refuse generation params read from data whose `extra` moves, reads or runs things.

        Args:
            params: the params (a JSONL line's `"params"`).
            where: what to name in the message (`prompts.jsonl line 3`).

        Raises:
            UntrustedIdentifierError: the params send the request to a host that is not allowed,
                read a variable that is not allowed, or set an option that runs code.
        """
        found = _Findings()
        for key, value in params.extra.items():
            found.scan(str(key), value)
        problems = self._code_problems(found)
        problems += [self._env_problem(name) for name in found.env if not self.allows_env(name)]
        problems += self._destination_problems(found, "your generator's request and its key")
        if problems:
            raise UntrustedIdentifierError(
                f"refused the params of {where}, read from data: {'; '.join(problems)}",
                tuple(problems),
            )

    def _code_problems(self, found: _Findings) -> list[str]:
        if self.allow_remote_code:
            return []
        return [
            f"it sets {option}, which runs code from files the data names; allow it with "
            "--trust-remote-code or TrustPolicy(allow_remote_code=True)"
            for option in found.code
        ]

    @staticmethod
    def _env_problem(name: str) -> str:
        return (
            f"it reads environment variable {name}, which data may not read (only provider key "
            f"variables such as OPENAI_API_KEY may be); allow it with --allow-env {name}, "
            f"{ALLOW_ENV_VARIABLE}={name}, or TrustPolicy(allow_env={{{name!r}}})"
        )

    def _destination_problems(self, found: _Findings, what: str) -> list[str]:
        problems = []
        for where, url in found.destinations:
            host = host_of(url)
            if self.allows_host(host):
                continue
            if host is None:
                problems.append(
                    f"it sends {what} to {where}, whose host is not known until a template "
                    f"renders it; allow that with --allow-host '{ANY_HOST}' or "
                    f"TrustPolicy(allow_hosts={{{ANY_HOST!r}}})"
                )
                continue
            problems.append(
                f"it sends {what} to {host} ({where}), a host the data chose (only the "
                f"provider's own host and loopback are allowed); allow it with --allow-host "
                f"{host}, {ALLOW_HOSTS_VARIABLE}={host}, or TrustPolicy(allow_hosts={{{host!r}}})"
            )
        return problems


def policy_for(trusted: bool | TrustPolicy) -> TrustPolicy | None:
    """The policy a `trusted=` argument means: None (no check) for True, the environment's
    (`TrustPolicy.from_env()`) for False, else the policy given."""
    if trusted is True:
        return None
    if trusted is False:
        return TrustPolicy.from_env()
    return trusted


# -- what an identifier holds -------------------------------------------------------------------


class _Findings:
    """What a generator's attributes and params read, where they send, and what runs code."""

    def __init__(self) -> None:
        self.env: list[str] = []
        self.destinations: list[tuple[str, str]] = []
        self.code: list[str] = []

    def scan(self, name: str, value: Any, depth: int = 0) -> None:
        if depth > _MAX_DEPTH or value is None or isinstance(value, BaseModel):
            return  # a spec (a BaseModel) is checked through its URL; see `_spec_url`
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, Mapping):
            for key, item in value.items():
                self.scan(str(key), item, depth + 1)
            return
        if isinstance(value, (list, tuple)):
            for item in value:
                self.scan(name, item, depth + 1)
            return
        lowered = name.lower()
        if _runs_code(lowered, value):
            self.code.append(f"{name}={value!r}")
        if not isinstance(value, str):
            return
        variable = _env_reference(name, value)
        if variable and variable not in self.env:
            self.env.append(variable)
        if value and (lowered in _DESTINATION_NAMES or lowered.endswith(_DESTINATION_SUFFIXES)):
            self.destinations.append((name, value))


def _env_reference(name: str, value: str) -> str | None:
    if value.startswith(_LITELLM_ENV_PREFIX):
        return value[len(_LITELLM_ENV_PREFIX) :]
    if value.startswith(ENV_REFERENCE_PREFIX) and is_secret_name(name):
        return value[len(ENV_REFERENCE_PREFIX) :]
    return None


def _runs_code(name: str, value: Any) -> bool:
    if name == "trust_remote_code":
        return value is True or (isinstance(value, str) and value.strip().lower() == "true")
    return name.endswith(_CODE_SUFFIXES) and bool(value)


def _spec_url(generator: Generator) -> str | None:
    # The HTTP generator's destination is its spec's URL; looked up by shape, so this module
    # does not import a provider (it sits below them).
    request = getattr(getattr(generator, "spec", None), "request", None)
    url = getattr(request, "url", None)
    return url if isinstance(url, str) else None


def host_of(url: str) -> str | None:
    """The host a URL (or a bare `host:port/path`) points at, lowercased; None if a template
    picks it or it cannot be read.

    >>> host_of("http://127.0.0.1:8000/v1"), host_of("https://{{ state.host }}/x")
    ('127.0.0.1', None)
    """
    text = url.strip()
    if "://" not in text:
        text = f"http://{text}"
    authority = text.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "{" in authority or "%" in authority:
        return None
    try:
        host = urlsplit(text).hostname
    except ValueError:
        return None
    return host or None


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_SHOWN = 120


def _shortened(identifier: str) -> str:
    # An encoded spec makes identifiers long; its start and end are enough to recognise one.
    if len(identifier) <= _SHOWN:
        return identifier
    return f"{identifier[: _SHOWN - 20]}…{identifier[-19:]}"


def _names(values: Iterable[str]) -> frozenset[str]:
    if isinstance(values, str):
        values = [values]
    return frozenset(value.strip() for value in values if value and value.strip())


def _split(text: str) -> Iterator[str]:
    return iter(text.replace(",", " ").split())
