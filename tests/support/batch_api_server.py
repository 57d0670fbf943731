"""A server speaking OpenAI's batch API (files + batches) and Anthropic's Message Batches, for
tests: neither provider can be reached from here.

OpenAI: `POST /v1/files` (multipart, `purpose=batch`), `POST /v1/batches`, `GET /v1/batches` (newest
first, paged by `limit` and `after`, `{"object": "list", "data", "first_id", "last_id",
"has_more"}`), `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel`,
`GET /v1/files/{id}/content`; each input
line is checked (`custom_id` unique in its file, `method`, `url`, a body with `model` and
`messages`), and a key, when the server is given one, must come as `Authorization: Bearer`.
Anthropic: `POST /v1/messages/batches`, `GET /v1/messages/batches/{id}`, `…/cancel`,
`GET /v1/messages/batches/{id}/results`; every request's `params` is checked by the Messages
API stub's own checks (`anthropic_server.check_request`), and `x-api-key` and
`anthropic-version` must be there. Errors come in each provider's own JSON.

The model answers each request with its last user message's text (so a test sees every answer
joined to its own prompt). What a test can ask of it (`BatchServerState`):

- `shuffle`: results in a random order (default on);
- `fail_once`: prompts whose first attempt fails with a server error (500), later ones succeed;
- `refuse`: prompts that always fail with a bad request (400);
- `expire`: the numbers (1 = the first batch created) of batches that expire after running
  only half their requests (the rest `batch_expired` / `expired`);
- `refuse_batches`: the numbers of batches that fail validation as a whole (OpenAI's `failed`);
  `fail_holding`: prompts that make any OpenAI batch holding them fail so (a bad line);
- `polls`: how many polls a batch stays in progress; `gate`: while it is clear, batches stay in
  progress whatever `polls` says (a test holds a run there to kill it); `hold`: the numbers of
  the only batches the gate holds, when not empty;
- `cut_downloads`: how many result downloads end halfway (the connection closed mid-body);
- `mangle`: a function given a batch and its results file (JSONL bytes, as it would be sent)
  that returns the bytes to send instead (a line that is not JSON, a file cut mid-line,
  results duplicated, unknown or missing);
- `faults`: `"METHOD /path/prefix"` → HTTP statuses to answer the next matching requests with
  instead (each used once, in order; a 429 comes with `Retry-After: 0`);
- `lose_answers`: the same, but each matching request is processed first (a batch is created)
  and only its answer is lost: replaced by that status, or with 0, the connection closed before
  any answer;
- `refuse_larger`: refuse (400, at creation) a batch whose input holds a request larger than
  this many bytes; each refused creation's request count is kept in `refused`;
- `page_size`: the most batches one page of `GET /v1/batches` holds (every listing's query
  is kept in `listings`).

Times (`created_at` of files and batches) come from a clock that moves one second per object
made, so their order is the order they were made in.

`POST /v1/chat/completions` and `POST /v1/messages` answer one request directly, the same way
(counted in `direct`). Every created batch is recorded (`batches`: provider, id, custom ids,
bytes of input). Run it by hand with `python -m tests.support.batch_api_server [PORT]` (8303 by
default).
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.support.anthropic_server import InvalidRequest, check_request
from tests.support.json_server import JsonHandler, serve

__all__ = ["BatchServerState", "RunningBatchServer", "run_batch_api_server"]

_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass
class Batch:
    """One created batch."""

    provider: str
    id: str
    number: int
    requests: list[tuple[str, dict[str, Any]]]
    size: int
    created_at: int = 0
    input_file_id: str | None = None
    polls: int = 0
    status: str = "in_progress"
    output: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class BatchServerState:
    """What the server saw, and how it behaves; shared with the handler threads."""

    key: str | None = None
    shuffle: bool = True
    fail_once: set[str] = field(default_factory=set)
    refuse: set[str] = field(default_factory=set)
    expire: set[int] = field(default_factory=set)
    refuse_batches: set[int] = field(default_factory=set)
    fail_holding: set[str] = field(default_factory=set)
    hold: set[int] = field(default_factory=set)
    cut_downloads: int = 0
    mangle: Callable[[Batch, bytes], bytes] | None = None
    faults: dict[str, list[int]] = field(default_factory=dict)
    lose_answers: dict[str, list[int]] = field(default_factory=dict)
    refuse_larger: int | None = None
    refused: list[int] = field(default_factory=list)
    page_size: int = 100
    listings: list[dict[str, str]] = field(default_factory=list)
    clock: int = 1_700_000_000
    file_times: dict[str, int] = field(default_factory=dict)
    polls: int = 1
    gate: threading.Event = field(default_factory=threading.Event)
    batches: dict[str, Batch] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    poll_count: int = 0
    direct: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    rng: random.Random = field(default_factory=lambda: random.Random(20))

    def __post_init__(self) -> None:
        self.gate.set()

    def reset(self) -> None:
        """Forget every batch and file, and behave by default again."""
        with self.lock:
            self.key = None
            self.shuffle = True
            self.fail_once.clear()
            self.refuse.clear()
            self.expire.clear()
            self.refuse_batches.clear()
            self.fail_holding.clear()
            self.hold.clear()
            self.cut_downloads = 0
            self.mangle = None
            self.faults.clear()
            self.lose_answers.clear()
            self.refuse_larger = None
            self.refused.clear()
            self.page_size = 100
            self.listings.clear()
            self.file_times.clear()
            self.polls = 1
            self.gate.set()
            self.batches.clear()
            self.files.clear()
            self.seen.clear()
            self.poll_count = 0
            self.direct = 0

    def created(self, provider: str | None = None) -> list[Batch]:
        """The batches created, in order (of one provider, if given)."""
        with self.lock:
            found = sorted(self.batches.values(), key=lambda b: b.number)
        return [b for b in found if provider is None or b.provider == provider]

    def tick(self) -> int:
        """The clock's next second (call with the lock held)."""
        self.clock += 1
        return self.clock

    # -- the model ------------------------------------------------------------------------------

    def answer(self, prompt: str) -> tuple[int, str]:
        """(status, text) for one request's attempt."""
        self.seen[prompt] = self.seen.get(prompt, 0) + 1
        if prompt in self.refuse:
            return 400, "this prompt is refused"
        if prompt in self.fail_once and self.seen[prompt] == 1:
            return 500, "the server had an error processing your request"
        return 200, prompt

    def finish(self, batch: Batch) -> None:
        """Run the batch: answer each request (half of them, when it expires)."""
        expires = batch.number in self.expire
        requests = list(batch.requests)
        ran = len(requests) // 2 if expires else len(requests)
        for index, (custom_id, body) in enumerate(requests):
            if index < ran:
                status, text = self.answer(_last_user_text(batch.provider, body))
                batch.output.append(_result(batch.provider, custom_id, body, status, text))
            else:
                batch.errors.append(_not_run(batch.provider, custom_id))
        if self.shuffle:
            self.rng.shuffle(batch.output)
            self.rng.shuffle(batch.errors)
        batch.status = "expired" if expires else "completed"


def _last_user_text(provider: str, body: dict[str, Any]) -> str:
    messages = body["messages"]
    content = next(m for m in reversed(messages) if m["role"] == "user")["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def _result(
    provider: str, custom_id: str, body: dict[str, Any], status: int, text: str
) -> dict[str, Any]:
    words = len(text.split())
    if provider == "openai":
        if status != 200:
            kind = "server_error" if status >= 500 else "invalid_request_error"
            error_body = {"error": {"message": text, "type": kind, "code": None}}
            response = {"status_code": status, "request_id": "q", "body": error_body}
            return {"id": f"r-{custom_id}", "custom_id": custom_id, "error": None,
                    "response": response}  # fmt: skip
        completion = {
            "id": f"chatcmpl-{custom_id}",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": words, "completion_tokens": words,
                      "total_tokens": 2 * words},
        }  # fmt: skip
        response = {"status_code": 200, "request_id": "q", "body": completion}
        return {"id": f"r-{custom_id}", "custom_id": custom_id, "error": None,
                "response": response}  # fmt: skip
    if status != 200:
        kind = "api_error" if status >= 500 else "invalid_request_error"
        return {"custom_id": custom_id, "result": {"type": "errored", "error": {
            "type": "error", "error": {"type": kind, "message": text}}}}  # fmt: skip
    message = {
        "id": f"msg_{custom_id}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": words, "output_tokens": words},
    }
    return {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}


def _not_run(provider: str, custom_id: str) -> dict[str, Any]:
    if provider == "openai":
        return {"id": f"r-{custom_id}", "custom_id": custom_id, "response": None,
                "error": {"code": "batch_expired",
                          "message": "This request could not be executed before the completion "
                                     "window expired."}}  # fmt: skip
    return {"custom_id": custom_id, "result": {"type": "expired"}}


def _multipart_file(content_type: str, data: bytes) -> tuple[dict[str, str], bytes]:
    """The form fields and the `file` part of a `multipart/form-data` body."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    fields: dict[str, str] = {}
    file = b""
    for part in data.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, body = part.partition(b"\r\n\r\n")
        body = body[:-2] if body.endswith(b"\r\n") else body
        name = re.search(rb'name="([^"]+)"', head)
        if name is None:
            raise InvalidRequest("a form part has no name")
        if name.group(1) == b"file":
            file = body
        else:
            fields[name.group(1).decode()] = body.decode()
    return fields, file


class _Handler(JsonHandler):
    server: Any
    _provider = "openai"
    _lose: int | None = None

    @property
    def state(self) -> BatchServerState:
        return self.server.state  # type: ignore[no-any-return]

    def _fail(self, provider: str, status: int, message: str) -> None:
        if provider == "openai":
            body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
        else:
            kinds = {401: "authentication_error", 404: "not_found_error"}
            kind = kinds.get(status, "invalid_request_error")
            body = {"type": "error", "error": {"type": kind, "message": message}}
        self.send_json(status, body)

    def _authorized(self, provider: str) -> bool:
        key = self.state.key
        if provider == "anthropic":
            if not self.headers.get("anthropic-version"):
                self._fail(provider, 400, "anthropic-version: header is required")
                return False
            if key is not None and self.headers.get("x-api-key") != key:
                self._fail(provider, 401, "invalid x-api-key")
                return False
            return True
        if key is not None and self.headers.get("Authorization") != f"Bearer {key}":
            self._fail(provider, 401, "Incorrect API key provided")
            return False
        return True

    def _faulted(self, provider: str, method: str, path: str) -> bool:
        """Whether a `faults` entry answers this request (it is then answered); a
        `lose_answers` entry is noted, for `send_bytes` to lose the answer."""
        self._lose = _next_status(self.state, self.state.lose_answers, method, path)
        status = _next_status(self.state, self.state.faults, method, path)
        if status is None:
            return False
        self._lose = None
        self._send_fault(provider, status)
        return True

    def send_bytes(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer, unless a `lose_answers` entry loses this answer (the work is done)."""
        lose, self._lose = self._lose, None
        if lose is None:
            super().send_bytes(status, data, content_type, headers)
        elif lose == 0:
            self.close_connection = True  # closed with no answer at all
        else:
            self._send_fault(self._provider, lose)

    def _send_fault(self, provider: str, status: int) -> None:
        if provider == "openai":
            kind = "rate_limit_exceeded" if status == 429 else "server_error"
            body: dict[str, Any] = {"error": {"message": f"fault {status}", "type": kind}}
        else:
            kind = "rate_limit_error" if status == 429 else "api_error"
            body = {"type": "error", "error": {"type": kind, "message": f"fault {status}"}}
        self.send_json(status, body, headers={"Retry-After": "0"} if status == 429 else None)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        provider = self._provider = "anthropic" if path.startswith("/v1/messages") else "openai"
        data = self._body()
        if not self._authorized(provider) or self._faulted(provider, "POST", path):
            return
        try:
            if path in ("/v1/chat/completions", "/v1/messages"):
                self._direct(provider if path == "/v1/chat/completions" else "anthropic", data)
            elif path == "/v1/files":
                self._upload(data)
            elif path == "/v1/batches":
                self._create_openai(json.loads(data))
            elif path == "/v1/messages/batches":
                self._create_anthropic(json.loads(data), len(data))
            elif path.endswith("/cancel"):
                self._cancel(provider, path.split("/")[-2])
            else:
                self._fail(provider, 404, f"no route {path}")
        except InvalidRequest as exc:
            self._fail(provider, 400, str(exc))

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        provider = self._provider = "anthropic" if path.startswith("/v1/messages/") else "openai"
        if not self._authorized(provider) or self._faulted(provider, "GET", path):
            return
        if path == "/v1/batches":
            self._list_openai(dict(parse_qsl(urlsplit(self.path).query)))
            return
        parts = path.strip("/").split("/")
        if path.startswith("/v1/files/") and path.endswith("/content"):
            with self.state.lock:
                file = self.state.files.get(parts[2])
                owner = next(
                    (
                        b
                        for b in self.state.batches.values()
                        if parts[2].startswith(f"file-{b.id}-")
                    ),
                    None,
                )
            if file is None:
                self._fail(provider, 404, "no such file")
                return
            if owner is not None and self.state.mangle is not None:
                file = self.state.mangle(owner, file)
            self._send_results(file, "application/jsonl")
            return
        if path.startswith("/v1/messages/batches/") and path.endswith("/results"):
            batch = self.state.batches.get(parts[3])
            if batch is None or batch.status not in ("ended",):
                self._fail(provider, 404, "no results yet")
                return
            lines = b"".join(json.dumps(r).encode() + b"\n" for r in [*batch.output, *batch.errors])
            if self.state.mangle is not None:
                lines = self.state.mangle(batch, lines)
            self._send_results(lines, "application/binary")
            return
        batch_id = parts[-1]
        batch = self.state.batches.get(batch_id)
        if batch is None:
            self._fail(provider, 404, f"no batch {batch_id}")
            return
        self._poll(batch)
        self.send_json(200, self._view(batch))

    def _direct(self, provider: str, data: bytes) -> None:
        """A request sent directly (not in a batch), as `--batch-api-fallback` sends one."""
        body = json.loads(data)
        state = self.state
        with state.lock:
            state.direct += 1
            status, text = state.answer(_last_user_text(provider, body))
        result = _result(provider, "direct", body, status, text)
        if provider == "openai":
            self.send_json(result["response"]["status_code"], result["response"]["body"])
        elif status != 200:
            self.send_json(status, result["result"]["error"])
        else:
            self.send_json(200, result["result"]["message"])

    def _send_results(self, data: bytes, content_type: str) -> None:
        with self.state.lock:
            cut = self.state.cut_downloads > 0
            self.state.cut_downloads -= cut
        if not cut:
            self.send_bytes(200, data, content_type)
            return
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True

    # -- OpenAI ---------------------------------------------------------------------------------

    def _upload(self, data: bytes) -> None:
        fields, file = _multipart_file(self.headers.get("Content-Type", ""), data)
        if fields.get("purpose") != "batch":
            raise InvalidRequest("purpose must be 'batch'")
        ids: set[str] = set()
        for number, line in enumerate(file.splitlines(), start=1):
            request = json.loads(line)
            custom_id = request.get("custom_id")
            if not isinstance(custom_id, str) or custom_id in ids:
                raise InvalidRequest(f"line {number}: custom_id missing or repeated")
            ids.add(custom_id)
            if request.get("method") != "POST" or request.get("url") != "/v1/chat/completions":
                raise InvalidRequest(f"line {number}: method/url")
            body = request.get("body")
            if not isinstance(body, dict) or "model" not in body or "messages" not in body:
                raise InvalidRequest(f"line {number}: body needs model and messages")
        with self.state.lock:
            file_id = f"file-{len(self.state.files) + 1}"
            self.state.files[file_id] = file
            created_at = self.state.file_times[file_id] = self.state.tick()
        self.send_json(200, {"id": file_id, "object": "file", "bytes": len(file),
                             "created_at": created_at, "purpose": "batch",
                             "filename": "batch.jsonl"})  # fmt: skip

    def _create_openai(self, body: dict[str, Any]) -> None:
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            raise InvalidRequest("endpoint and completion_window")
        state = self.state
        with state.lock:
            file_id = body.get("input_file_id", "")
            file = state.files.get(file_id)
            if file is None:
                raise InvalidRequest("no such input file")
            lines = file.splitlines()
            self._check_sizes([len(line) for line in lines])
            requests = [(r["custom_id"], r["body"]) for r in map(json.loads, lines)]
            batch = self._new_batch("openai", requests, len(file))
            batch.input_file_id = file_id
        self.send_json(200, self._view(batch))

    def _list_openai(self, query: dict[str, str]) -> None:
        """`GET /v1/batches`: newest first, `limit` a page (20 by default, at most
        `page_size`), `after` the id of the last batch of the page before."""
        state = self.state
        with state.lock:
            state.listings.append(query)
            found = [b for b in state.batches.values() if b.provider == "openai"]
        found.sort(key=lambda b: b.number, reverse=True)
        after = query.get("after")
        if after is not None:
            ids = [b.id for b in found]
            if after not in ids:
                self._fail("openai", 400, f"no batch {after}")
                return
            found = found[ids.index(after) + 1 :]
        page = found[: min(int(query.get("limit", 20)), state.page_size)]
        self.send_json(200, {
            "object": "list",
            "data": [self._view(b) for b in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(found) > len(page),
        })  # fmt: skip

    # -- Anthropic -------------------------------------------------------------------------------

    def _create_anthropic(self, body: dict[str, Any], size: int) -> None:
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise InvalidRequest("requests: a non-empty list is required")
        ids: set[str] = set()
        found = []
        for request in requests:
            custom_id = request.get("custom_id")
            if (
                not isinstance(custom_id, str)
                or not _CUSTOM_ID.match(custom_id)
                or custom_id in ids
            ):
                raise InvalidRequest(f"custom_id {custom_id!r} is invalid or repeated")
            ids.add(custom_id)
            check_request(request["params"])
            found.append((custom_id, request["params"]))
        with self.state.lock:
            self._check_sizes([len(json.dumps(r, separators=(",", ":"))) for r in requests])
            batch = self._new_batch("anthropic", found, size)
        self.send_json(200, self._view(batch))

    # -- both -----------------------------------------------------------------------------------

    def _check_sizes(self, sizes: list[int]) -> None:
        """Refuse a batch holding a request over `refuse_larger` bytes (lock held)."""
        most = self.state.refuse_larger
        if most is not None and any(size > most for size in sizes):
            self.state.refused.append(len(sizes))
            raise InvalidRequest(f"a request in this batch is larger than {most} bytes")

    def _new_batch(
        self, provider: str, requests: list[tuple[str, dict[str, Any]]], size: int
    ) -> Batch:
        number = len(self.state.batches) + 1
        prefix = "batch_" if provider == "openai" else "msgbatch_"
        batch = Batch(provider, f"{prefix}{number:04d}", number, requests, size)
        batch.created_at = self.state.tick()
        self.state.batches[batch.id] = batch
        return batch

    def _poll(self, batch: Batch) -> None:
        state = self.state
        with state.lock:
            state.poll_count += 1
            if batch.status != "in_progress":
                return
            batch.polls += 1
            held = not state.gate.is_set() and (not state.hold or batch.number in state.hold)
            if batch.number in state.refuse_batches or any(
                _last_user_text(batch.provider, body) in state.fail_holding
                for _, body in batch.requests
            ):
                batch.status = "failed"
            elif batch.polls > state.polls and not held:
                state.finish(batch)
                if batch.provider == "anthropic":
                    batch.status = "ended"
                else:
                    self._write_files(batch)

    def _write_files(self, batch: Batch) -> None:
        files = self.state.files
        for name, rows in (("output", batch.output), ("errors", batch.errors)):
            if rows:
                file_id = f"file-{batch.id}-{name}"
                files[file_id] = b"".join(json.dumps(r).encode() + b"\n" for r in rows)

    def _cancel(self, provider: str, batch_id: str) -> None:
        state = self.state
        with state.lock:
            batch = state.batches.get(batch_id)
            if batch is None:
                self._fail(provider, 404, f"no batch {batch_id}")
                return
            if batch.status == "in_progress":
                batch.errors = [
                    {"custom_id": c, "result": {"type": "canceled"}}
                    if provider == "anthropic"
                    else {
                        "custom_id": c,
                        "response": None,
                        "error": {"code": "batch_cancelled", "message": "cancelled"},
                    }
                    for c, _ in batch.requests
                ]
                batch.status = "ended" if provider == "anthropic" else "cancelled"
                if provider == "openai":
                    self._write_files(batch)
        self.send_json(200, self._view(batch))

    def _view(self, batch: Batch) -> dict[str, Any]:
        host = f"http://{self.headers.get('Host')}"
        if batch.provider == "anthropic":
            ended = batch.status == "ended"
            return {
                "id": batch.id,
                "type": "message_batch",
                "processing_status": batch.status,
                "request_counts": {"processing": 0 if ended else len(batch.requests),
                                   "succeeded": len(batch.output), "errored": 0,
                                   "canceled": 0, "expired": len(batch.errors)},
                "results_url": f"{host}/v1/messages/batches/{batch.id}/results" if ended else None,
            }  # fmt: skip
        done = batch.status != "in_progress"
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "created_at": batch.created_at,
            "status": batch.status,
            "output_file_id": f"file-{batch.id}-output" if done and batch.output else None,
            "error_file_id": f"file-{batch.id}-errors" if done and batch.errors else None,
            "request_counts": {"total": len(batch.requests), "completed": len(batch.output),
                               "failed": len(batch.errors)},
            "errors": {"object": "list", "data": [
                {"code": "invalid_json_line", "line": 1,
                 "message": "This line is not parseable as valid JSON."}]}
            if batch.status == "failed" else None,
        }  # fmt: skip


def _next_status(
    state: BatchServerState, table: dict[str, list[int]], method: str, path: str
) -> int | None:
    """The next status `table` (`faults`, `lose_answers`) holds for this request, taken."""
    with state.lock:
        for prefix, statuses in table.items():
            if statuses and f"{method} {path}".startswith(prefix):
                return statuses.pop(0)
    return None


@dataclass
class RunningBatchServer:
    """A running server: its base URL (`{url}/v1` is an `openai!` `api_base`; `url` itself an
    `anthropic/` one) and its state."""

    url: str
    state: BatchServerState


@contextmanager
def run_batch_api_server(port: int = 0) -> Iterator[RunningBatchServer]:
    """Serve both batch APIs on 127.0.0.1 (`port` 0: a free one) until the block ends."""
    state = BatchServerState()
    with serve(_Handler, state, port) as bound:
        yield RunningBatchServer(f"http://127.0.0.1:{bound}", state)


if __name__ == "__main__":
    chosen = int(sys.argv[1]) if len(sys.argv) > 1 else 8303
    with run_batch_api_server(chosen) as server:
        print(f"OpenAI's batch API on {server.url}/v1, Anthropic's on {server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
