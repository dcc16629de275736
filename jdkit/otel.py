"""OpenTelemetry tracing for every call (the `otel` extra: `pip install 'jdkit[otel]'`).

Turn it on with the `tracing` option, on any path to a client:

    jdkit.connect(url, tracing=True)               # the global TracerProvider
    jdkit.connect(url, tracing=my_tracer_provider)

Each call is one span of kind CLIENT, named and described as OpenTelemetry's
gRPC semantic conventions say: name `api.node.v1.NodeService/ListNodes`,
`rpc.system` = `grpc`, `rpc.service`, `rpc.method`, `server.address`,
`server.port`, and `rpc.grpc.status_code` (0 when OK); a failed call also
has status ERROR and its exception recorded. Retries are events on that span
(`retry`, with `rpc.retry.attempt` and the status code of the attempt that
failed) rather than spans of their own, so a dashboard counts calls, not
attempts. A token fetch or refresh a call waits for is a child span
(`jdkit.auth.refresh`). A dry-run client's spans carry `jdkit.dry_run`
(writes it journals are answered without reaching the server).

`TracingInterceptor` is what the option installs, outermost in the chain
(it sees a call's final outcome, deadline included); `AttemptEvents` sits
just below the retry interceptor, where each attempt is visible.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

try:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ModuleNotFoundError as exc:  # say which extra, not only which module
    raise ImportError(f"jdkit.otel needs OpenTelemetry: pip install 'jdkit[otel]' ({exc})") from exc

from jdkit import _exports, _tracing
from jdkit._exceptions import RPCError
from jdkit._interceptors import Call, Interceptor, Message, StreamNext, UnaryNext

__all__ = ["AttemptEvents", "TracingInterceptor"]

_LAST = "_otel_last_status"


class TracingInterceptor(Interceptor):
    """One CLIENT span per call, following the gRPC semantic conventions."""

    def __init__(
        self,
        tracer_provider: Any = None,
        *,
        server_address: str = "",
        server_port: int = 0,
        dry_run: bool = False,
    ) -> None:
        import jdkit

        self.tracer = trace.get_tracer("jdkit", jdkit.__version__, tracer_provider=tracer_provider)
        self._attributes: dict[str, Any] = {"rpc.system": "grpc"}
        if server_address:
            self._attributes["server.address"] = server_address
            self._attributes["server.port"] = server_port
        if dry_run:
            self._attributes["jdkit.dry_run"] = True

    def _start(self, call: Call) -> Any:
        service, _, method = call.method.path.lstrip("/").partition("/")
        attributes = {**self._attributes, "rpc.service": service, "rpc.method": method}
        return self.tracer.start_as_current_span(
            call.method.path.lstrip("/"),
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )

    async def unary(self, call: Call, proceed: UnaryNext) -> Message:
        token = _tracing.current_tracer.set(self.tracer)
        try:
            with self._start(call) as span:
                try:
                    response = await proceed(call)
                except BaseException as exc:
                    _failed(span, exc)
                    raise
                span.set_attribute("rpc.grpc.status_code", 0)
                return response
        finally:
            _tracing.current_tracer.reset(token)

    async def stream(self, call: Call, proceed: StreamNext) -> AsyncIterator[Message]:
        token = _tracing.current_tracer.set(self.tracer)
        try:
            with self._start(call) as span:
                try:
                    async for message in proceed(call):
                        yield message
                except BaseException as exc:
                    _failed(span, exc)
                    raise
                span.set_attribute("rpc.grpc.status_code", 0)
        finally:
            with contextlib.suppress(ValueError):  # a generator closed in another context
                _tracing.current_tracer.reset(token)


class AttemptEvents(Interceptor):
    """A `retry` event on the call's span for each attempt after the first."""

    async def unary(self, call: Call, proceed: UnaryNext) -> Message:
        if call.attempt > 1:
            event: dict[str, Any] = {"rpc.retry.attempt": call.attempt}
            if _LAST in call.options:
                event["rpc.grpc.status_code"] = call.options[_LAST]
            trace.get_current_span().add_event("retry", event)
        try:
            return await proceed(call)
        except RPCError as exc:
            call.options[_LAST] = int(exc.code.value)
            raise


def _failed(span: Any, exc: BaseException) -> None:
    if isinstance(exc, RPCError):
        span.set_attribute("rpc.grpc.status_code", int(exc.code.value))
    span.set_attribute("error.type", type(exc).__name__)
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))


_exports.publish_all(globals())  # help(), reprs, tracebacks name this module; dir()
