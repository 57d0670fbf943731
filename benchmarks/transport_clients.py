"""The clients `transport.py` compares, and the worker that measures one of them in its process.

    python benchmarks/transport_clients.py batch CLIENT --url URL --requests N --concurrency C
    python benchmarks/transport_clients.py stream CLIENT --url URL --streams K
    python benchmarks/transport_clients.py rss CLIENT --url URL --chats N
    python benchmarks/transport_clients.py image CLIENT --url URL --requests N --concurrency C

Each command runs in a fresh process (started by `transport.py`) and prints one JSON line:

- `batch`: N chat requests with C in flight, after a warm-up of its own; the process's CPU time
  (`time.process_time`, every thread) and wall time around the N requests only, and the
  process's peak RSS (`ru_maxrss`, imports and warm-up included);
- `stream`: K streamed chats, one after another, from the stub's slow-streaming model; for each,
  the `time.monotonic()` at which the first non-empty delta reached the caller, keyed by the
  prompt, to subtract the stub's send time from;
- `rss`: one `run_batch` of N chats at the generator's defaults; peak RSS;
- `image`: as `batch`, but every chat carries the same 1 MiB image (`image_bytes()`, the same
  bytes every run) and a short text: raw aiohttp posts one body it encoded up front, jib
  `openai!` sends `Message("user", [text, image])` with one `ContentImageUrl` shared by every
  chat, as a user would.

A client the checkout or the venv cannot run exits with status 3 and the reason on stderr, so the
driver reports it as skipped. Only the standard library is imported at the top: the peers venv
(rigging) runs this file too, and each client imports its own library when it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import resource
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

ANSWER = "Hello from the stub."
MODEL = "stub"
SLOW_MODEL = "slow-stream"
UNAVAILABLE = 3
IMAGE_SIZE = 1 << 20
IMAGE_TYPE = "image/png"
IMAGE_PROMPT = "What is in this image?"


class Unavailable(Exception):
    """This client cannot run here; the message says why."""


Batch = Callable[[list[str]], Awaitable[list[str]]]
"""Send one chat per prompt, at most the client's concurrency in flight; return the answers."""


class Client:
    """A client ready to send: its batch function, and what to close when done."""

    def __init__(self, batch: Batch, close: Callable[[], Awaitable[Any]] | None = None) -> None:
        self.batch = batch
        self.close = close

    async def aclose(self) -> None:
        if self.close is not None:
            await self.close()


def messages(prompt: str) -> list[Any]:
    return [{"role": "user", "content": prompt}]


async def gather_limited(
    prompts: list[str], concurrency: int, one: Callable[[str], Awaitable[str]]
) -> list[str]:
    """`one(prompt)` for every prompt, at most `concurrency` at once."""
    semaphore = asyncio.Semaphore(concurrency)

    async def limited(prompt: str) -> str:
        async with semaphore:
            return await one(prompt)

    return await asyncio.gather(*(limited(prompt) for prompt in prompts))


def jib_available(module: str, what: str) -> None:
    """Raise `Unavailable` when this checkout of jib has no `module` (which provides `what`)."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        found = None
    if found is None:
        raise Unavailable(f"jib {what}: not available in this checkout")


# --- batch clients ---------------------------------------------------------------------------


async def raw_aiohttp(base: str, concurrency: int) -> Client:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=max(100, concurrency))
    session = aiohttp.ClientSession(connector=connector)
    url = f"{base}/chat/completions"

    async def one(prompt: str) -> str:
        body = {"model": MODEL, "messages": messages(prompt)}
        async with session.post(url, json=body) as response:
            response.raise_for_status()
            data = await response.json()
        return str(data["choices"][0]["message"]["content"])

    return Client(lambda prompts: gather_limited(prompts, concurrency, one), session.close)


async def httpx_client(base: str, concurrency: int) -> Client:
    import httpx

    client = httpx.AsyncClient(timeout=60)
    url = f"{base}/chat/completions"

    async def one(prompt: str) -> str:
        response = await client.post(url, json={"model": MODEL, "messages": messages(prompt)})
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"])

    return Client(lambda prompts: gather_limited(prompts, concurrency, one), client.aclose)


async def openai_sdk(base: str, concurrency: int) -> Client:
    import openai

    client = openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0)

    async def one(prompt: str) -> str:
        answer = await client.chat.completions.create(model=MODEL, messages=messages(prompt))
        return str(answer.choices[0].message.content)

    return Client(lambda prompts: gather_limited(prompts, concurrency, one), client.close)


async def litellm_direct(base: str, concurrency: int) -> Client:
    import litellm

    async def one(prompt: str) -> str:
        answer = await litellm.acompletion(
            model=f"openai/{MODEL}",
            api_base=base,
            api_key="x",
            max_retries=0,
            messages=messages(prompt),
        )
        return str(answer.choices[0].message.content)

    return Client(lambda prompts: gather_limited(prompts, concurrency, one))


def jib_client(generator: Any) -> Client:
    """jib's way to send many chats: one `run_batch`, the generator's limiter keeping C."""

    async def batch(prompts: list[str]) -> list[str]:
        chats = await generator.chat().run_batch(prompts)
        return [chat.content for chat in chats]

    return Client(batch)


async def jib_openai(base: str, concurrency: int) -> Client:
    jib_available("jib.generator.openai", "openai!")
    import jib

    return jib_client(
        jib.get_generator(f"openai!{MODEL},api_base={base},api_key=x,max_connections={concurrency}")
    )


async def jib_litellm(base: str, concurrency: int) -> Client:
    import jib

    return jib_client(
        jib.get_generator(f"openai/{MODEL},api_base={base},api_key=x,max_connections={concurrency}")
    )


def jib_http_generator(base: str, **settings: Any) -> Any:
    from jib.generator.http import HTTPGenerator

    return HTTPGenerator.for_json_endpoint(
        url=f"{base}/chat/completions",
        model=MODEL,
        request_body={"model": "$model", "messages": "$messages"},
        response={"content_path": "$.choices[0].message.content"},
        **settings,
    )


async def jib_http(base: str, concurrency: int) -> Client:
    return jib_client(jib_http_generator(base, max_connections=concurrency))


def rigging_client(generator: Any) -> Client:
    async def batch(prompts: list[str]) -> list[str]:
        chats = await generator.chat().run_batch(prompts)
        return [chat.last.content for chat in chats]

    return Client(batch)


async def rigging_litellm(base: str, concurrency: int) -> Client:
    try:
        import rigging
    except ImportError as exc:
        raise Unavailable(f"rigging is not installed in {sys.prefix}") from exc
    identifier = f"openai/{MODEL},api_base={base},api_key=x,max_connections={concurrency}"
    return rigging_client(rigging.get_generator(identifier))


async def rigging_http(base: str, concurrency: int) -> Client:
    try:
        from rigging import GenerateParams
        from rigging.generator.http import HTTPGenerator
    except ImportError as exc:
        raise Unavailable(f"rigging's HTTP generator is not installed in {sys.prefix}") from exc
    generator = HTTPGenerator.for_json_endpoint(
        f"{base}/chat/completions",
        request={"model": "{{ model }}", "messages": "$messages"},
        model=MODEL,
        response={"content_path": "$.choices[0].message.content"},
        state={},
        params=GenerateParams(),
    )

    # rigging's HTTP generator sends a whole batch at once (no limit of its own), so C chats
    # are kept in flight here, one `chat(prompt).run()` each.
    async def one(prompt: str) -> str:
        chat = await generator.chat(prompt).run()
        return str(chat.last.content)

    return Client(lambda prompts: gather_limited(prompts, concurrency, one))


CLIENTS: dict[str, Callable[[str, int], Awaitable[Client]]] = {
    "raw_aiohttp": raw_aiohttp,
    "httpx": httpx_client,
    "openai_sdk": openai_sdk,
    "litellm": litellm_direct,
    "jib_openai": jib_openai,
    "jib_litellm": jib_litellm,
    "jib_http": jib_http,
    "rigging_litellm": rigging_litellm,
    "rigging_http": rigging_http,
}


async def measure_batch(
    name: str,
    base: str,
    requests: int,
    concurrency: int,
    make: Callable[[str, int], Awaitable[Client]] | None = None,
    prompt: str | None = None,
) -> dict[str, Any]:
    """`requests` chats with `concurrency` in flight, after a warm-up of its own; CPU and wall
    time of the timed chats only. `make` builds the client (by default the text client
    `name`); `prompt`, when given, is every chat's text, warm-up included (else each chat has
    its own)."""
    client = await (make or CLIENTS[name])(base, concurrency)
    try:
        warm = [prompt or f"warm-up {i}" for i in range(min(requests, max(2 * concurrency, 50)))]
        await client.batch(warm)
        prompts = [prompt or f"prompt number {i}" for i in range(requests)]
        wall, cpu = time.perf_counter(), time.process_time()
        answers = await client.batch(prompts)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await client.aclose()
    wrong = sum(answer != ANSWER for answer in answers)
    if len(answers) != requests or wrong:
        raise RuntimeError(f"{name}: {wrong} of {requests} answers were not {ANSWER!r}")
    return {"requests": requests, "concurrency": concurrency, "cpu_s": cpu, "wall_s": wall}


# --- chats carrying an image -----------------------------------------------------------------


def image_bytes() -> bytes:
    """The benchmark's image: 1 MiB, a PNG signature then seeded noise, the same every run."""
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + random.Random(18).randbytes(IMAGE_SIZE - len(signature))


def image_body() -> dict[str, Any]:
    """The request body every image chat sends, in OpenAI's shape."""
    url = f"data:{IMAGE_TYPE};base64,{base64.b64encode(image_bytes()).decode('ascii')}"
    parts = [
        {"type": "text", "text": IMAGE_PROMPT},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    return {"model": MODEL, "messages": [{"role": "user", "content": parts}]}


async def image_raw_aiohttp(base: str, concurrency: int) -> Client:
    """The floor: one body encoded up front, posted as bytes with a JSON content type."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=max(100, concurrency))
    session = aiohttp.ClientSession(connector=connector)
    url = f"{base}/chat/completions"
    body = json.dumps(image_body()).encode()
    headers = {"Content-Type": "application/json"}

    async def one(prompt: str) -> str:
        async with session.post(url, data=body, headers=headers) as response:
            response.raise_for_status()
            data = await response.json()
        return str(data["choices"][0]["message"]["content"])

    return Client(lambda prompts: gather_limited(prompts, concurrency, one), session.close)


async def image_jib_openai(base: str, concurrency: int) -> Client:
    """`openai!`, one `run_batch` of `Message("user", [text, image])`, the image part shared."""
    jib_available("jib.generator.openai", "openai!")
    import jib

    if not hasattr(jib, "ContentImageUrl"):
        raise Unavailable("jib content parts (ContentImageUrl): not available in this checkout")
    image = jib.ContentImageUrl.from_bytes(image_bytes(), IMAGE_TYPE)
    generator: Any = jib.get_generator(
        f"openai!{MODEL},api_base={base},api_key=x,max_connections={concurrency}"
    )

    async def batch(prompts: list[str]) -> list[str]:
        chats = await generator.chat().run_batch(
            [jib.Message("user", [prompt, image]) for prompt in prompts]
        )
        return [chat.content for chat in chats]

    return Client(batch)


IMAGE_CLIENTS: dict[str, Callable[[str, int], Awaitable[Client]]] = {
    "raw_aiohttp": image_raw_aiohttp,
    "jib_openai": image_jib_openai,
}


async def measure_image(name: str, base: str, requests: int, concurrency: int) -> dict[str, Any]:
    """`requests` image chats with `concurrency` in flight, after a warm-up of its own."""
    if name not in IMAGE_CLIENTS:
        raise ValueError(f"no image client {name!r}; choose from {', '.join(IMAGE_CLIENTS)}")
    # One text for every chat: jib's bodies are then byte for byte the raw client's.
    result = await measure_batch(
        name, base, requests, concurrency, IMAGE_CLIENTS[name], IMAGE_PROMPT
    )
    return {**result, "image_bytes": IMAGE_SIZE}


# --- streaming clients: yield the text deltas of one streamed chat --------------------------------


Stream = Callable[[str], AsyncIterator[str]]


async def stream_raw_aiohttp(base: str) -> tuple[Stream, Callable[[], Awaitable[Any]] | None]:
    import aiohttp

    session = aiohttp.ClientSession()

    async def deltas(prompt: str) -> AsyncIterator[str]:
        body = {"model": SLOW_MODEL, "messages": messages(prompt), "stream": True}
        async with session.post(f"{base}/chat/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.content:
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                for choice in json.loads(line[6:])["choices"]:
                    yield choice["delta"].get("content") or ""

    return deltas, session.close


async def stream_litellm(base: str) -> tuple[Stream, Callable[[], Awaitable[Any]] | None]:
    import litellm

    async def deltas(prompt: str) -> AsyncIterator[str]:
        response = await litellm.acompletion(
            model=f"openai/{SLOW_MODEL}",
            api_base=base,
            api_key="x",
            max_retries=0,
            messages=messages(prompt),
            stream=True,
        )
        async for chunk in response:
            for choice in chunk.choices:
                yield choice.delta.content or ""

    return deltas, None


def jib_stream(identifier: str) -> Stream:
    import jib
    from jib.pipeline import ChatPipeline

    if not hasattr(ChatPipeline, "stream"):
        raise Unavailable("jib pipeline.stream(): not available in this checkout")
    generator: Any = jib.get_generator(identifier)

    async def deltas(prompt: str) -> AsyncIterator[str]:
        stream = generator.chat(prompt).stream()
        async for delta in stream:
            yield delta
        if stream.chat.content != ANSWER:
            raise RuntimeError(f"the streamed chat holds {stream.chat.content!r}")

    return deltas


async def stream_jib_openai(base: str) -> tuple[Stream, Callable[[], Awaitable[Any]] | None]:
    jib_available("jib.generator.openai", "openai!")
    return jib_stream(f"openai!{SLOW_MODEL},api_base={base},api_key=x"), None


async def stream_jib_litellm(base: str) -> tuple[Stream, Callable[[], Awaitable[Any]] | None]:
    return jib_stream(f"openai/{SLOW_MODEL},api_base={base},api_key=x"), None


STREAMS: dict[str, Callable[[str], Awaitable[tuple[Stream, Any]]]] = {
    "raw_aiohttp": stream_raw_aiohttp,
    "litellm": stream_litellm,
    "jib_openai": stream_jib_openai,
    "jib_litellm": stream_jib_litellm,
}


async def measure_stream(name: str, base: str, streams: int) -> dict[str, Any]:
    """When the first non-empty delta of each of `streams` streamed chats reached the caller."""
    deltas, close = await STREAMS[name](base)
    run = uuid.uuid4().hex[:8]
    received: dict[str, float] = {}
    try:
        for index in range(-2, streams):  # two warm-up streams first (lazy imports, a connection)
            prompt = f"{name} {run} {index}"
            text: list[str] = []
            async for delta in deltas(prompt):
                if delta and not text:
                    received[prompt] = time.monotonic()
                text.append(delta)
            if "".join(text) != ANSWER:
                raise RuntimeError(f"{name}: streamed {''.join(text)!r}, not {ANSWER!r}")
    finally:
        if close is not None:
            await close()
    return {
        "received": {key: at for key, at in received.items() if not key.endswith((" -2", " -1"))}
    }


# --- the peak RSS of one large run_batch -------------------------------------------------------


async def measure_rss(name: str, base: str, chats: int) -> dict[str, Any]:
    """One `run_batch` of `chats` chats at the generator's defaults."""
    import jib

    if name == "jib_openai":
        jib_available("jib.generator.openai", "openai!")
        generator = jib.get_generator(f"openai!{MODEL},api_base={base},api_key=x")
    elif name == "jib_litellm":
        generator = jib.get_generator(f"openai/{MODEL},api_base={base},api_key=x")
    elif name == "jib_http":
        generator = jib_http_generator(base)
    else:
        raise ValueError(f"no run_batch client {name!r}")
    wall = time.perf_counter()
    records = await generator.chat().run_batch([f"chat number {i}" for i in range(chats)])
    wall = time.perf_counter() - wall
    if len(records) != chats or any(record.content != ANSWER for record in records):
        raise RuntimeError(f"{name}: not every one of {chats} chats came back {ANSWER!r}")
    return {"chats": chats, "wall_s": wall}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("task", choices=["batch", "stream", "rss", "image"])
    parser.add_argument("client")
    parser.add_argument("--url", required=True, help="the stub's base URL, ending in /v1")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--streams", type=int, default=30)
    parser.add_argument("--chats", type=int, default=5000)
    args = parser.parse_args(argv)
    try:
        if args.task == "batch":
            work = measure_batch(args.client, args.url, args.requests, args.concurrency)
        elif args.task == "image":
            work = measure_image(args.client, args.url, args.requests, args.concurrency)
        elif args.task == "stream":
            work = measure_stream(args.client, args.url, args.streams)
        else:
            work = measure_rss(args.client, args.url, args.chats)
        result = asyncio.run(work)
    except Unavailable as exc:
        print(exc, file=sys.stderr)
        sys.exit(UNAVAILABLE)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The last stdout line is the result; anything a library prints comes before it.
    print(json.dumps(result))


if __name__ == "__main__":
    main()
