"""One call's life on the embedded JD, from admission to the log line.

Each service subclasses its generated base and overrides the snake_case
methods. The generated `__rpc_*` glue is replaced by `_guarded`, which keeps
the generated paths and message types but adds what a caller-facing server
needs: a call waits for a slot on its connection and a turn at the handlers
(`_limits`), an absent or truncated request body is the caller's mistake
(INVALID_ARGUMENT, not an assert turned UNKNOWN), a jdkit error becomes its
status (`_errors`), and only a genuine server bug is INTERNAL.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import betterproto2
import grpclib.const
import grpclib.server
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from jdkit import _compression
from jdkit._server._grpc._errors import to_grpc
from jdkit._server._grpc._messages import encode_reply, proto_name, read_request, write_reply
from jdkit._server._grpc._runtime import HEALTH_PREFIX, Runtime, rid_note
from jdkit._server._grpc._transport import CallInfo, call_of
from jdkit._server._limits import ConnectionBudget

log = logging.getLogger("jdkit.server")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _guarded(
    path: str, handler: grpclib.const.Handler, impl: Callable[[Any], Any], rt: Runtime
) -> grpclib.const.Handler:
    name = proto_name(handler.request_type)
    streaming = handler.cardinality is Cardinality.UNARY_STREAM
    # Health calls are tiny and must answer however busy the connection is;
    # Watch streams live long and send a few bytes, so they take no slot.
    takes_slot = not (streaming or path.startswith(HEALTH_PREFIX))

    async def admit(stream: grpclib.server.Stream[Any, Any], call: CallInfo) -> tuple[Any, bool]:
        """The request, once the call may start: it has a slot on its
        connection, the connection's unread replies are under the bound,
        and the request arrived within `request_timeout`."""
        limits = rt.limits
        acquired = False
        reading = not takes_slot
        try:
            async with asyncio.timeout(limits.request_timeout):
                if takes_slot:
                    await call.conn.slots.acquire()
                    acquired = True
                    await call.conn.room()
                    reading = True
                return await read_request(stream, name, call, limits), acquired
        except TimeoutError:
            if acquired:
                call.conn.slots.release()
            if not reading:
                raise GRPCError(
                    Status.RESOURCE_EXHAUSTED,
                    f"this connection's earlier calls (at most "
                    f"{limits.max_active_calls_per_connection} at once) or its unread replies "
                    f"kept this call from starting for {limits.request_timeout:g} s",
                ) from None
            raise GRPCError(
                Status.DEADLINE_EXCEEDED,
                f"the request message did not arrive within {limits.request_timeout:g} s "
                "of the call's headers (request_timeout)",
            ) from None
        except BaseException:
            if acquired:
                call.conn.slots.release()
            raise

    async def compute(request: Any, conn: ConnectionBudget) -> Any:
        if not takes_slot:
            return await impl(request)
        while True:
            # the unread-bytes gate again, at the turn: calls admitted together
            # got past it before any of their replies existed
            await conn.room()
            await rt.workers.acquire(conn)
            if conn.pending < conn.max_pending:
                break
            rt.workers.release()
        try:
            return await impl(request)
        finally:
            rt.workers.release()

    async def serve(stream: grpclib.server.Stream[Any, Any]) -> None:
        call = call_of(stream)
        t0 = time.perf_counter()
        outcome = "OK"
        acquired = False
        try:
            request, acquired = await admit(stream, call)
            encoding = None
            if rt.compression is not None:
                offered = _compression.pick_encoding(call.headers.get("grpc-accept-encoding"))
                encoding = rt.compression if offered is not None else None
            rt.enter()
            try:
                if streaming:
                    async for reply in impl(request):
                        framed = await encode_reply(stream, reply, encoding, rt.limits, call)
                        await write_reply(stream, framed, encoding, call.conn)
                else:
                    # only the encoded bytes wait for a slow reader, not the objects
                    framed = await encode_reply(
                        stream, await compute(request, call.conn), encoding, rt.limits, call
                    )
                    del request
                    await write_reply(stream, framed, encoding, call.conn)
            except (asyncio.CancelledError, StreamTerminatedError):
                raise
            except Exception as exc:
                raise to_grpc(path, exc) from None
            finally:
                rt.leave()
        except GRPCError as exc:
            outcome = exc.status.name
            raise
        except (asyncio.CancelledError, StreamTerminatedError):
            outcome = "CANCELLED"
            raise
        finally:
            if acquired:
                call.conn.slots.release()
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "%s %s %.1f ms%s",
                    path,
                    outcome,
                    (time.perf_counter() - t0) * 1000,
                    rid_note(stream.metadata),
                )

    return grpclib.const.Handler(
        serve, handler.cardinality, handler.request_type, handler.reply_type
    )


class Servable:
    """What grpclib registers: the generated mapping with guarded handlers."""

    def __init__(self, service: betterproto2.grpclib.ServiceBase, rt: Runtime) -> None:
        self._mapping: dict[str, grpclib.const.Handler] = {}
        for path, handler in service.__mapping__().items():  # type: ignore[attr-defined]
            impl = getattr(service, _snake(path.rsplit("/", 1)[1]))
            self._mapping[path] = _guarded(path, handler, impl, rt)

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return self._mapping
