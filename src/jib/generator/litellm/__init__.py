"""`LiteLLMGenerator`: every model LiteLLM reaches, and jib's default provider.

Hosted APIs (`gpt-4.1`, `anthropic/claude-3-7-haiku-latest`, `gemini/gemini-2.5-pro`, …) take
their key from the provider's usual environment variable or `api_key=`. Self-hosted servers go
through LiteLLM's prefixes and `api_base`:

- `openai/<model>,api_base=http://host:8000/v1,api_key=…`: any OpenAI-compatible server.
- `hosted_vllm/<model>,api_base=http://host:8000/v1`: a vLLM server.
- `ollama_chat/<model>,api_base=http://host:11434`: Ollama's chat API (`/api/chat`).
- `ollama/<model>,api_base=http://host:11434`: Ollama's generate API (`/api/generate`).

LiteLLM is imported at the first request (or `load()`), not when jib is imported.
"""

from jib.generator.litellm._generator import LiteLLMGenerator

# The registry, pickling and error messages name the class by its public home.
LiteLLMGenerator.__module__ = __name__

__all__ = ["LiteLLMGenerator"]
