"""jib: every LLM behind one async generator interface, configured by one identifier string.

>>> import jib
>>> jib.get_generator("openai/gpt-4o-mini,temperature=0.2").to_identifier()
'openai/gpt-4o-mini,temperature=0.2'

The public names below load on first use (PEP 562, as pydantic does), so `import jib` costs
little and a program pays for the parts it touches.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jib import generator
    from jib.chat import Chat, Completion, StoredError
    from jib.content import (
        ContentAudioInput,
        ContentFile,
        ContentImageUrl,
        ContentPart,
        ContentText,
    )
    from jib.errors import (
        RETRYABLE_ERRORS,
        AuthenticationError,
        BadRequestError,
        BudgetExceededError,
        ContextLengthError,
        GeneratorWarning,
        InvalidGeneratorError,
        JibError,
        MalformedResponseError,
        MissingDependencyError,
        ProcessingError,
        ProviderConnectionError,
        ProviderError,
        ProviderTimeoutError,
        RateLimitError,
        ServerError,
        UntrustedIdentifierError,
    )
    from jib.generator.base import Generator
    from jib.generator.http import HTTPGenerator
    from jib.generator.litellm import LiteLLMGenerator
    from jib.generator.openai import OpenAIGenerator
    from jib.generator.remote import RequestGenerator
    from jib.generator.transformers import TransformersGenerator
    from jib.generator.vllm import VLLMGenerator
    from jib.identifiers import get_generator, get_identifier
    from jib.messages import GeneratedMessage, GeneratedText, Message, Role, StopReason, Usage
    from jib.params import GenerateParams
    from jib.pipeline import ChatPipeline, ChatStream, CompletionPipeline, OnFailed
    from jib.registry import register_generator, registered_providers
    from jib.tools import FunctionCall, FunctionDefinition, ToolCall, ToolDefinition
    from jib.trust import TrustPolicy

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["Chat", "Completion", "StoredError"], "jib.chat"),
    **dict.fromkeys(
        ["ContentAudioInput", "ContentFile", "ContentImageUrl", "ContentPart", "ContentText"],
        "jib.content",
    ),
    **dict.fromkeys(
        [
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
            "UntrustedIdentifierError",
        ],
        "jib.errors",
    ),
    "Generator": "jib.generator.base",
    "RequestGenerator": "jib.generator.remote",
    "HTTPGenerator": "jib.generator.http",
    "LiteLLMGenerator": "jib.generator.litellm",
    "OpenAIGenerator": "jib.generator.openai",
    "TransformersGenerator": "jib.generator.transformers",
    "VLLMGenerator": "jib.generator.vllm",
    **dict.fromkeys(["get_generator", "get_identifier"], "jib.identifiers"),
    **dict.fromkeys(
        ["GeneratedMessage", "GeneratedText", "Message", "Role", "StopReason", "Usage"],
        "jib.messages",
    ),
    "GenerateParams": "jib.params",
    **dict.fromkeys(
        ["ChatPipeline", "ChatStream", "CompletionPipeline", "OnFailed"], "jib.pipeline"
    ),
    **dict.fromkeys(["register_generator", "registered_providers"], "jib.registry"),
    **dict.fromkeys(
        ["FunctionCall", "FunctionDefinition", "ToolCall", "ToolDefinition"], "jib.tools"
    ),
    "TrustPolicy": "jib.trust",
}

_SUBPACKAGES = frozenset({"generator"})
"""Subpackages reachable as attributes without importing them: `jib.generator.HTTPGenerator`."""


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"jib.{name}")  # the import binds it on this module
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jib' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBPACKAGES})


__all__ = [
    "RETRYABLE_ERRORS",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "Chat",
    "ChatPipeline",
    "ChatStream",
    "Completion",
    "CompletionPipeline",
    "ContentAudioInput",
    "ContentFile",
    "ContentImageUrl",
    "ContentPart",
    "ContentText",
    "ContextLengthError",
    "FunctionCall",
    "FunctionDefinition",
    "GenerateParams",
    "GeneratedMessage",
    "GeneratedText",
    "Generator",
    "GeneratorWarning",
    "HTTPGenerator",
    "InvalidGeneratorError",
    "JibError",
    "LiteLLMGenerator",
    "MalformedResponseError",
    "Message",
    "MissingDependencyError",
    "OnFailed",
    "OpenAIGenerator",
    "ProcessingError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitError",
    "RequestGenerator",
    "Role",
    "ServerError",
    "StopReason",
    "StoredError",
    "ToolCall",
    "ToolDefinition",
    "TransformersGenerator",
    "TrustPolicy",
    "UntrustedIdentifierError",
    "Usage",
    "VLLMGenerator",
    "__version__",
    "generator",
    "get_generator",
    "get_identifier",
    "register_generator",
    "registered_providers",
]
