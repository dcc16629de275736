"""The hook that lets code deep in a traced call open child spans, without
importing OpenTelemetry unless a client has tracing on.

`jdkit.otel.TracingInterceptor` sets `current_tracer` for the duration of a
call; contextvars follow the call into the tasks it starts (a token refresh
runs as its own task), so `span()` there opens a child of the call's span.
Untraced calls get a no-op context manager.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

__all__ = ["current_tracer", "span"]

current_tracer: ContextVar[Any] = ContextVar("jdkit_tracer", default=None)


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[None]:
    """A child span of the current call's span when it is traced, else nothing."""
    tracer = current_tracer.get()
    if tracer is None:
        yield
        return
    with tracer.start_as_current_span(name, attributes=dict(attributes or {})):
        yield
