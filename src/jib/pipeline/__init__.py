"""Pipelines: `ChatPipeline` and `CompletionPipeline`."""

from jib.generator.base import bind_pipelines
from jib.pipeline._base import OnFailed
from jib.pipeline._stream import ChatStream
from jib.pipeline._tools import Tool
from jib.pipeline.chat import ChatPipeline
from jib.pipeline.completion import CompletionPipeline

bind_pipelines(ChatPipeline, CompletionPipeline)

__all__ = ["ChatPipeline", "ChatStream", "CompletionPipeline", "OnFailed", "Tool"]
