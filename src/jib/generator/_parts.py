"""Content parts in the words of an error: what a part is, and which one a provider refuses.

Every provider that cannot carry a part says so before anything is sent or generated, naming
the message and the part (`refused_part`), in the same words (`describe_part`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from jib.content import ContentAudioInput, ContentFile, ContentImageUrl, ContentPart, ContentText
from jib.messages import Message

__all__ = ["describe_part", "refused_part"]

_KINDS: dict[type, str] = {
    ContentImageUrl: "an image",
    ContentAudioInput: "an audio clip",
    ContentFile: "a file",
}


def describe_part(part: ContentPart) -> str:
    """What a part is: `an image (image_url, image/png, 12 KB)`, `a file (file, a remote URL)`."""
    details = [part.type]
    if isinstance(part, (ContentImageUrl, ContentFile)):
        data = part.data
        if data is None:
            details.append("a remote URL")
        else:
            details.extend((part.mimetype or "?", _size(len(data))))
    elif isinstance(part, ContentAudioInput):
        details.extend((part.format, _size(len(part.data) * 3 // 4)))
    return f"{_KINDS.get(type(part), 'text')} ({', '.join(details)})"


def refused_part(
    messages: Sequence[Message], why_not: Callable[[ContentPart], str | None]
) -> str | None:
    """What to say of the first part (text parts aside) that `why_not` gives a reason against:
    `message 2 (user), part 1 is an image (…): <reason>`; `None` when every part is taken."""
    for number, message in enumerate(messages, 1):
        if not message.has_parts:
            continue
        for place, part in enumerate(message.content_parts, 1):
            if type(part) is ContentText:
                continue
            reason = why_not(part)
            if reason is not None:
                return (
                    f"message {number} ({message.role}), part {place} is "
                    f"{describe_part(part)}: {reason}"
                )
    return None


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.0f} KB"
    return f"{count / (1024 * 1024):.1f} MB"
