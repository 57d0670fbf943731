"""`openai!`: a native generator for the OpenAI wire protocol, on aiohttp.

Pick `openai!` for speed against any OpenAI-compatible server (vLLM, llama.cpp, Ollama's `/v1`,
LM Studio, SGLang, `transformers serve`) or OpenAI itself: one pooled aiohttp session per
generator and event loop, and no translation layer. Pick the default LiteLLM path
(`openai/…`, `anthropic/…`, `ollama_chat/…`) for the breadth of providers LiteLLM speaks.
aiohttp is imported at the first request.
"""

from jib.generator.openai._generator import DEFAULT_API_BASE, KEY_VARIABLE, OpenAIGenerator

__all__ = ["DEFAULT_API_BASE", "KEY_VARIABLE", "OpenAIGenerator"]
