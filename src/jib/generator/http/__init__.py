"""The HTTP provider (`http!`): wrap any HTTP endpoint as a generator, described by a spec.

>>> from jib.generator.http import HTTPGenerator
>>> generator = HTTPGenerator.for_json_endpoint(
...     "http://127.0.0.1:8000/v1/chat",
...     request_body={"messages": "$messages"},
...     response={"content_path": "$.reply"},
... )
>>> generator.to_identifier().startswith("http!http,spec=")
True
"""

from jib.generator.http._budget import RenderLimits
from jib.generator.http._hooks import HookAction
from jib.generator.http.generator import DEFAULT_TIMEOUT, Hook, HookResult, HTTPGenerator
from jib.generator.http.spec import (
    Extract,
    HTTPSpec,
    PreparedRequest,
    RequestSpec,
    RequestTransform,
    RequestTransformContext,
    ResponseSpec,
    ResponseTransform,
    SessionSpec,
    StepSpec,
)
from jib.generator.http.transforms import now

__all__ = [
    "DEFAULT_TIMEOUT",
    "Extract",
    "HTTPGenerator",
    "HTTPSpec",
    "Hook",
    "HookAction",
    "HookResult",
    "PreparedRequest",
    "RenderLimits",
    "RequestSpec",
    "RequestTransform",
    "RequestTransformContext",
    "ResponseSpec",
    "ResponseTransform",
    "SessionSpec",
    "StepSpec",
    "now",
]
