"""wsrpc's RPC layer, independent of any transport.

Each WebSocket message carries one `message.Message`: a `Request` (bare
method name, UUIDv4 call id, serialized request) or a `Response` (same call
id, serialized response or an error text). Both sides call and serve on one
connection. What the record says, and this follows:

- a request whose call id is not a UUIDv4 is dropped;
- an unknown method, or a payload that does not decode, gets no reply at
  all, so every outgoing call has its own timeout;
- errors travel as text only: a handler's exception becomes the response's
  `error`, and the caller gets that text back (`WsrpcCallError`).

`Endpoint` takes the bytes of each received message (`feed`) and a coroutine
that sends bytes; the WebSocket connection and tests plug into those.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import betterproto2

from jdkit._proto.message import Message, Request, Response
from jdkit._wsrpc._errors import NodeNotConnectedError, WsrpcCallError, WsrpcTimeoutError
from jdkit._wsrpc._strict import decode, decoder

log = logging.getLogger("jdkit.wsrpc")

M = TypeVar("M", bound=betterproto2.Message)

#: Default per-call timeout when the caller gives none.
DEFAULT_CALL_TIMEOUT = 10.0
#: Error texts are cut to this many characters (they end up in logs and UIs).
MAX_ERROR_TEXT = 1000

Send = Callable[[bytes], Awaitable[None]]
Decode = Callable[[bytes], Any]


@dataclass(frozen=True)
class Handler:
    """How to serve one method: decode the payload, run `fn`, encode its answer.

    `decode` raises (any exception) for a payload that does not decode; the
    request then gets no reply, as upstream does.
    """

    decode: Decode
    fn: Callable[[Any], Awaitable[betterproto2.Message]]


def handler(request_type: type[M], fn: Callable[[M], Awaitable[Any]]) -> Handler:
    """A `Handler` that decodes `request_type` strictly (else: no reply)."""
    return Handler(decode=decoder(request_type), fn=fn)


def is_uuid4(text: str) -> bool:
    """True for a canonical-or-not UUID string of version 4, RFC 4122 variant."""
    try:
        u = uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        return False
    return u.version == 4 and u.variant == uuid.RFC_4122


def new_call_id() -> str:
    return str(uuid.uuid4())


def encode_request(method: str, call_id: str, payload: bytes) -> bytes:
    return bytes(Message(request=Request(method=method, call_id=call_id, payload=payload)))


def encode_response(call_id: str, payload: bytes = b"", error: str = "") -> bytes:
    return bytes(Message(response=Response(call_id=call_id, payload=payload, error=error)))


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 1] + "…"


class Endpoint:
    """One side of a wsrpc connection: serves `handlers`, makes calls.

    Envelopes and payloads are decoded strictly: a malformed one is dropped,
    never half-read.
    """

    def __init__(
        self,
        send: Send,
        handlers: Mapping[str, Handler],
        *,
        name: str = "wsrpc",
        on_request: Callable[[str], None] | None = None,
    ) -> None:
        self._send = send
        self._handlers = dict(handlers)
        self._pending: dict[str, asyncio.Future[Response]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed: BaseException | None = None
        self._on_request = on_request
        self.name = name
        #: messages dropped (bad envelope, bad call id, unknown method, bad payload)
        self.dropped = 0

    # ------------------------------------------------------------ receive

    def feed(self, data: bytes) -> None:
        """Take one received message. Requests are served in their own task."""
        if self._closed is not None:
            return
        try:
            msg = decode(data, Message)
        except Exception as exc:
            self._drop("message does not decode as message.Message: %s", exc)
            return
        if msg.request is not None:
            self._on_req(msg.request)
        elif msg.response is not None:
            fut = self._pending.pop(msg.response.call_id, None)
            if fut is None:
                self._drop("response for unknown call id %r", msg.response.call_id[:64])
            elif not fut.done():
                fut.set_result(msg.response)
        else:
            self._drop("message has neither request nor response")

    def _drop(self, why: str, *args: Any) -> None:
        self.dropped += 1
        log.debug("%s: dropped: " + why, self.name, *args)

    def _on_req(self, req: Request) -> None:
        if not is_uuid4(req.call_id):
            self._drop("request %r: call id %r is not a UUIDv4", req.method[:64], req.call_id[:64])
            return
        h = self._handlers.get(req.method)
        if h is None:
            self._drop("unknown method %r", req.method[:64])
            return
        try:
            arg = h.decode(req.payload)
        except Exception as exc:
            self._drop("%s payload does not decode: %s", req.method, exc)
            return
        if self._on_request is not None:
            self._on_request(req.method)
        task = asyncio.get_running_loop().create_task(self._serve(req.method, req.call_id, h, arg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, method: str, call_id: str, h: Handler, arg: Any) -> None:
        try:
            out = await h.fn(arg)
            data = encode_response(call_id, bytes(out))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, WsrpcCallError | NodeNotConnectedError):
                log.debug("%s: %s failed: %r", self.name, method, exc)
            data = encode_response(call_id, error=_error_text(exc))
        try:
            await self._send(data)
        except Exception as exc:  # connection went away: nobody to answer
            log.debug("%s: answer to %s not sent: %r", self.name, method, exc)

    # --------------------------------------------------------------- call

    async def call(
        self,
        method: str,
        request: betterproto2.Message,
        response_type: type[M],
        *,
        timeout: float = DEFAULT_CALL_TIMEOUT,
    ) -> M:
        """Call `method` on the other side; raise `WsrpcCallError` with its
        error text, `WsrpcTimeoutError` when nothing comes back in time."""
        if self._closed is not None:
            raise NodeNotConnectedError(f"{method}: not connected ({self._closed})")
        call_id = new_call_id()
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = fut
        try:
            await self._send(encode_request(method, call_id, bytes(request)))
            try:
                resp = await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                raise WsrpcTimeoutError(method, timeout) from None
        finally:
            self._pending.pop(call_id, None)
        if resp.error:
            raise WsrpcCallError(method, resp.error)
        try:
            return decode(resp.payload, response_type)
        except Exception as exc:
            raise WsrpcCallError(method, f"answer does not decode: {exc}") from None

    # -------------------------------------------------------------- close

    def close(self, reason: BaseException | None = None) -> None:
        """The connection is gone: pending calls fail at once, handlers stop."""
        if self._closed is not None:
            return
        self._closed = reason or NodeNotConnectedError("connection closed")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(NodeNotConnectedError(f"connection closed: {self._closed}"))
        self._pending.clear()
        for task in list(self._tasks):
            task.cancel()

    @property
    def closed(self) -> bool:
        return self._closed is not None
