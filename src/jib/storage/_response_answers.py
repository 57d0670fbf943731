"""How a pipeline's requests go through jib's response cache: look up, send what is missing,
keep what succeeded.

`CachedSender` stands in for a generator while a pipeline sends one batch (`generate_messages`,
`generate_texts`, `stream_messages`); everything else is the generator's own. For each item it
works out the key (`Generator.response_cache_request`, hashed without secrets), looks every key
of the batch up in one query, and sends only the items that missed, in one batch call to the
real generator. Within a process, two items asking for the same missing key and sample at once
(in one batch, or in batches running concurrently on one event loop) make one request: the
first sends, the others wait for its answer (and send their own if it failed).

An answer is kept only when it succeeded: an item that failed (an error status, `http!`'s
error bodies included, a timeout, a stream cut before its end) is never kept. A hit comes back
as the answer kept, with `extra["response_cache"]` saying so and naming the chat it was first
made for, no attempts, and the lookup's time as its latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from jib.errors import JibError
from jib.generator._response_key import KeyPrefix, SentRequest, sending_bodies
from jib.messages import GeneratedMessage, GeneratedText, Message, Usage
from jib.storage._errors import StoreError
from jib.storage._response_cache_tables import CachedAnswer, NewEntry

if TYPE_CHECKING:
    from jib.generator.base import Generator
    from jib.params import GenerateParams
    from jib.storage._response_cache import ResponseCache

__all__ = ["NOTE", "CachedSender", "Flights"]

NOTE = "response_cache"
"""The key of `extra` that says an answer came from the response cache."""

Item = Any  # a conversation (Sequence[Message]) or a text


Pair = tuple[str, int]  # a key and a sample index


class Flights:
    """The requests one batch is sending for missing keys and samples (by pair), within one
    event loop: what the batches that ask for the same pair meanwhile wait for (`wait`). A
    future is made only for a pair one does wait for."""

    __slots__ = ("answers", "done", "futures")

    def __init__(self) -> None:
        self.answers: dict[Pair, CachedAnswer | bytes | None] = {}
        """Each pair's outcome, once it has one: the answer found, or the one kept (its JSON,
        as written), or `None` when its request failed."""
        self.futures: dict[Pair, asyncio.Future[None]] | None = None
        self.done = False
        """The batch is over: a pair without an outcome failed."""

    def land(self, pair: Pair, answer: CachedAnswer | bytes | None) -> None:
        """`pair`'s outcome (once; later calls change nothing)."""
        if pair in self.answers:
            return
        self.answers[pair] = answer
        if self.futures is not None:
            future = self.futures.pop(pair, None)
            if future is not None and not future.done():
                future.set_result(None)

    def land_rest(self, pairs: Sequence[Pair]) -> None:
        """Each of `pairs` without an outcome yet failed."""
        answers = self.answers
        for pair in pairs:
            if pair not in answers:
                self.land(pair, None)

    def finish(self, pairs: Sequence[Pair]) -> None:
        """The batch asking for `pairs` is over: those without an outcome failed (for the
        waiters there are, and those still to come)."""
        self.done = True
        if self.futures:
            self.land_rest(pairs)

    async def wait(self, pair: Pair) -> CachedAnswer | None:
        """`pair`'s answer once its request has one; `None` when it failed."""
        if pair not in self.answers:
            if self.done:
                return None
            if self.futures is None:
                self.futures = {}
            future = self.futures.get(pair)
            if future is None:
                future = self.futures[pair] = asyncio.get_running_loop().create_future()
            await asyncio.shield(future)  # a waiter cancelled leaves it to the others
        answer = self.answers[pair]
        if type(answer) is bytes:  # read only when a waiter needs it (rare)
            return CachedAnswer(orjson.loads(answer), None, time.time())
        return answer  # type: ignore[return-value]


class CachedSender:
    """A generator's batch methods through a `ResponseCache` (see the module docstring).

    Args:
        cache: the response cache.
        generator: the generator answers come from.
        samples: the sample index of each item, by the identity of its params object (items
            whose params are not listed are sample 0).
    """

    def __init__(
        self, cache: ResponseCache, generator: Generator, samples: dict[int, int] | None = None
    ) -> None:
        self.cache = cache
        self.generator = generator
        self.samples = samples or {}
        self._label: str | None = None
        self._secrets: list[str | None] | None = None
        self._prefixes: dict[str, KeyPrefix] = {}
        self._kept_at: list[tuple[int, NewEntry, Any]] = []
        """Each answer this batch kept: the index of its item in the call that sent it, the
        entry, and its message (how `settle` finds its record: a chat of several rounds sends
        later rounds with fewer items, so the index is its record's only in a first round)."""
        self._late: list[dict[str, Any]] = []
        """The notes of hits on answers not written yet, whose chat `settle` may name."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.generator, name)

    # -- the generator's batch methods ---------------------------------------------------------

    async def generate_messages(
        self, messages: Sequence[Sequence[Message]], params: Sequence[GenerateParams]
    ) -> list[GeneratedMessage | BaseException]:
        """`Generator.generate_messages`, answered from the cache where it can be."""
        with sending_bodies():  # a body written for its key is sent as it is
            return await self._answer("chat", list(messages), list(params))

    async def generate_texts(
        self, texts: Sequence[str], params: Sequence[GenerateParams]
    ) -> list[GeneratedText | BaseException]:
        """`Generator.generate_texts`, answered from the cache where it can be."""
        with sending_bodies():
            return await self._answer("text", list(texts), list(params))

    async def stream_messages(
        self, messages: Sequence[Message], params: GenerateParams
    ) -> AsyncIterator[str | GeneratedMessage]:
        """`Generator.stream_messages`: a hit is one delta (the whole text) and the answer; a
        miss streams from the generator and is kept once its stream has ended whole."""
        key = None if self.cache.failure is not None else self._key(messages, params)
        sample = self.samples.get(id(params), 0)
        if key is not None:
            started = time.perf_counter()
            found = (await self._lookup([(key, sample)])).get((key, sample))
            hit = None
            if found is not None:
                hit = self._readable_hit("chat", (key, sample), found, started)
            if hit is not None:
                self.cache.count(self._generator_label(), hits=1, saved=self._price(hit.usage))
                assert isinstance(hit, GeneratedMessage)
                if hit.message.content:
                    yield hit.message.content
                yield hit
                return
        try:
            async for piece in self.generator.stream_messages(messages, params):
                if not isinstance(piece, str) and key is not None:
                    entries: list[NewEntry] = []
                    self._kept(0, "chat", (key, sample), piece, self._generator_label(), entries)
                    self.cache.keep_all(entries)
                yield piece
        finally:  # sent: a miss, whole or not (as a batch counts its failed requests)
            if key is not None:
                self.cache.count(self._generator_label(), misses=1)

    # -- after the records are made ------------------------------------------------------------

    def settle(self, records: Sequence[Any]) -> None:
        """Give each answer kept by this batch its record's id (the chat it was made for:
        `records` are the batch's, in the order of its items); a hit on an answer of this same
        batch (or another not written yet) is told that chat's id."""
        by_message: dict[int, Any] | None = None
        count = len(records)
        for index, entry, message in self._kept_at:
            if entry.origin_chat is not None:
                continue
            record = records[index] if index < count else None
            generated: Any = getattr(record, "generated", None) if message is not None else None
            if message is not None and not (generated and generated[-1] is message):
                if by_message is None:  # a later round's answer: found by its message
                    by_message = {
                        id(made): each
                        for each in records
                        for made in getattr(each, "generated", None) or ()
                    }
                record = by_message.get(id(message))
                if record is None and index < count:
                    record = records[index]
            entry.origin_chat = getattr(record, "id", None)
        pending = self.cache.pending
        for note in self._late:
            waiting = pending(note["key"], note["sample"])
            if waiting is not None:
                note["chat_id"] = waiting.origin_chat

    async def finish(self) -> None:
        """Write the kept answers when enough are waiting (see `ResponseCache.due`). A write
        that fails does not fail the batch's chats (they are made, and paid for): the cache
        has `failed` (`ResponseCache.failure`)."""
        cache = self.cache
        if cache.failure is None and cache.due():
            try:
                await cache.aflush()
            except StoreError as exc:
                cache.failed(exc)

    # -- the work ------------------------------------------------------------------------------

    async def _answer(
        self, kind: str, items: list[Item], params: list[GenerateParams]
    ) -> list[Any]:
        started = time.perf_counter()
        count = len(items)
        results: list[Any] = [None] * count
        keys: list[Pair | None] = [None] * count
        if self.cache.failure is not None:  # it failed earlier: sent as they are
            await self._send(kind, items, params, keys, list(range(count)), results, None)
            return results
        samples = self.samples
        flights = self.cache.flights(asyncio.get_running_loop())
        mine = Flights()  # the pairs this batch asks for (in `flights` while it does)
        leaders: list[int] = []  # the item asking for each of them
        pairs: list[Pair] = []  # and its pair
        waiting: list[tuple[int, Pair, Flights]] = []  # another item asks for theirs
        send: list[int] = []
        for index, key in enumerate(self._keys(items, params)):
            if key is None:
                send.append(index)
                continue
            pair = (key, samples.get(id(params[index]), 0) if samples else 0)
            keys[index] = pair
            other = flights.get(pair)  # this batch's own pairs are in `flights` too
            if other is not None:
                waiting.append((index, pair, other))
                continue
            flights[pair] = mine
            leaders.append(index)
            pairs.append(pair)
        hits = misses = 0
        saved = 0.0
        try:
            found = await self._lookup(pairs) if pairs else {}
            if not found:  # every one missed (a cache being filled)
                send += leaders
            for index, pair in zip(leaders, pairs, strict=True) if found else ():
                answer = found.get(pair)
                worth = self._take_hit(kind, pair, answer, started, results, index)
                if worth is None:  # a miss, or a kept answer that cannot be read
                    send.append(index)
                    continue
                saved += worth
                hits += 1
                mine.land(pair, answer)
            send.sort()
            misses += await self._send(kind, items, params, keys, send, results, mine)
            if waiting:
                # What has no answer yet failed: its waiters send their own (no waiting on each
                # other across batches).
                mine.land_rest(pairs)
                answers = await asyncio.gather(*(other.wait(pair) for _, pair, other in waiting))
                again: list[int] = []  # the request they waited for failed: they send their own
                for (index, pair, _), answer in zip(waiting, answers, strict=True):
                    worth = self._take_hit(kind, pair, answer, started, results, index)
                    if worth is None:
                        again.append(index)
                        continue
                    saved += worth
                    hits += 1
                misses += await self._send(kind, items, params, keys, again, results, None)
        finally:
            mine.finish(pairs)
            for pair in pairs:
                if flights.get(pair) is mine:
                    del flights[pair]
            self.cache.count(self._generator_label(), hits=hits, misses=misses, saved=saved)
        return results

    async def _lookup(self, pairs: list[Pair]) -> dict[Pair, CachedAnswer]:
        """The cache's answers to `pairs`; none when it cannot be read (it has then `failed`:
        the requests are sent, not failed, for the cache only spares paying for them)."""
        try:
            return await self.cache.alookup(pairs)
        except StoreError as exc:
            self.cache.failed(exc)
            return {}

    async def _send(
        self,
        kind: str,
        items: list[Item],
        params: list[GenerateParams],
        keys: list[Pair | None],
        send: list[int],
        results: list[Any],
        flights: Flights | None,
    ) -> int:
        """Send the items at `send` in one batch call; keep and hand out what succeeded."""
        if not send:
            return 0
        if len(send) == len(items):
            batch, batch_params = items, params
        else:
            batch = [items[i] for i in send]
            batch_params = [params[i] for i in send]
        if kind == "chat":
            answers: Sequence[Any] = await self.generator.generate_messages(batch, batch_params)
        else:
            answers = await self.generator.generate_texts(batch, batch_params)
        if len(answers) != len(send):
            raise RuntimeError(
                f"{type(self.generator).__name__} returned {len(answers)} results for a batch "
                f"of {len(send)}; a generator must return one result per item"
            )
        counted = 0
        entries: list[NewEntry] = []
        label = self._generator_label()
        kept = self._kept
        for index, answer in zip(send, answers, strict=True):
            results[index] = answer
            pair = keys[index]
            if pair is None:
                continue
            counted += 1
            if isinstance(answer, BaseException):
                continue
            data = kept(index, kind, pair, answer, label, entries)
            if data is not None and flights is not None:
                flights.land(pair, data)
        if entries:
            self.cache.keep_all(entries)
        return counted

    def _keys(self, items: list[Item], params: list[GenerateParams]) -> list[str | None]:
        """Each item's key (`_key`), the batch's requests worked out in one call when they
        can be."""
        try:
            materials = self.generator.response_cache_requests(items, params)
        except (JibError, ValueError, TypeError):  # one of them cannot: each by itself
            pairs = zip(items, params, strict=True)
            return [self._key(item, item_params) for item, item_params in pairs]
        if len(materials) != len(items):
            raise RuntimeError(
                f"{type(self.generator).__name__}.response_cache_requests returned "
                f"{len(materials)} requests for a batch of {len(items)}"
            )
        if materials and type(materials[0]) is SentRequest:
            # The common batch: bodies already written, to one URL (so of one kind: a provider
            # sends chats and texts to endpoints of their own), hashed in a row.
            url = materials[0].url
            text = isinstance(items[0], str)
            bodies: list[bytes] = []
            for material in materials:
                if type(material) is not SentRequest or material.url != url:
                    break
                bodies.append(material.body)
            else:
                keys: list[str | None] = []
                keys += self._prefix("text" if text else "chat").sent_keys(url, bodies)
                return keys
        keys = []
        chat: KeyPrefix | None = None
        for item, material in zip(items, materials, strict=True):
            if material is None:
                keys.append(None)
            elif isinstance(item, str):
                keys.append(self._key_of(item, material))
            else:
                if chat is None:
                    chat = self._prefix("chat")
                keys.append(chat.key(material))
        return keys

    def _key(self, item: Item, params: GenerateParams) -> str | None:
        """The item's key, or `None` when it cannot be worked out (the item is then sent as
        it is, and its own request says what is wrong)."""
        try:
            material = self.generator.response_cache_request(item, params)
        except (JibError, ValueError, TypeError):
            return None
        return None if material is None else self._key_of(item, material)

    def _key_of(self, item: Item, material: Any) -> str:
        return self._prefix("text" if isinstance(item, str) else "chat").key(material)

    def _prefix(self, kind: str) -> KeyPrefix:
        prefix = self._prefixes.get(kind)
        if prefix is None:
            prefix = self._prefixes[kind] = self.cache.key_prefix(
                self.generator, kind, self._secret_values()
            )
        return prefix

    def _kept(
        self,
        index: int,
        kind: str,
        pair: tuple[str, int],
        answer: Any,
        label: str,
        entries: list[NewEntry],
    ) -> bytes | None:
        """Add `answer` (of the item at `index`) to `entries`, to be kept, with its chat's id
        to come (`settle`); its JSON, for the items waiting for the same key and sample. An
        answer whose extra cannot be written as JSON is handed on uncached (`None`): keeping it
        never fails it.

        What is kept is `_answer_json`. An answer a content filter stopped is not kept: it was
        cut short, not answered.
        """
        if answer.stop_reason == "content_filter":
            return None
        data = _answer_json(answer)
        try:
            encoded = orjson.dumps(data, default=repr)
        except TypeError:  # orjson's JSONEncodeError too
            try:  # keys that are not strings (orjson writes every dict slower when allowed)
                encoded = orjson.dumps(data, default=repr, option=orjson.OPT_NON_STR_KEYS)
            except TypeError:
                return None
        entry = NewEntry(pair[0], pair[1], label, kind, encoded)
        entries.append(entry)
        self._kept_at.append((index, entry, getattr(answer, "message", None)))
        return encoded

    def _take_hit(
        self,
        kind: str,
        pair: tuple[str, int],
        found: CachedAnswer | None,
        started: float,
        results: list[Any],
        index: int,
    ) -> float | None:
        """Put the hit on `found` at `index` of `results`; what it saved. `None` for a miss:
        nothing found, or a kept answer that cannot be read back (a damaged row, then replaced
        by the answer sent)."""
        if found is None:
            return None
        hit = self._readable_hit(kind, pair, found, started)
        if hit is None:
            return None
        results[index] = hit
        return self._price(hit.usage)

    def _readable_hit(
        self, kind: str, pair: tuple[str, int], found: CachedAnswer, started: float
    ) -> GeneratedMessage | GeneratedText | None:
        """`_hit`, or `None` (the cache told, see `ResponseCache.broken`) when the answer kept
        is not one this kind of request can be answered with."""
        try:
            return self._hit(kind, pair, found, started)
        except (KeyError, TypeError, ValueError, AttributeError):
            self.cache.broken(pair, found.created_at)
            return None

    def _hit(
        self, kind: str, pair: tuple[str, int], found: CachedAnswer, started: float
    ) -> GeneratedMessage | GeneratedText:
        data = found.answer
        usage = Usage(**data["usage"]) if data.get("usage") else None
        note = {
            "hit": True,
            "chat_id": found.origin_chat,
            "stored_at": found.created_at,
            "key": pair[0],
            "sample": pair[1],
        }
        if found.origin_chat is None:
            self._late.append(note)
        extra = {**data.get("extra", {}), NOTE: note}
        latency = (time.perf_counter() - started) * 1000
        if kind == "chat":
            message = Message.from_any(data["message"], default_role="assistant")
            return GeneratedMessage(
                message,
                data.get("stop_reason", "unknown"),
                usage,
                extra,
                attempts=0,
                latency_ms=latency,
                refusal=data.get("refusal"),
            )
        return GeneratedText(
            data["text"], data.get("stop_reason", "unknown"), usage, extra, 0, latency
        )

    def _price(self, usage: Usage | None) -> float:
        if usage is None:
            return 0.0
        try:
            price = self.cache.price(self.generator, usage)
        except Exception:  # a price table that cannot price it: nothing saved that is known
            return 0.0
        return price or 0.0

    def _generator_label(self) -> str:
        if self._label is None:
            self._label = self.cache.label_of(self.generator)
        return self._label

    def _secret_values(self) -> list[str | None]:
        if self._secrets is None:
            secrets: list[str | None] = []
            with contextlib.suppress(JibError):
                wire_secrets = getattr(self.generator, "wire_secrets", None)
                secrets = list(wire_secrets()) if wire_secrets else [self.generator.get_api_key()]
            self._secrets = secrets
        return self._secrets


def _answer_json(answer: GeneratedMessage | GeneratedText) -> dict[str, Any]:
    """What is kept of an answer: its content, why it stopped, its usage and extra."""
    if isinstance(answer, GeneratedMessage):
        data: dict[str, Any] = {
            "stop_reason": answer.stop_reason,
            "message": answer.message.to_dict(),
        }
        if answer.refusal:
            data["refusal"] = answer.refusal
    else:
        data = {"stop_reason": answer.stop_reason, "text": answer.text}
    if answer.usage is not None:
        data["usage"] = answer.usage.to_dict()
    extra = answer.extra
    if extra:  # written at once, so the record's own (a copy only to leave a note out)
        if NOTE in extra:
            extra = {k: v for k, v in extra.items() if k != NOTE}
        data["extra"] = extra
    return data
