"""What a handler's exception becomes on the wire: a jdkit error its gRPC
status, a GRPCError itself (messages cut to fit a header), anything else
INTERNAL, logged with a bounded traceback."""

from __future__ import annotations

import logging
import traceback

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jdkit._exceptions import RPCError

log = logging.getLogger("jdkit.server")


#: Status messages travel in an HTTP/2 header; messages that echo a huge
#: caller-supplied value are cut so the answer stays readable by any client.
MAX_STATUS_MESSAGE = 1000


def _clip(message: str) -> str:
    return message if len(message) <= MAX_STATUS_MESSAGE else message[:MAX_STATUS_MESSAGE] + "…"


def to_grpc(path: str, exc: Exception) -> GRPCError:
    if isinstance(exc, GRPCError):
        return GRPCError(exc.status, _clip(exc.message or ""), exc.details)
    if isinstance(exc, RPCError):
        return GRPCError(exc.code, _clip(exc.message))
    log.error("unexpected error in %s\n%s", path, bounded_traceback(exc))
    return GRPCError(Status.INTERNAL, f"internal server error in {path}")


#: A logged server error keeps this many characters of its traceback (head and
#: tail): a deep recursion's traceback is hundreds of KB, one per call.
MAX_LOGGED_TRACEBACK = 8192


def bounded_traceback(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc)).rstrip()
    if len(text) <= MAX_LOGGED_TRACEBACK:
        return text
    half = MAX_LOGGED_TRACEBACK // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n… {cut} characters of traceback left out …\n{text[-half:]}"
