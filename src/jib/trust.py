"""Trust for identifiers and params read back from data: what they may set, read, send and run.

An identifier the user writes — in code, on the command line, in their own environment
variable — is trusted like code. One read back from data — a stored chat (`Chat.from_json`, a
store, `jib chat --continue`), a JSONL prompts file or an ids file — may have been written by
anyone who can write that data, so a generator rebuilt from it, and params read from it, are
checked against a `TrustPolicy` before anything is built or sent. Data is denied by default:

- **Options.** Data may set the model, the sampling params (`GenerateParams` fields), the
  provider's endpoint (its `endpoint_field`, under the host rule below) and the few options its
  provider declares inert (`Generator.inert_options`: attributes, and `extra.NAME` for
  `params.extra` keys). Any other key — other `extra` entries, credentials of any shape,
  `model_kwargs`, `engine_kwargs`, class paths — is refused unless the user allows it by name
  (`allow_options`, `JIB_ALLOW_OPTIONS`, `--allow-option`). Dataset params are data even against
  a generator the user wrote: `check_params` asks that generator what it accepts.
- **Environment variables.** `api_key=env:NAME` (and LiteLLM's own `os.environ/NAME`, in any
  value data may set) may read only the provider key variables of `DEFAULT_ALLOWED_ENV` and the
  variables the user allows.
- **Where secrets go.** A secret of the user's — an `env:` key, or credentials the provider
  takes from the environment unasked (`Generator.ambient_credentials`) — is only sent to the
  provider's own host (its endpoint's default), to loopback (`localhost`, `127.0.0.0/8`, `::1`)
  or to a host the user allows. The generator says where it sends them
  (`Generator.secret_destinations`): for `http!`, its spec's URL, its steps' URLs and its proxy
  (a URL whose host is a template is unknown: only `"*"` allows it).
- **Code.** Options that run code — `trust_remote_code` set to anything but `false` (booleans
  follow `jib._values.read_bool`), a class or module to import (`*_cls`, `*_class`, `*_module`),
  at any depth of a value data may set — are refused unless the user allows remote code.

An option allowed by name is taken as the user would write it, except that reading variables
and running code still need their own allowance. A key written literally in the data
(`api_key=sk-…`) is the data's own, not the user's: an `http!` spec sends it where the data says.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

from jib._secrets import ENV_REFERENCE_PREFIX, is_secret_name
from jib._syntax import IdentifierSyntaxError, redact_identifier
from jib._values import read_bool
from jib.errors import UntrustedIdentifierError

if TYPE_CHECKING:
    from jib.generator.base import Generator
    from jib.params import GenerateParams

__all__ = [
    "ALLOW_ENV_VARIABLE",
    "ALLOW_HOSTS_VARIABLE",
    "ALLOW_OPTIONS_VARIABLE",
    "ANY_EXTRA",
    "DEFAULT_ALLOWED_ENV",
    "EXTRA_PREFIX",
    "TrustPolicy",
    "host_of",
    "policy_for",
]

ALLOW_ENV_VARIABLE = "JIB_ALLOW_ENV"
"""Environment variable listing more variables data may read (`NAME1,NAME2`)."""
ALLOW_HOSTS_VARIABLE = "JIB_ALLOW_HOSTS"
"""Environment variable listing hosts data may send your secrets to (`api.example.com,…`)."""
ALLOW_OPTIONS_VARIABLE = "JIB_ALLOW_OPTIONS"
"""Environment variable listing more options data may set (`model_kwargs,extra.num_beams`)."""

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

ANY_OPTION = "*"
"""In `allow_options`: every option (data is then trusted with its options like your own code,
except for reading variables, sending secrets and running code)."""
EXTRA_PREFIX = "extra."
"""How an option names a `params.extra` key: `extra.num_ctx`."""
ANY_EXTRA = f"{EXTRA_PREFIX}*"
"""In `Generator.inert_options`: every `params.extra` key (a provider that ignores them)."""

_LITELLM_ENV_PREFIX = "os.environ/"
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
        allow_options: options data may set beyond what its provider declares inert: attribute
            names (`model_kwargs`) and `extra.NAME` for `params.extra` keys (`"*"`: any).
        allow_remote_code: let data set options that run code (`trust_remote_code=True`).
    """

    allow_env: frozenset[str]
    allow_hosts: frozenset[str]
    allow_options: frozenset[str]
    allow_remote_code: bool

    def __init__(
        self,
        *,
        allow_env: Iterable[str] = (),
        allow_hosts: Iterable[str] = (),
        allow_options: Iterable[str] = (),
        allow_remote_code: bool = False,
    ) -> None:
        object.__setattr__(self, "allow_env", _names(allow_env))
        object.__setattr__(self, "allow_hosts", frozenset(h.lower() for h in _names(allow_hosts)))
        object.__setattr__(self, "allow_options", _names(allow_options))
        object.__setattr__(self, "allow_remote_code", bool(allow_remote_code))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrustPolicy:
        """The policy the user set in the environment: `JIB_ALLOW_ENV`, `JIB_ALLOW_HOSTS`,
        `JIB_ALLOW_OPTIONS`.

        Each holds names separated by commas or spaces. Running code is never allowed from the
        environment: that takes `allow_remote_code=True` in code (or `--trust-remote-code`).
        """
        environ = os.environ if environ is None else environ
        return cls(
            allow_env=_split(environ.get(ALLOW_ENV_VARIABLE, "")),
            allow_hosts=_split(environ.get(ALLOW_HOSTS_VARIABLE, "")),
            allow_options=_split(environ.get(ALLOW_OPTIONS_VARIABLE, "")),
        )

    def allowing(
        self,
        *,
        env: Iterable[str] = (),
        hosts: Iterable[str] = (),
        options: Iterable[str] = (),
        remote_code: bool = False,
    ) -> TrustPolicy:
        """A policy allowing what this one does, plus `env`, `hosts`, `options` and (if set)
        remote code."""
        return TrustPolicy(
            allow_env=self.allow_env | _names(env),
            allow_hosts=self.allow_hosts | _names(hosts),
            allow_options=self.allow_options | _names(options),
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

    def allows_option(self, name: str) -> bool:
        """Whether data may set option `name` (`model_kwargs`, `extra.num_beams`) whatever its
        provider declares."""
        return ANY_OPTION in self.allow_options or name in self.allow_options

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
        cls = type(generator)
        found = _Findings()
        problems: list[str] = []
        for name, info in cls.model_fields.items():
            value = getattr(generator, name)
            if name in ("model", "params") or value is None:
                continue
            if value == info.get_default(call_default_factory=True):
                continue  # what the provider does anyway
            if name in ("api_key", cls.endpoint_field):
                found.scan(name, value)
            else:
                problems += self._option_problems(cls, name, value, found)
        for extra in (generator.params.extra, params.extra if params is not None else {}):
            problems += self._extra_problems(cls, extra, found)
        problems += self._code_problems(found)
        problems += [self._env_problem(name) for name in found.env if not self.allows_env(name)]
        sent = [f"the key in environment variable {name}" for name in found.env]
        if cls.ambient_credentials:
            sent.append("the provider's key or credentials from your environment")
        if sent:
            problems += self._destination_problems(generator, " and ".join(sent))
        problems = list(dict.fromkeys(problems))  # a stored chat's params repeat its identifier's
        if problems:
            shown = _shortened(redact_identifier(identifier or generator.to_identifier()))
            raise UntrustedIdentifierError(
                f"refused to build a generator from {shown!r}, an identifier read from data "
                f"(a stored chat, a JSONL or ids file): {'; '.join(problems)}. Identifiers you "
                "write yourself (code, command line) are trusted; see docs/security.md",
                tuple(problems),
            )

    def check_params(self, params: GenerateParams, *, generator: Generator, where: str) -> None:
        """Refuse generation params read from data that set what `generator` does not accept.

        The sampling params are always accepted; an `extra` key only when `generator`'s provider
        declares it inert (`extra.NAME` in `inert_options`) or the policy allows it, and then
        its value may not read a variable that is not allowed nor run code.

        Args:
            params: the params (a JSONL line's `"params"`).
            generator: the generator they are for (the user's own, so trusted itself).
            where: what to name in the message (`prompts.jsonl line 3`).

        Raises:
            UntrustedIdentifierError: one line per refused key, each saying how to allow it.
        """
        found = _Findings()
        problems = self._extra_problems(type(generator), params.extra, found)
        problems += self._code_problems(found)
        problems += [self._env_problem(name) for name in found.env if not self.allows_env(name)]
        if problems:
            raise UntrustedIdentifierError(
                f"refused the params of {where}, read from data: {'; '.join(problems)}",
                tuple(problems),
            )

    def _option_problems(
        self, cls: type[Generator], option: str, value: Any, found: _Findings
    ) -> list[str]:
        """Refuse `option` unless its provider declares it inert or the policy allows it; note
        what its value reads and runs (even when refused: the message lists every allowance)."""
        key = option.removeprefix(EXTRA_PREFIX)
        code_options = len(found.code)
        found.scan(key, value, option)
        if option in cls.inert_options or self.allows_option(option):
            return []
        if option.startswith(EXTRA_PREFIX) and ANY_EXTRA in cls.inert_options:
            return []
        if _is_code_option(key) and (self.allow_remote_code or len(found.code) > code_options):
            return []  # the remote-code switch allows it, or its refusal already names it
        return [self._option_problem(cls, option)]

    def _extra_problems(
        self, cls: type[Generator], extra: Mapping[str, Any], found: _Findings
    ) -> list[str]:
        problems = []
        for key, value in extra.items():
            problems += self._option_problems(cls, f"{EXTRA_PREFIX}{key}", value, found)
        return problems

    @staticmethod
    def _option_problem(cls: type[Generator], option: str) -> str:
        return (
            f"it sets {option}, which {cls.__name__} does not accept from data (it takes the "
            "model, sampling params, endpoint and the inert options listed in docs/security.md); "
            f"allow it with --allow-option {option}, {ALLOW_OPTIONS_VARIABLE}={option}, or "
            f"TrustPolicy(allow_options={{{option!r}}})"
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

    def _destination_problems(self, generator: Generator, what: str) -> list[str]:
        own = _own_host(generator)
        problems = []
        for where, url in generator.secret_destinations():
            host = host_of(url)
            if (host is not None and host == own) or self.allows_host(host):
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


# -- what a value holds ---------------------------------------------------------------------------


class _Findings:
    """What the values data may set read from the environment, and which of them run code."""

    def __init__(self) -> None:
        self.env: list[str] = []
        self.code: list[str] = []

    def scan(self, name: str, value: Any, path: str | None = None, depth: int = 0) -> None:
        """Note what `value` (of key `name`, shown as `path`) reads and runs."""
        path = path or name
        if depth > _MAX_DEPTH or value is None or isinstance(value, BaseModel):
            return  # a spec (a BaseModel) is checked through its generator's destinations
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, Mapping):
            for key, item in value.items():
                self.scan(str(key), item, f"{path}.{key}", depth + 1)
            return
        if isinstance(value, (list, tuple)):
            for item in value:
                self.scan(name, item, path, depth + 1)
            return
        if _runs_code(name, value):
            shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:37]}..."
            self.code.append(f"{path}={shown}")
        if isinstance(value, str):
            variable = _env_reference(name, value)
            if variable and variable not in self.env:
                self.env.append(variable)


def _env_reference(name: str, value: str) -> str | None:
    if value.startswith(_LITELLM_ENV_PREFIX):
        return value[len(_LITELLM_ENV_PREFIX) :]
    if value.startswith(ENV_REFERENCE_PREFIX) and is_secret_name(name):
        return value[len(ENV_REFERENCE_PREFIX) :]
    return None


def _is_code_option(name: str) -> bool:
    lowered = name.lower()
    return lowered == "trust_remote_code" or lowered.endswith(_CODE_SUFFIXES)


def _runs_code(name: str, value: Any) -> bool:
    lowered = name.lower()
    if lowered == "trust_remote_code":
        # Only a strict `false` is off: transformers takes `1`, "yes" or "on" as on.
        try:
            return read_bool(value)
        except IdentifierSyntaxError:
            return True
    return lowered.endswith(_CODE_SUFFIXES) and bool(value)


def _own_host(generator: Generator) -> str | None:
    """The host of the provider's default endpoint: its own host (None when it has none)."""
    name = type(generator).endpoint_field
    if name is None:
        return None
    default = type(generator).model_fields[name].get_default(call_default_factory=True)
    return host_of(default) if isinstance(default, str) else None


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
