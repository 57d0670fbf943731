"""What a dataset may attach: the trust rule for the files and URLs a line names.

A dataset is data (docs/security.md): whoever wrote it is not the user running it. So a line's
`attachments` may name files only inside the dataset's own folder — a relative path without `..`
that stays inside it once symbolic links are followed; an absolute path, a `..` or a link leading
out is refused unless it leads into a folder the user allows (`--allow-path DIR`). And a URL in
a line's parts (`image_url`, `file_url`, or an attachment) is refused for a generator that would
fetch it from this machine — a model in this process (`transformers!`, `vllm!`), LiteLLM (which
downloads an image URL itself for the providers that take inline images only) or a generator of
your own — unless the user allows its host (`--allow-fetch HOST`, `*` for any): otherwise a
dataset could make your machine request your intranet or a cloud metadata address. `openai!`,
`http!` and `ws!` pass a URL on for the provider's servers to fetch, and offline generators fetch
nothing, so they get URLs as they are. A refused line fails alone (stored as a failed chat saying
how to allow it); the others run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from jib.cli._attachments import AttachmentError, RefusedAttachmentError
from jib.content import ContentFile, ContentImageUrl
from jib.registry import provider_name_for
from jib.trust import host_of

if TYPE_CHECKING:
    from jib.generator.base import Generator
    from jib.messages import Message

__all__ = ["ANY_HOST", "DataAllowances", "fetches_urls", "remote_urls", "url_refusal"]

ANY_HOST = "*"
"""In `--allow-fetch`: a URL on any host."""


@dataclass(frozen=True)
class DataAllowances:
    """What the user lets a dataset name beyond its own folder.

    Attributes:
        paths: folders a line may name files in (any path leading inside one).
        fetch_hosts: hosts whose URLs a generator may fetch from this machine (`*`: any).
    """

    paths: tuple[Path, ...] = ()
    fetch_hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, paths: Iterable[str] | None, hosts: Iterable[str] | None) -> DataAllowances:
        """From the command line's `--allow-path` and `--allow-fetch` options."""
        return cls(
            tuple(_resolved(Path(path).expanduser()) for path in paths or ()),
            frozenset(host.strip().lower() for host in hosts or () if host.strip()),
        )

    def resolve(self, name: str, folder: Path, where: str) -> Path:
        """Where attachment `name` of a line (`where`) of a dataset in `folder` leads.

        Raises:
            RefusedAttachmentError: it leads outside `folder` and outside every allowed folder.
            AttachmentError: the path names no file name, or cannot be followed (a link loop).
        """
        if not name.strip():
            raise AttachmentError(f"{where}: an attachment names no file")
        relative = Path(name)
        target = _resolved(folder / relative, f"{where}: attachment {name!r}")
        stays = not relative.is_absolute() and ".." not in relative.parts
        if stays and target.is_relative_to(_resolved(folder)):
            return target
        if any(target.is_relative_to(allowed) for allowed in self.paths):
            return target
        if relative.is_absolute():
            how = "it is an absolute path"
        elif not stays:
            how = "it holds '..'"
        else:
            how = "a symbolic link leads out of it"
        raise RefusedAttachmentError(
            f"refused attachment {name!r} of {where}, read from data: a dataset may attach "
            f"files inside its own folder ({folder}), and {how}; allow the folder it is in "
            "with --allow-path DIR"
        )

    def allows_fetch(self, url: str) -> bool:
        """Whether a generator may fetch `url` from this machine."""
        if ANY_HOST in self.fetch_hosts:
            return True
        host = host_of(url)
        return host is not None and host.lower() in self.fetch_hosts


def _resolved(path: Path, shown: str | None = None) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:  # a link loop: RuntimeError before Python 3.13
        raise AttachmentError(f"{shown or path}: cannot follow the path ({exc})") from None


def remote_urls(messages: Sequence[Message]) -> list[str]:
    """The `http(s)://` URLs the parts of `messages` name (inline `data:` ones are not)."""
    found = []
    for message in messages:
        if not message.has_parts:
            continue
        for part in message.content_parts:
            if isinstance(part, (ContentImageUrl, ContentFile)) and not part.url.startswith(
                "data:"
            ):
                found.append(part.url)
    return found


def fetches_urls(generator: Generator) -> bool:
    """Whether `generator` may fetch a part's URL from this machine (see the module docs)."""
    cls = type(generator)
    return cls.fetches_urls and not cls.offline


def _label(generator: Generator) -> str:
    provider = provider_name_for(type(generator))
    return f"{provider}!{generator.model}" if provider else type(generator).__name__


def url_refusal(
    messages: Sequence[Message], generator: Generator, allowances: DataAllowances, where: str
) -> RefusedAttachmentError | None:
    """Why `generator` may not be sent the URLs a dataset line (`where`) names, or None."""
    urls = remote_urls(messages)
    if not urls or not fetches_urls(generator):
        return None
    refused = [url for url in urls if not allowances.allows_fetch(url)]
    if not refused:
        return None
    hosts = sorted({host_of(url) or "?" for url in refused})
    shown = ", ".join(repr(url[:80]) for url in refused[:3])
    if len(refused) > 3:
        shown += f" and {len(refused) - 3} more"
    allow = " ".join(f"--allow-fetch {host}" for host in hosts)
    return RefusedAttachmentError(
        f"refused the URLs of {where}, read from data: {shown}; "
        f"{_label(generator)} would fetch them from this machine, which a dataset may "
        f"not make it do; allow their hosts with {allow} (or a dataset's every URL with "
        f"--allow-fetch '{ANY_HOST}')"
    )
