"""jdkit[otel]: one span per call as the gRPC semantic conventions say, retries
as events, token refreshes as child spans; read back from the OTel SDK's
in-memory exporter, against real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from grpc import aio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import jdkit
from jdkit import ClientOptions, EmbeddedProvider, JobDistributor, NotFoundError
from jdkit.auth import StaticToken
from jdkit.pb import node
from jdkit.server import StaticTokenVerifier
from tests.helpers.grpcio import stubs

node_pb2: Any = stubs("v1.node.node_pb2")
node_grpc: Any = stubs("v1.node.node_pb2_grpc")


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


@pytest.mark.asyncio
async def test_one_client_span_per_call_with_the_grpc_conventions(spans) -> None:
    provider, exporter = spans
    async with EmbeddedProvider(tracing=provider) as jd:
        await jd.list_nodes()
        with pytest.raises(NotFoundError):
            await jd.get_node(node.GetNodeRequest(id="node_nope"))
        port = jd.target.port
    (ok,) = _named(exporter, "api.node.v1.NodeService/ListNodes")
    assert ok.kind == SpanKind.CLIENT
    assert dict(ok.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": "api.node.v1.NodeService",
        "rpc.method": "ListNodes",
        "server.address": "127.0.0.1",
        "server.port": port,
        "rpc.grpc.status_code": 0,
    }
    assert ok.status.status_code == StatusCode.UNSET
    (failed,) = _named(exporter, "api.node.v1.NodeService/GetNode")
    assert failed.attributes is not None
    assert failed.attributes["rpc.grpc.status_code"] == 5  # NOT_FOUND
    assert failed.attributes["error.type"] == "NotFoundError"
    assert failed.status.status_code == StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]


@pytest.mark.asyncio
async def test_a_token_fetch_is_a_child_span_of_the_call_that_waited_for_it(spans) -> None:
    provider, exporter = spans
    async with EmbeddedProvider(
        tracing=provider,
        auth=StaticToken("traced-token"),
        server_options={"auth": StaticTokenVerifier(["traced-token"])},
    ) as jd:
        await jd.list_nodes()
        await jd.list_nodes()  # the cached token: no second fetch
    calls = _named(exporter, "api.node.v1.NodeService/ListNodes")
    (refresh,) = _named(exporter, "jdkit.auth.refresh")
    assert len(calls) == 2
    first = min(calls, key=lambda s: s.start_time or 0)
    assert refresh.parent is not None and refresh.parent.span_id == first.context.span_id
    assert refresh.context.trace_id == first.context.trace_id
    assert dict(refresh.attributes or {}) == {"jdkit.auth.source": "StaticToken"}
    assert "traced-token" not in str([s.to_json() for s in exporter.get_finished_spans()])


class FlakyNodes(node_grpc.NodeServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.failures = 2

    async def ListNodes(self, request, context):
        if self.failures:
            self.failures -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return node_pb2.ListNodesResponse()


@pytest_asyncio.fixture
async def flaky() -> AsyncIterator[str]:
    server = aio.server()
    node_grpc.add_NodeServiceServicer_to_server(FlakyNodes(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


@pytest.mark.asyncio
async def test_retries_are_events_on_the_one_span(spans, flaky: str) -> None:
    provider, exporter = spans
    retry = jdkit.RetryPolicy(initial_backoff=0.01, max_backoff=0.02)
    async with JobDistributor.connect(flaky, tracing=provider, retry=retry) as jd:
        await jd.list_nodes()
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None and span.attributes["rpc.grpc.status_code"] == 0
    events = [(e.name, dict(e.attributes or {})) for e in span.events]
    assert events == [
        ("retry", {"rpc.retry.attempt": 2, "rpc.grpc.status_code": 14}),
        ("retry", {"rpc.retry.attempt": 3, "rpc.grpc.status_code": 14}),
    ]


@pytest.mark.asyncio
async def test_dry_run_spans_say_so_and_tracing_is_an_option_everywhere(spans) -> None:
    provider, exporter = spans
    async with jdkit.connect(options=ClientOptions(tracing=provider), dry_run=True) as jd:
        await jd.register_node(node.RegisterNodeRequest(name="n", public_key="ab" * 32))
    (span,) = _named(exporter, "api.node.v1.NodeService/RegisterNode")
    assert span.attributes is not None and span.attributes["jdkit.dry_run"] is True


def test_a_tracing_value_that_is_no_provider_is_a_config_error() -> None:
    with pytest.raises(jdkit.ConfigError) as info:
        ClientOptions(tracing="yes")
    assert info.value.field == "tracing"


def test_without_tracing_opentelemetry_is_not_imported() -> None:
    import subprocess
    import sys

    code = (
        "import sys, jdkit, jdkit.auth\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
