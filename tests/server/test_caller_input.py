"""A caller's input never reaches INTERNAL, and caps bound what one request
costs (issue 10, D1 and D5), through a foreign client: grpcio with byte
serializers, so the bytes are exactly what an attacker would send.

D1: a spec nested 400 levels (`x = {a = {a = ...}}`, 2.4 KB) made tomllib
raise RecursionError: INTERNAL and ~208 KB of traceback logged per call.
D5: RegisterNode with 300,000 labels (3.9 MiB) cost seconds of event loop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
import pytest_asyncio
from grpc import aio

from jdkit import InvalidArgumentError, JobDistributor
from jdkit._core import validate
from jdkit._server import EmbeddedJD
from jdkit.pb import job, label, node
from tests.helpers.server_fixtures import pubkey, spec

pytestmark = pytest.mark.asyncio

ProposeJob = "/api.job.v1.JobService/ProposeJob"
BatchProposeJob = "/api.job.v1.JobService/BatchProposeJob"
RegisterNode = "/api.node.v1.NodeService/RegisterNode"
UpdateNode = "/api.node.v1.NodeService/UpdateNode"
ListNodes = "/api.node.v1.NodeService/ListNodes"
ListJobs = "/api.job.v1.JobService/ListJobs"
UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def _identity(b: bytes) -> bytes:
    return b


class Peer:
    def __init__(self, srv: EmbeddedJD, channel: aio.Channel) -> None:
        self.srv, self.channel = srv, channel

    async def call(self, path: str, message: Any) -> tuple[grpc.StatusCode, str]:
        fn: Callable[..., Any] = self.channel.unary_unary(
            path, request_serializer=_identity, response_deserializer=_identity
        )
        try:
            await fn(bytes(message), timeout=60)
        except aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
        return grpc.StatusCode.OK, ""


@pytest_asyncio.fixture
async def peer() -> AsyncIterator[Peer]:
    async with EmbeddedJD.start() as srv:
        async with aio.insecure_channel(srv.address, options=UNLIMITED) as channel:
            yield Peer(srv, channel)


async def _nothing_stored(srv: EmbeddedJD) -> None:
    assert await srv.state.list_proposals([], []) == []
    assert await srv.state.list_jobs(None) == []


# ------------------------------------------------------------------ D1

NESTED = {
    "tables-400": "x = " + "{a = " * 400 + "1" + "}" * 400,
    "arrays-400": "x = " + "[" * 400 + "]" * 400,
    "tables-20000": "x = " + "{a = " * 20_000 + "1" + "}" * 20_000,
    "headers": "[" * 2000 + "a" + "]" * 2000,
}


@pytest.mark.parametrize("extra", NESTED.values(), ids=NESTED.keys())
async def test_a_deeply_nested_spec_is_invalid_argument_and_logs_no_traceback(
    peer: Peer, extra: str, caplog: pytest.LogCaptureFixture
) -> None:
    n = await peer.srv.state.register_node("n", pubkey(1), [])
    bad = spec(extra=extra + "\n")
    with caplog.at_level(logging.DEBUG, logger="jdkit"):
        for path, message in (
            (ProposeJob, job.ProposeJobRequest(node_id=n.id, spec=bad)),
            (BatchProposeJob, job.BatchProposeJobRequest(node_ids=[n.id], spec=bad)),
        ):
            code, details = await peer.call(path, message)
            assert code == grpc.StatusCode.INVALID_ARGUMENT, details
            assert details.startswith("spec "), details
            assert len(details) < 300
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert sum(len(r.getMessage()) for r in caplog.records) < 2000
    await _nothing_stored(peer.srv)


async def test_nesting_at_the_limit_is_accepted(peer: Peer) -> None:
    n = await peer.srv.state.register_node("n", pubkey(1), [])
    depth = validate.MAX_SPEC_NESTING
    ok = spec(extra="x = " + "[" * depth + "]" * depth + "\n")
    assert (await peer.call(ProposeJob, job.ProposeJobRequest(node_id=n.id, spec=ok)))[0] == (
        grpc.StatusCode.OK
    )
    over = spec(extra="x = " + "[" * (depth + 1) + "]" * (depth + 1) + "\n")
    code, details = await peer.call(ProposeJob, job.ProposeJobRequest(node_id=n.id, spec=over))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{depth + 1} levels deep; the limit is {depth}" in details


async def test_brackets_inside_strings_and_comments_do_not_count(peer: Peer) -> None:
    n = await peer.srv.state.register_node("n", pubkey(1), [])
    many = "[" * 500
    text = (
        f'a = "{many}"\nb = \'{many}\'\nc = """\n{many}\n"""\n'
        f"d = '''{many}'''\n# {many}\ne = \"q\\\"{many}\"\n"
    )
    ok = spec(extra=text)
    code, details = await peer.call(ProposeJob, job.ProposeJobRequest(node_id=n.id, spec=ok))
    assert code == grpc.StatusCode.OK, details


async def test_a_server_bug_is_internal_with_a_bounded_log(
    peer: Peer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """What still reaches INTERNAL (a genuine bug) logs a bounded traceback."""

    # two functions in turn, so Python cannot fold the repeated frames
    def ping(k: int) -> None:
        if not k:
            raise RuntimeError("boom")
        pong(k - 1)

    def pong(k: int) -> None:
        ping(k)

    async def broken(*args: Any) -> Any:
        ping(300)

    monkeypatch.setattr(peer.srv.state, "list_nodes", broken)
    with caplog.at_level(logging.ERROR, logger="jdkit.server"):
        code, _ = await peer.call(ListNodes, node.ListNodesRequest())
    assert code == grpc.StatusCode.INTERNAL
    (record,) = [r for r in caplog.records if "unexpected error" in r.getMessage()]
    text = record.getMessage()
    assert "RuntimeError: boom" in text and "characters of traceback left out" in text
    assert len(text) < 9000 and record.exc_info is None


# ------------------------------------------------------------------ D5


async def test_300000_labels_are_refused_before_decoding(peer: Peer) -> None:
    many = [label.Label(key=f"k{i}", value="v") for i in range(300_000)]
    req = node.RegisterNodeRequest(name="n", public_key=pubkey(1), labels=many)
    assert 3.5 * 2**20 < len(bytes(req)) < 4 * 2**20  # under the message size limit
    code, details = await peer.call(RegisterNode, req)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "labels has more than 100 entries; the limit is 100"
    assert await peer.srv.state.list_nodes(None, 0, 0) == ([], 0)
    # the server is fine and serves the next call
    ok = node.RegisterNodeRequest(name="n", public_key=pubkey(1), labels=many[:100])
    assert (await peer.call(RegisterNode, ok))[0] == grpc.StatusCode.OK


CAPPED = {
    "label-key": (
        RegisterNode,
        node.RegisterNodeRequest(
            name="n", public_key=pubkey(1), labels=[label.Label(key="k" * 257, value="v")]
        ),
        "labels[0].key is 257 characters long; the limit is 256",
    ),
    "label-value": (
        RegisterNode,
        node.RegisterNodeRequest(
            name="n", public_key=pubkey(1), labels=[label.Label(key="k", value="v" * 4097)]
        ),
        "labels[0].value is 4097 characters long; the limit is 4096",
    ),
    "name": (
        RegisterNode,
        node.RegisterNodeRequest(name="n" * 257, public_key=pubkey(1)),
        "name is 257 characters long; the limit is 256",
    ),
    "update-name": (
        UpdateNode,
        node.UpdateNodeRequest(id="node_x", name="n" * 257),
        "name is 257 characters long; the limit is 256",
    ),
    "spec": (
        ProposeJob,
        job.ProposeJobRequest(node_id="node_x", spec=spec(extra="# " + "x" * 2**20 + "\n")),
        "; the limit is 1048576",
    ),
    "node-ids": (
        BatchProposeJob,
        job.BatchProposeJobRequest(node_ids=[f"n{i}" for i in range(10_001)], spec=spec()),
        "node_ids has more than 10000 entries; the limit is 10000",
    ),
    "filter-ids": (
        ListNodes,
        node.ListNodesRequest(
            filter=node.ListNodesRequestFilter(ids=[f"n{i}" for i in range(10_001)])
        ),
        "filter.ids has more than 10000 entries; the limit is 10000",
    ),
    "filter-selectors": (
        ListJobs,
        job.ListJobsRequest(
            filter=job.ListJobsRequestFilter(
                selectors=[label.Selector(key=f"k{i}") for i in range(101)]
            )
        ),
        "filter.selectors has more than 100 entries; the limit is 100",
    ),
}


@pytest.mark.parametrize("case", CAPPED.values(), ids=CAPPED.keys())
async def test_caps_are_invalid_argument_naming_field_and_limit(
    peer: Peer, case: tuple[str, Any, str]
) -> None:
    path, message, needle = case
    code, details = await peer.call(path, message)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert needle in details, details
    assert await peer.srv.state.list_nodes(None, 0, 0) == ([], 0)
    await _nothing_stored(peer.srv)


async def test_at_the_caps_everything_is_accepted(peer: Peer) -> None:
    labels = [label.Label(key=f"{i:0256d}", value="v" * 4096) for i in range(100)]
    reg = node.RegisterNodeRequest(name="n" * 256, public_key=pubkey(1), labels=labels)
    assert (await peer.call(RegisterNode, reg))[0] == grpc.StatusCode.OK


async def test_the_dry_run_applies_the_same_caps() -> None:
    async with EmbeddedJD.start() as srv:
        async with JobDistributor.connect(srv.address, timeout=10) as real:
            dry = real.with_dry_run()
            many = [label.Label(key=f"k{i}") for i in range(101)]
            for client in (dry, real):
                with pytest.raises(InvalidArgumentError, match="the limit is 100"):
                    await client.register_node(
                        node.RegisterNodeRequest(name="n", public_key=pubkey(1), labels=many)
                    )
                with pytest.raises(InvalidArgumentError, match="the limit is 256"):
                    await client.register_node(
                        node.RegisterNodeRequest(name="n" * 257, public_key=pubkey(1))
                    )
                with pytest.raises(InvalidArgumentError, match="levels deep; the limit is 64"):
                    await client.propose_job(
                        job.ProposeJobRequest(node_id="x", spec=spec(extra=NESTED["tables-400"]))
                    )
            assert srv.write_calls == 6 // 2  # only the real client's three refused writes
