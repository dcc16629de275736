"""What every RPC method goes through before the interceptor chain.

`_unary` checks the request type and the per-call options (`CallOptions`),
adds the client's metadata and an `x-request-id`, and runs the chain that
`JobDistributor.__init__` composed.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from typing import Any, TypedDict, TypeVar

import betterproto2

from jdkit._channel import Target
from jdkit._interceptors import Call, Message, StreamNext, UnaryNext
from jdkit._methods import METHODS
from jdkit._options import ClientOptions, check_metadata, check_timeout
from jdkit._redact import register_metadata
from jdkit._retry import RetryPolicy

R = TypeVar("R", bound=betterproto2.Message)


def _check_options(name: str, opts: CallOptions) -> None:
    unknown = set(opts) - _OPTION_NAMES
    if unknown:
        raise TypeError(
            f"{name}() got unexpected option(s) {sorted(unknown)}; "
            f"per-call options are {sorted(_OPTION_NAMES)}"
        )
    if "timeout" in opts:
        check_timeout("timeout", opts["timeout"])
    if "retry" in opts and not isinstance(opts["retry"], RetryPolicy):
        ClientOptions(retry=opts["retry"])  # raises ConfigError("retry", ...)
    check_metadata("metadata", opts.get("metadata"))
    register_metadata(opts.get("metadata"))


#: Request ids: 64 random bits per process, then a counter (32 hex digits). As
#: unique as uuid4 for telling calls apart, without a urandom syscall per call.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count()


def _request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"


class CallOptions(TypedDict, total=False):
    """Per-call overrides accepted by every RPC method."""

    timeout: float | None
    retry: RetryPolicy
    metadata: Mapping[str, str | bytes]


_OPTION_NAMES = frozenset(CallOptions.__annotations__)


class CallBase:
    """The part of `JobDistributor` the RPC methods call through."""

    target: Target
    _metadata: dict[str, Any]
    _unary_chain: UnaryNext
    _stream_chain: StreamNext

    async def _unary(
        self, path: str, request: Message, response_type: type[R], opts: CallOptions
    ) -> R:
        method = METHODS[path]
        if not isinstance(request, method.request):
            raise TypeError(
                f"{method.name} takes {method.request.__name__}, not {type(request).__name__}"
            )
        if opts:
            _check_options(method.name, opts)
        call = Call(method, request, metadata=self._call_metadata(opts), options=dict(opts))
        response = await self._unary_chain(call)
        assert isinstance(response, response_type)
        return response

    def _call_metadata(self, opts: CallOptions) -> dict[str, str]:
        """The client's metadata, the call's over it, and an `x-request-id` unless given.

        The id is one per logical call (its retries carry the same one), so a
        server's log lines for all attempts can be found from either side.
        """
        extra = opts.get("metadata")
        md = {**self._metadata, **extra} if extra else dict(self._metadata)
        if "x-request-id" not in md:
            md["x-request-id"] = _request_id()
        return md
