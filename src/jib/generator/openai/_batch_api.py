"""OpenAI's batch API for `openai!` generators: files + `/batches`, `custom_id` per request.

The protocol, as OpenAI documents it and as other servers implement it:

1. `POST {api_base}/files` (multipart: `purpose=batch`, `file`): the input, one JSON request a
   line, `{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": {...}}`; the
   body is what `openai!` sends for the same request (`chat_body`);
2. `POST {api_base}/batches` `{"input_file_id", "endpoint", "completion_window": "24h",
   "metadata"}`;
3. `GET {api_base}/batches/{id}` until its `status` is `completed`, `expired`, `cancelled` or
   `failed`;
4. `GET {api_base}/files/{output_file_id}/content` and `…/{error_file_id}/content`: one line a
   request, `{"custom_id", "response": {"status_code", "body"}, "error"}`, in any order. A
   request the batch did not run before it expired or was cancelled is in the error file with
   `error.code` `batch_expired` / `batch_cancelled`.

Every request goes over the generator's wire settings (proxy, TLS); result files are read line
by line with a larger bound (`download_bytes`), since a file holds many answers.

A submit tried again after step 2 failed reuses the file step 1 uploaded, and first looks for a
batch already made from it: a server error or a connection cut may come after the batch was
created, its answer lost. `GET {api_base}/batches` lists batches newest first (`limit`, then
`after` the last id of the page before); a batch whose `input_file_id` is the upload's is
adopted instead of creating another (the file's id is unique to the upload, so it can only be
this submit's batch). The walk stops at batches older than the upload (`created_at`, the server's
own clock). A server that does not list batches (404, 405) is warned about and the batch created
again: on such a server a lost answer can still make it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from jib._wire import Wire, WireRequest, WireResponse, WireSettings
from jib.errors import BadRequestError, ProviderError, error_for_status
from jib.generator._batch_api import (
    BatchClient,
    BatchItem,
    BatchState,
    ItemResult,
    Submitted,
    endpoint_without_credentials,
    result_object,
)
from jib.generator.openai._protocol import (
    chat_body,
    error_from_response,
    parse_json,
    read_chat,
)

if TYPE_CHECKING:
    from jib.generator.openai._generator import OpenAIGenerator

__all__ = ["DOWNLOAD_BYTES", "OpenAIBatchClient"]

DOWNLOAD_BYTES = 1 << 30
"""The largest result file line read (and half the largest file): 1 GiB."""

ENDPOINT = "/v1/chat/completions"
_ENDED = frozenset({"completed", "expired", "cancelled"})
_NOT_RUN = frozenset({"batch_expired", "batch_cancelled"})
_JSON = {"Content-Type": "application/json", "Accept": "application/json"}
_PAGE = 100
"""Batches asked for a page when looking for one made from an upload (OpenAI's most)."""
_MAX_PAGES = 50

logger = logging.getLogger("jib.batch_api")


@dataclass(frozen=True, slots=True)
class _Upload:
    """An input file uploaded: its id, and when the server says it was made (if it does)."""

    file_id: str
    created_at: int | None


class OpenAIBatchClient(BatchClient):
    """OpenAI's batch API (see the module docstring) for one `openai!` generator."""

    provider = "openai"

    def __init__(self, generator: OpenAIGenerator, download_bytes: int = DOWNLOAD_BYTES) -> None:
        self._generator = generator
        self._base = generator.api_base.rstrip("/")
        self._files = Wire(
            WireSettings(
                generator.proxy,
                generator.verify,
                max(download_bytes, generator.max_response_bytes),
                generator.max_redirects,
            )
        )
        # Input files uploaded whose batch creation failed in a way that may have created it
        # (or was not tried yet), by their content's digest: a submit tried again does not
        # upload its input again, and looks for a batch made from it before creating one.
        self._uploaded: dict[bytes, _Upload] = {}

    # -- Sender -------------------------------------------------------------------------------

    @property
    def wire_label(self) -> str:
        """The provider, as errors name it."""
        return self._generator.wire_label

    def wire_secrets(self) -> Sequence[str | None]:
        """The generator's key."""
        return self._generator.wire_secrets()

    @property
    def endpoint(self) -> str:
        """The generator's `api_base`."""
        return endpoint_without_credentials(self._base)

    # -- the protocol -------------------------------------------------------------------------

    def line(self, item: BatchItem) -> bytes:
        """`{"custom_id", "method", "url", "body"}` with `openai!`'s own request body."""
        generator = self._generator
        body = chat_body(
            generator.model,
            item.messages,
            item.params,
            cache_marks=generator._sends_cache_marks(),
        )
        request = {"custom_id": item.custom_id, "method": "POST", "url": ENDPOINT, "body": body}
        return json.dumps(request, separators=(",", ":")).encode()

    async def submit(self, lines: Sequence[bytes], *, label: str) -> Submitted:
        """Upload the input file, then create the batch. When the same lines were uploaded by a
        submit whose batch creation failed, the batch made from that file, if the creation
        made one after all, or else a batch created from it now."""
        content = b"\n".join(lines) + b"\n"
        digest = await asyncio.to_thread(_digest, content)
        upload = self._uploaded.get(digest)
        if upload is None:
            upload = self._uploaded[digest] = await self._upload(content)
        else:
            made = await self._made_from(upload)
            if made is not None:
                del self._uploaded[digest]
                return Submitted(made, upload.file_id)
        try:
            created = await self._json(
                self._post(
                    "/batches",
                    {
                        "input_file_id": upload.file_id,
                        "endpoint": ENDPOINT,
                        "completion_window": "24h",
                        "metadata": {"jib_run": label[:512]},
                    },
                )
            )
        except ProviderError as exc:
            if not exc.retryable:  # refused: no batch was made
                del self._uploaded[digest]
            raise
        batch_id = _text(created.get("id"), "the batch's id", self.wire_label)
        del self._uploaded[digest]
        return Submitted(batch_id, upload.file_id)

    async def _made_from(self, upload: _Upload) -> str | None:
        """The id of a batch made from `upload`'s file, if there is one (see the module
        docstring)."""
        headers = self._generator._headers(_JSON)
        after: str | None = None
        for _ in range(_MAX_PAGES):
            query = f"limit={_PAGE}" + (f"&after={quote(after, safe='')}" if after else "")
            request = WireRequest("GET", f"{self._base}/batches?{query}", headers)
            try:
                page = await self._json(request)
            except BadRequestError as exc:
                if exc.status_code not in (404, 405):
                    raise
                logger.warning(
                    "%s does not list batches (HTTP %s): a batch whose creation failed is "
                    "created again, and may be made twice",
                    self.endpoint,
                    exc.status_code,
                )
                return None
            batches = page.get("data")
            if type(batches) is not list:
                raise error_for_status(
                    502, "the list of batches has no data", provider=self.wire_label
                )
            for batch in batches:
                if not isinstance(batch, Mapping):
                    continue
                if batch.get("input_file_id") == upload.file_id:
                    return _text(batch.get("id"), "the batch's id", self.wire_label)
                made = batch.get("created_at")
                if upload.created_at is not None and type(made) is int and made < upload.created_at:
                    return None  # older than the upload, as is every batch after it
            last = page.get("last_id")
            if page.get("has_more") is not True or type(last) is not str or not last:
                return None
            after = last
        logger.warning(
            "%s: no batch made from %s among the newest %d; creating it again",
            self.endpoint,
            upload.file_id,
            _PAGE * _MAX_PAGES,
        )
        return None

    async def _upload(self, content: bytes) -> _Upload:
        """`POST /files` (`purpose=batch`): the input file's id and time."""
        boundary = f"jib-{os.urandom(12).hex()}"
        headers = self._generator._headers(
            {
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Accept": "application/json",
            }
        )
        request = WireRequest("POST", f"{self._base}/files", headers, _multipart(boundary, content))
        uploaded = await self._json(request)
        made = uploaded.get("created_at")
        return _Upload(
            _text(uploaded.get("id"), "the uploaded file's id", self.wire_label),
            made if type(made) is int else None,
        )

    async def state(self, batch_id: str) -> BatchState:
        """`GET /batches/{id}`."""
        data = await self._json(
            WireRequest("GET", f"{self._base}/batches/{batch_id}", self._generator._headers(_JSON))
        )
        return _state(data)

    async def cancel(self, batch_id: str) -> BatchState:
        """`POST /batches/{id}/cancel`."""
        return _state(await self._json(self._post(f"/batches/{batch_id}/cancel", {})))

    async def results(self, state: BatchState) -> AsyncGenerator[ItemResult, None]:
        """The output file's lines, then the error file's."""
        for file_id in (state.output_file_id, state.error_file_id):
            if file_id:
                # Closed here, on this task, even when the reader stops early.
                async with contextlib.aclosing(self._lines(file_id)) as lines:
                    async for line in lines:
                        result = self._result(line)
                        if result is not None:
                            yield result

    async def aclose(self) -> None:
        """Close the result files' connections."""
        await self._files.aclose()

    # -- one request, one answer ----------------------------------------------------------------

    def _post(self, path: str, payload: Mapping[str, Any]) -> WireRequest:
        return WireRequest(
            "POST",
            self._base + path,
            self._generator._headers(_JSON),
            json.dumps(payload).encode(),
        )

    async def _json(self, request: WireRequest) -> dict[str, Any]:
        response = await self._generator.wire.send(request, self)
        return _answer(response, self.wire_label, self.wire_secrets())

    async def _lines(self, file_id: str) -> AsyncGenerator[bytes, None]:
        request = WireRequest(
            "GET",
            f"{self._base}/files/{file_id}/content",
            self._generator._headers({"Accept": "application/jsonl, application/json"}),
        )
        async with self._files.stream(request, self) as response:
            if response.status >= 300:
                await self._files.read(response, self)
                _answer(response, self.wire_label, self.wire_secrets())
            async with contextlib.aclosing(self._files.read_lines(response, self)) as lines:
                async for line in lines:
                    if line.strip():
                        yield line

    def _result(self, line: bytes) -> ItemResult | None:
        """One result line, joined by its `custom_id` (`None`: unreadable, skipped)."""
        label = self.wire_label
        data = result_object(label, line)
        if data is None:
            return None
        custom_id: str = data["custom_id"]
        response = data.get("response")
        if type(response) is dict:
            status = response.get("status_code")
            status = status if type(status) is int else 200
            body = response.get("body")
            if status < 300:
                try:
                    return ItemResult(custom_id, answer=read_chat(body, label, status))
                except ProviderError as exc:
                    return ItemResult(custom_id, error=exc)
            raw = json.dumps(body).encode() if not isinstance(body, str) else body.encode()
            return ItemResult(
                custom_id,
                error=error_from_response(status, raw, {}, label, self.wire_secrets()),
            )
        error = data.get("error")
        error = error if type(error) is dict else {}
        code = str(error.get("code") or "")
        if code in _NOT_RUN:
            return ItemResult(custom_id, expired=True)
        message = str(error.get("message") or code or "the batch returned no response")
        return ItemResult(custom_id, error=error_for_status(400, message, provider=label))


def _answer(response: WireResponse, label: str, secrets: Sequence[str | None]) -> dict[str, Any]:
    if response.status >= 300:
        raise error_from_response(response.status, response.body, response.headers, label, secrets)
    data = parse_json(response.body, label, response.status)
    if type(data) is not dict:
        raise error_for_status(502, "the answer is not a JSON object", provider=label)
    return data


def _text(value: Any, what: str, label: str) -> str:
    if type(value) is not str or not value:
        raise error_for_status(502, f"the answer has no {what}", provider=label)
    return value


def _state(data: Mapping[str, Any]) -> BatchState:
    status = str(data.get("status") or "")
    counts = data.get("request_counts")
    errors = data.get("errors")
    found = errors.get("data") if isinstance(errors, Mapping) else None
    first = found[0] if isinstance(found, list) and found else None
    message = str(first.get("message") or "") if isinstance(first, Mapping) else ""
    return BatchState(
        status=status,
        phase="ended" if status in _ENDED else "failed" if status == "failed" else "in_progress",
        output_file_id=data.get("output_file_id") or None,
        error_file_id=data.get("error_file_id") or None,
        counts={k: v for k, v in counts.items() if type(v) is int}
        if isinstance(counts, Mapping)
        else {},
        message=message or None,
    )


def _digest(content: bytes) -> bytes:
    return hashlib.blake2b(content, digest_size=16).digest()


def _multipart(boundary: str, content: bytes) -> tuple[bytes, ...]:
    """A `multipart/form-data` body: `purpose=batch` and the JSONL `file`."""
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="purpose"\r\n\r\n'
        "batch\r\n"
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="batch.jsonl"\r\n'
        "Content-Type: application/jsonl\r\n\r\n"
    ).encode()
    return (head, content, f"\r\n--{boundary}--\r\n".encode())
