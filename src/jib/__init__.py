"""jib: every LLM behind one async generator interface, configured by one identifier string.

>>> import jib
>>> jib.get_generator("openai/gpt-4o-mini,temperature=0.2").to_identifier()
'openai/gpt-4o-mini,temperature=0.2'
"""

from jib.chat import Chat, Completion, StoredError
from jib.errors import (
    RETRYABLE_ERRORS,
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    GeneratorWarning,
    InvalidGeneratorError,
    JibError,
    MissingDependencyError,
    ProcessingError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
)
from jib.generator.base import Generator
from jib.identifiers import get_generator, get_identifier
from jib.messages import GeneratedMessage, GeneratedText, Message, Role, StopReason, Usage
from jib.params import GenerateParams
from jib.pipeline import ChatPipeline, CompletionPipeline, OnFailed
from jib.registry import register_generator, registered_providers

__version__ = "0.1.0"

__all__ = [
    "RETRYABLE_ERRORS",
    "AuthenticationError",
    "BadRequestError",
    "Chat",
    "ChatPipeline",
    "Completion",
    "CompletionPipeline",
    "ContextLengthError",
    "GenerateParams",
    "GeneratedMessage",
    "GeneratedText",
    "Generator",
    "GeneratorWarning",
    "InvalidGeneratorError",
    "JibError",
    "Message",
    "MissingDependencyError",
    "OnFailed",
    "ProcessingError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitError",
    "Role",
    "ServerError",
    "StopReason",
    "StoredError",
    "Usage",
    "__version__",
    "get_generator",
    "get_identifier",
    "register_generator",
    "registered_providers",
]
