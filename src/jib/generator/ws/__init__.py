"""The WebSocket provider (`ws!`): a chatbot on a WebSocket as a generator, described by a spec.

>>> from jib.generator.ws import WSGenerator
>>> generator = WSGenerator(spec={
...     "request": {"url": "ws://127.0.0.1:8766/chat", "message": {"text": "$content"}},
...     "response": {"transforms": [{"type": "jsonpath", "pattern": "$.text"}],
...                  "done": {"jsonpath": "$.type", "equals": "end"}},
... })
>>> generator.to_identifier().startswith("ws!ws,spec=")
True
"""

from jib.generator.ws.generator import WSGenerator
from jib.generator.ws.spec import Condition, FrameVerdict, WSRequestSpec, WSResponseSpec, WSSpec

__all__ = [
    "Condition",
    "FrameVerdict",
    "WSGenerator",
    "WSRequestSpec",
    "WSResponseSpec",
    "WSSpec",
]
