"""Reading request bodies with bounded memory and time.

A body is read chunk by chunk as the server decodes it (gzip, br, zstd are
decompressed incrementally by aiohttp), so a compression bomb stops at the
limit instead of expanding first. Bodies past a small size take one of a few
"large body" slots for as long as they are held, which bounds what all
requests together can pin in memory; small bodies never wait for a slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

from aiohttp import ClientPayloadError, StreamReader, web

from agent_operator.gateway.wire import closing, json_error

_SMALL = 256 * 1024  # bodies up to this size are read without a slot


class BodyTooLarge(Exception):
    """The body (decoded) is larger than the limit: answer 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


class BodyTimeout(Exception):
    """The client sent its body too slowly: answer 408."""


class BodyIncomplete(Exception):
    """The client went away before its body ended: recorded as 499 (nginx's
    "client closed request"), not as a 500 of ours."""


BodyError = BodyTooLarge | BodyTimeout | BodyIncomplete
BODY_ERRORS = (BodyTooLarge, BodyTimeout, BodyIncomplete)  # for `except`
# status and error type answered for each body error
_ANSWERS: dict[type[Exception], tuple[int, str]] = {
    BodyTooLarge: (413, "request_too_large"),
    BodyTimeout: (408, "request_timeout"),
    BodyIncomplete: (499, "client_closed_request"),
}


def body_refusal(
    exc: BodyError, *, anthropic: bool = False, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The JSON answer to a body error; the connection closes after it (the rest of
    the body was never read)."""
    status, kind = _ANSWERS[type(exc)]
    return closing(json_error(status, str(exc), kind, anthropic=anthropic, headers=headers))


class BodyReader:
    """Reads whole bodies up to `limit` bytes, within `timeout` seconds each."""

    def __init__(self, limit: int, timeout: float, large_slots: int = 4) -> None:
        self.limit = limit
        self.timeout = timeout
        self._slots = asyncio.Semaphore(large_slots)

    def read(self, request: web.BaseRequest) -> _Reading:
        """`async with reader.read(request) as body`: the whole body, held (and its
        slot kept) until the block ends.

        Raises BodyTooLarge before reading a body whose declared length is
        over the limit, or as soon as the decoded bytes pass it; BodyTimeout
        when the whole body takes longer than the timeout.
        """
        return _Reading(self, request)

    async def _read(self, request: web.BaseRequest, lease: _Lease) -> bytes:
        declared = request.content_length
        if declared is not None and declared > self.limit:
            raise BodyTooLarge(self.limit)
        if declared is not None and declared > _SMALL:
            await lease.take()
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in _chunks(request.content):
                size += len(chunk)
                if size > self.limit:
                    raise BodyTooLarge(self.limit)
                if size > _SMALL:
                    await lease.take()
                chunks.append(chunk)
        except (ConnectionError, ClientPayloadError) as exc:
            raise BodyIncomplete("the client closed the connection before its body ended") from exc
        return b"".join(chunks)


class _Reading:
    """The async context of one `BodyReader.read` (a class: cheaper than a generator)."""

    __slots__ = ("_lease", "_reader", "_request")

    def __init__(self, reader: BodyReader, request: web.BaseRequest) -> None:
        self._reader = reader
        self._request = request
        self._lease = _Lease(reader._slots)

    async def __aenter__(self) -> bytes:
        request, reader = self._request, self._reader
        stream = request.content
        declared = request.content_length
        if not request.body_exists:
            return b""
        small = declared is not None and declared <= min(_SMALL, reader.limit)
        if small and stream.is_eof() and "Content-Encoding" not in request.headers:
            # the common case: a small body already arrived whole, nothing to wait for
            return stream.read_nowait(-1)
        try:
            async with asyncio.timeout(reader.timeout):
                if small and "Content-Encoding" not in request.headers:
                    # its size is known and bounded: aiohttp's own read is the cheapest
                    return await request.read()
                return await reader._read(request, self._lease)
        except TimeoutError as exc:
            self._lease.release()
            raise BodyTimeout(f"request body not received within {reader.timeout:g} s") from exc
        except BaseException:
            self._lease.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._lease.release()


class _Lease:
    """One large-body slot, taken at most once, released once."""

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self._slots = slots
        self._held = False

    async def take(self) -> None:
        if not self._held:
            await self._slots.acquire()
            self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()


async def _chunks(stream: StreamReader) -> AsyncIterator[bytes]:
    while True:
        chunk = await stream.readany()
        if not chunk:
            return
        yield chunk


async def streamed_chunks(stream: StreamReader, timeout: float, limit: int) -> AsyncIterator[bytes]:
    """A body passed on as it arrives: each chunk within `timeout` seconds, at most
    `limit` bytes decoded in all (a compression bomb must not reach the agent)."""
    size = 0
    while True:
        try:
            async with asyncio.timeout(timeout):
                chunk = await stream.readany()
        except TimeoutError as exc:
            raise BodyTimeout(f"request body stalled for {timeout:g} s") from exc
        except (ConnectionError, ClientPayloadError) as exc:
            raise BodyIncomplete("the client closed the connection before its body ended") from exc
        if not chunk:
            return
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        yield chunk


def body_fault(exc: BaseException) -> BodyError | None:
    """The body error behind a client error (aiohttp wraps what a streamed body raised)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, BODY_ERRORS):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
