"""The exceptions and warnings jib raises.

The hierarchy answers "what can I do about it?":

- `JibError` is the root; catch it to catch everything jib raises on purpose.
- `InvalidGeneratorError`: the configuration is wrong (identifier, attribute, value). Fix the input.
  `UntrustedIdentifierError`, one kind of it: an identifier read back from data (a stored chat,
  a JSONL or ids file) asks for what only the user may choose; the message says how to allow it.
- `ProcessingError`: a spec or transform could not be applied to a request or a response, a
  request cannot be sent as built (an invalid URL or header, a redirect that would carry its
  body to another origin), or an answer is larger than `max_response_bytes`;
  `BudgetExceededError` when a spec wanted more time, steps or memory than its budget.
- `ToolError`, `ToolDepthError`, `StructuredOutputError`: a chat pipeline's tool loop or
  structured output (`.using(...)`, `.structured(...)`) could not finish: fix the tool, raise
  `max_depth`, or change the prompt or the model.
- `ProviderError` and its subclasses: the model provider failed. Each carries `retryable`,
  `status_code` and the provider's own `message`. Remote generators already retry what is
  retryable (`max_retries`, see `jib.generator.remote`); a policy of your own on top is one line:

      backoff.on_exception(backoff.expo, jib.errors.RETRYABLE_ERRORS, max_tries=5)

No message ever holds a secret: identifiers are redacted (`api_key=***`) and providers strip
keys from the provider's own messages before raising.
"""

from __future__ import annotations

__all__ = [
    "RETRYABLE_ERRORS",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ContextLengthError",
    "GeneratorWarning",
    "InvalidGeneratorError",
    "JibError",
    "MalformedResponseError",
    "MissingDependencyError",
    "ProcessingError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitError",
    "ServerError",
    "StructuredOutputError",
    "ToolDepthError",
    "ToolError",
    "UntrustedIdentifierError",
    "error_for_status",
]


class JibError(Exception):
    """Root of every exception jib raises on purpose.

    Attributes:
        attempts: for a request that failed, how many times it was sent (retries included);
            `None` when the failure happened before anything was sent.
    """

    attempts: int | None = None


class InvalidGeneratorError(JibError, ValueError):
    """An identifier, a generator attribute or one of its values is not valid.

    The message names the identifier (secrets redacted), the offending key or position, and what
    was expected.
    """


class UntrustedIdentifierError(InvalidGeneratorError):
    """An identifier or params read from data want what only the user may allow: to set an
    option their provider does not declare inert, to read an environment variable, to send a
    secret to a host the data chose, or to run code.

    The message names each problem and how to allow it (a `jib.trust.TrustPolicy`, the
    `JIB_ALLOW_ENV` / `JIB_ALLOW_HOSTS` / `JIB_ALLOW_OPTIONS` variables, or the CLI's
    `--allow-env`, `--allow-host`, `--allow-option` and `--trust-remote-code`). Identifiers the
    user writes (code, command line) are not checked.

    Attributes:
        problems: one line per refused option, each ending with how to allow it.
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        self.problems = problems
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.problems))


class MissingDependencyError(JibError, ImportError):
    """A package a provider needs is not installed; the message says how to install it: the
    extra that brings an optional package, or a reinstall for one of jib's own dependencies
    (`extra=None`)."""

    def __init__(self, package: str, extra: str | None, purpose: str) -> None:
        self.package = package
        self.extra = extra
        self.purpose = purpose
        how = (
            f'Install it with: pip install "jib[{extra}]"'
            if extra is not None
            else "It is one of jib's own dependencies: reinstall jib (pip install jib)"
        )
        super().__init__(f"{purpose} needs the '{package}' package, which is not installed. {how}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.package, self.extra, self.purpose))


class ProcessingError(JibError):
    """A spec, template or transform could not be applied (bad spec, response not as expected),
    a request cannot be sent as built, or an answer is over `max_response_bytes`. Not retried:
    sending the same again would fail the same way."""


class BudgetExceededError(ProcessingError):
    """A template, JSONPath or regex of a spec wanted more time, steps or memory than its budget.

    Specs are data, so their work is bounded; the message names the limit that was hit and how
    to raise it in code (`HTTPGenerator.render_limits`).
    """


class ToolError(JibError):
    """A tool a chat pipeline runs (`.using(fn, catch=False)`) raised; the chat failed.

    With the default `catch=True` the exception becomes a result the model sees instead. The
    tool's own exception is the `__cause__`.

    Attributes:
        tool: the tool's name.
        call_id: the id of the call that ran it.
    """

    def __init__(self, message: str, tool: str, call_id: str) -> None:
        self.tool = tool
        self.call_id = call_id
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.tool, self.call_id))


class ToolDepthError(JibError):
    """The model still asked for tool calls after `max_depth` rounds of them (`.using(...)`).

    The chat keeps every round, the unanswered calls last; raise `max_depth` or change the
    prompt.

    Attributes:
        max_depth: the rounds of tool calls allowed.
    """

    def __init__(self, message: str, max_depth: int) -> None:
        self.max_depth = max_depth
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.max_depth))


class StructuredOutputError(JibError):
    """The answers did not validate as the model `.structured(Model)` asked for, however often
    the model was asked again; the chat keeps every answer.

    Attributes:
        schema: the name of the model the answer had to validate as.
        answer: the last answer, secrets redacted and cut short.
        problems: what was wrong with it, one line per validation error.
    """

    def __init__(self, message: str, schema: str, answer: str, problems: tuple[str, ...]) -> None:
        self.schema = schema
        self.answer = answer
        self.problems = problems
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.schema, self.answer, self.problems))


class ProviderError(JibError):
    """A model provider failed to answer.

    Attributes:
        message: the provider's own explanation (secrets removed, truncated).
        status_code: the HTTP status code when there was one.
        retryable: whether trying the same request again later may succeed.
        provider: the provider or model that failed, for context.
        retry_after: seconds the provider asked to wait before retrying (`Retry-After` or
            `retry-after-ms`), when it said.
    """

    retryable: bool = False
    retry_after: float | None = None

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        provider: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.provider = provider
        if retryable is not None:
            self.retryable = retryable
        if retry_after is not None:
            self.retry_after = retry_after
        super().__init__(self._describe())

    def add_detail(self, detail: str) -> None:
        """Append `detail` to the message (e.g. how often the request was tried)."""
        self.message = f"{self.message} ({detail})"
        self.args = (self._describe(),)

    def _describe(self) -> str:
        parts = []
        if self.provider:
            parts.append(f"[{self.provider}]")
        if self.status_code is not None:
            parts.append(f"HTTP {self.status_code}:")
        parts.append(self.message)
        return " ".join(parts)

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructor arguments need help to survive pickling (multiprocessing).
        return (
            _rebuild_provider_error,
            (
                type(self),
                self.message,
                self.status_code,
                self.provider,
                self.retryable,
                self.retry_after,
                self.attempts,
            ),
        )


def _rebuild_provider_error(
    cls: type[ProviderError],
    message: str,
    status_code: int | None,
    provider: str | None,
    retryable: bool,
    retry_after: float | None = None,
    attempts: int | None = None,
) -> ProviderError:
    error = cls(
        message,
        status_code=status_code,
        provider=provider,
        retryable=retryable,
        retry_after=retry_after,
    )
    error.attempts = attempts
    return error


class RateLimitError(ProviderError):
    """Too many requests (HTTP 429): wait and retry."""

    retryable = True


class AuthenticationError(ProviderError):
    """The key or credentials were refused (HTTP 401/403): fix the key."""


class BadRequestError(ProviderError):
    """The provider rejected the request as malformed (HTTP 400/404/422): fix the request."""


class ContextLengthError(BadRequestError):
    """The prompt is longer than the model's context window: shorten the prompt."""


class ProviderTimeoutError(ProviderError):
    """The provider did not answer in time: retry, perhaps with a longer timeout."""

    retryable = True


class ServerError(ProviderError):
    """The provider failed on its side (HTTP 5xx, or 409: a conflict such as a lock timeout
    on the provider's side): retry later."""

    retryable = True


class MalformedResponseError(ProviderError):
    """The provider answered, but not in the form its protocol promises (a cut or invalid JSON
    body): usually a transient fault of the server or a proxy, so retry."""

    retryable = True


class ProviderConnectionError(ProviderError):
    """The provider could not be reached (refused, reset, DNS): retry later or check the URL."""

    retryable = True


RETRYABLE_ERRORS: tuple[type[ProviderError], ...] = (
    RateLimitError,
    ProviderTimeoutError,
    ServerError,
    ProviderConnectionError,
    MalformedResponseError,
)
"""The errors worth retrying; pass to `backoff.on_exception` or `tenacity`."""


class GeneratorWarning(UserWarning):
    """Something worked but looks wrong (for example a prompt that was silently truncated)."""


_CONTEXT_HINTS = (
    "context length",
    "context_length",
    "maximum context",
    "context window",
    "too many tokens",
    "prompt is too long",
    "input is too long",
    "reduce the length",
)


def error_for_status(
    status_code: int,
    message: str,
    *,
    provider: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """Return the normalized `ProviderError` for an HTTP status code and provider message.

    `retry_after` is the wait the provider asked for (see `jib._retry.retry_after_from`).
    """
    lowered = message.lower()
    cls: type[ProviderError]
    if status_code == 429:
        cls = RateLimitError
    elif status_code in (401, 403):
        cls = AuthenticationError
    elif status_code in (408, 504):
        cls = ProviderTimeoutError
    elif status_code >= 500 or status_code == 409:
        cls = ServerError
    elif status_code == 413 or any(hint in lowered for hint in _CONTEXT_HINTS):
        cls = ContextLengthError
    elif 400 <= status_code < 500:
        cls = BadRequestError
    else:
        cls = ProviderError
    return cls(message, status_code=status_code, provider=provider, retry_after=retry_after)
