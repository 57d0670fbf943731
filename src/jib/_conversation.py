"""A conversation's server-side session, carried from a chat's record to its generator.

Some targets keep the conversation on the server and hand back an id to send with the next turn
(`session:` in an `http!` spec). The id belongs to the chat, not to the generator: a generator
that gets one puts it in its answer's `extra["session"]` (`{"id", "origin"}`), the pipeline
moves it into the record's `metadata["session"]`, and continuing the chat (`chat.continue_()`,
`jib chat --continue`, which carry the metadata) hands it back to the generator through
`current_session()` while that pipeline runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

__all__ = ["SESSION_KEY", "ConversationSession", "current_session", "session_from", "using_session"]

SESSION_KEY = "session"
"""The key of the session in a record's `metadata` and in a generated message's `extra`."""


class ConversationSession(dict[str, str]):
    """`{"id": …, "origin": …}`: the server's conversation id and the origin
    (`scheme://host:port`) it came from, the only one it is sent to."""

    @property
    def id(self) -> str:
        """The server's conversation id."""
        return self["id"]

    @property
    def origin(self) -> str:
        """The origin the id came from."""
        return self["origin"]


_CURRENT: ContextVar[ConversationSession | None] = ContextVar("jib_conversation", default=None)


def session_from(value: Any) -> ConversationSession | None:
    """The session `value` holds (a record's `metadata["session"]`), or `None` when it is not
    one (absent, or something else a user stored under that key)."""
    if not isinstance(value, Mapping):
        return None
    session_id, origin = value.get("id"), value.get("origin")
    if not isinstance(session_id, str) or not isinstance(origin, str) or not session_id:
        return None
    return ConversationSession(id=session_id, origin=origin)


def current_session() -> ConversationSession | None:
    """The session of the conversation being generated, if it has one."""
    return _CURRENT.get()


@contextlib.contextmanager
def using_session(metadata: Mapping[str, Any]) -> Iterator[None]:
    """Make the session in `metadata` (a pipeline's) the current one while the block runs."""
    token = _CURRENT.set(session_from(metadata.get(SESSION_KEY)))
    try:
        yield
    finally:
        _CURRENT.reset(token)
