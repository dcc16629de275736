"""Embedded JD: CSA, rollback policies, version, health, write counting, auth
hook, TLS, reset, and what a caller's malformed input gets back."""

from __future__ import annotations

import asyncio
import random
import ssl
import struct
from collections.abc import AsyncGenerator

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

import jdkit
from jdkit import (
    InvalidArgumentError,
    JobDistributor,
    NotFoundError,
    UnauthenticatedError,
)
from jdkit._channel import TLSConfig
from jdkit._methods import METHODS, WRITES
from jdkit._server import EmbeddedJD
from jdkit.pb import csa, health, job, label, node, probation, protobuf
from tests.helpers.server_fixtures import (
    add_node,
    frame,
    h2_call,
    lbl,
    propose,
    pubkey,
    raw_call,
    spec,
)

Env = tuple[EmbeddedJD, JobDistributor]
Serving = health.HealthCheckResponseServingStatus


# ------------------------------------------------------------ services


@pytest.mark.asyncio
async def test_csa_keypair(env: Env) -> None:
    _, jd = env
    kp = (await jd.get_keypair()).keypair
    assert kp is not None and kp.id == 1 and kp.created_at is not None
    assert len(kp.public_key) == 64 and bytes.fromhex(kp.public_key)
    listed = (await jd.list_keypairs()).keypairs
    assert [k.to_dict() for k in listed] == [kp.to_dict()]
    assert await jd.get_csa_public_key() == kp.public_key


@pytest.mark.asyncio
async def test_version_is_jdkits(env: Env) -> None:
    _, jd = env
    assert (await jd.version()).version == jdkit.__version__


@pytest.mark.asyncio
async def test_rollback_policies(env: Env) -> None:
    _, jd = env
    doc = {"threshold": 0.5, "steps": [1, "two", None, True], "nested": {"k": "v"}}
    made = (
        await jd.create_rollback_policy(
            probation.CreateRollbackPolicyRequest(policy=protobuf.Struct.from_dict(doc))
        )
    ).rollback_policy
    assert made is not None and made.id == "1" and made.policy is not None
    assert made.policy.to_dict() == doc
    empty = (
        await jd.create_rollback_policy(probation.CreateRollbackPolicyRequest())
    ).rollback_policy
    assert empty is not None and empty.id == "2"
    got = (await jd.get_rollback_policy(probation.GetRollbackPolicyRequest(id="1"))).rollback_policy
    assert got is not None and got.to_dict() == made.to_dict()
    for bad in ("99", "x", "01", "-1", "9" * 40):
        with pytest.raises(NotFoundError):
            await jd.get_rollback_policy(probation.GetRollbackPolicyRequest(id=bad))
    with pytest.raises(InvalidArgumentError):
        await jd.get_rollback_policy(probation.GetRollbackPolicyRequest())

    everything = (await jd.list_rollback_policies()).rollback_policies
    assert [p.id for p in everything] == ["1", "2"]
    some = await jd.list_rollback_policies(
        probation.ListRollbackPoliciesRequest(
            filter=probation.ListRollbackPoliciesRequestFilter(ids=["2", "nope"])
        )
    )
    assert [p.id for p in some.rollback_policies] == ["2"]
    none = await jd.list_rollback_policies(
        probation.ListRollbackPoliciesRequest(
            filter=probation.ListRollbackPoliciesRequestFilter(ids=["nope"])
        )
    )
    assert none.rollback_policies == []

    up = (
        await jd.update_rollback_policy(
            probation.UpdateRollbackPolicyRequest(
                id="1", policy=protobuf.Struct.from_dict({"threshold": 1})
            )
        )
    ).rollback_policy
    assert up is not None and up.policy is not None and up.policy.to_dict() == {"threshold": 1}
    assert up.updated_at is not None and made.updated_at is not None
    assert up.updated_at > made.updated_at and up.created_at == made.created_at
    with pytest.raises(NotFoundError):
        await jd.update_rollback_policy(
            probation.UpdateRollbackPolicyRequest(id="42", policy=protobuf.Struct())
        )
    with pytest.raises(InvalidArgumentError, match="policy is required"):
        await jd.update_rollback_policy(probation.UpdateRollbackPolicyRequest(id="1"))
    broken = protobuf.Struct(fields={"k": protobuf.Value()})  # a Value with no kind
    with pytest.raises(InvalidArgumentError, match="Struct"):
        await jd.create_rollback_policy(probation.CreateRollbackPolicyRequest(policy=broken))


@pytest.mark.asyncio
async def test_every_rpc_is_implemented(env: Env) -> None:
    """Every path of the RPC table reaches a real handler (never UNIMPLEMENTED)."""
    srv, _ = env
    for path in METHODS:
        if path.endswith("/Watch"):  # streams until the server stops: see the watch tests
            continue
        status, message = await raw_call(srv.port, path, b"")
        assert status != Status.UNIMPLEMENTED, (path, message)


# -------------------------------------------------------------- health


@pytest.mark.asyncio
async def test_health_check_and_unknown_service(env: Env) -> None:
    _, jd = env
    assert await jd.check_health() == Serving.SERVING
    assert await jd.check_health("api.node.v1.NodeService") == Serving.SERVING
    with pytest.raises(NotFoundError):
        await jd.check_health("no.such.Service")


@pytest.mark.asyncio
async def test_health_watch_streams_until_stop() -> None:
    srv = await EmbeddedJD.start()
    ch = Channel("127.0.0.1", srv.port)
    try:
        seen: list[Serving] = []
        stub = health.HealthStub(ch)

        async def watch() -> None:
            async for msg in stub.watch(health.HealthCheckRequest()):
                seen.append(msg.status)

        task = asyncio.create_task(watch())
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        assert seen == [Serving.SERVING]
        await srv.stop()
        await asyncio.wait_for(task, 5)  # the stream ends after the last status
        assert seen == [Serving.SERVING, Serving.NOT_SERVING]
    finally:
        ch.close()
        await srv.stop()


@pytest.mark.asyncio
async def test_health_watch_unknown_service_and_client_leaving(env: Env) -> None:
    srv, _ = env
    ch = Channel("127.0.0.1", srv.port)
    try:
        stub = health.HealthStub(ch)
        stream = stub.watch(health.HealthCheckRequest(service="nope"))
        first = await asyncio.wait_for(stream.__anext__(), 5)
        assert first.status == Serving.SERVICE_UNKNOWN
        assert isinstance(stream, AsyncGenerator)
        await stream.aclose()  # the client goes away
        await asyncio.sleep(0.05)
    finally:
        ch.close()
    for _ in range(100):  # the server let go of the watcher
        if srv._rt is not None and srv._rt.active == 0:
            break
        await asyncio.sleep(0.02)
    assert srv._rt is not None and srv._rt.active == 0


# ----------------------------------------------------- calls, writes, reset


@pytest.mark.asyncio
async def test_write_calls_count_successes_and_failures(env: Env) -> None:
    srv, jd = env
    assert srv.write_calls == 0
    await jd.list_nodes()
    await jd.version()
    assert srv.write_calls == 0
    n = await add_node(jd, 1)
    with pytest.raises(jdkit.AlreadyExistsError):
        await add_node(jd, 1)
    with pytest.raises(NotFoundError):
        await jd.enable_node(node.EnableNodeRequest(id="node_nope"))
    await propose(jd, n.id)
    assert srv.write_calls == 4
    assert srv.calls["/api.node.v1.NodeService/RegisterNode"] == 2
    assert set(srv.calls) - WRITES == {
        "/api.node.v1.NodeService/ListNodes",
        "/api.app.v1.AppService/Version",
    }


@pytest.mark.asyncio
async def test_dry_run_sends_no_write(env: Env) -> None:
    srv, jd = env
    dry = jd.with_dry_run()
    await dry.register_node(node.RegisterNodeRequest(name="n", public_key=pubkey(1)))
    assert srv.write_calls == 0
    assert (await jd.list_nodes()).nodes == []


@pytest.mark.asyncio
async def test_reset_keeps_only_the_keypair(env: Env) -> None:
    srv, jd = env
    key = await jd.get_csa_public_key()
    n = await add_node(jd, 1)
    p = await propose(jd, n.id)
    await jd.create_rollback_policy(probation.CreateRollbackPolicyRequest())
    await srv.add_chain_config(
        n.id,
        node.ChainConfig(chain=node.Chain(id="1", type=node.ChainType.EVM)),
    )
    await srv.reset()
    assert srv.write_calls == 0
    assert (await jd.list_nodes()).nodes == []
    assert (
        await jd.list_jobs(
            job.ListJobsRequest(filter=job.ListJobsRequestFilter(include_deleted=True))
        )
    ).jobs == []
    assert (await jd.list_proposals()).proposals == []
    assert (await jd.list_rollback_policies()).rollback_policies == []
    assert (await jd.list_node_chain_configs()).chain_configs == []
    with pytest.raises(NotFoundError):
        await jd.get_proposal(job.GetProposalRequest(id=p.id))
    assert await jd.get_csa_public_key() == key
    again = await add_node(jd, 1)  # the public key is free again
    assert again.id != n.id
    pol = (await jd.create_rollback_policy(probation.CreateRollbackPolicyRequest())).rollback_policy
    assert pol is not None and pol.id == "1"


# ------------------------------------------------------------------ auth


@pytest.mark.asyncio
async def test_auth_hook() -> None:
    seen: list[str | None] = []

    async def auth(token: str | None) -> None:
        seen.append(token)
        if token != "good":
            raise GRPCError(Status.UNAUTHENTICATED, "bad token")

    async def broken(token: str | None) -> None:
        raise RuntimeError("verifier bug")

    async with EmbeddedJD.start(auth=auth) as srv:
        async with JobDistributor.connect(srv.address, timeout=5) as anon:
            with pytest.raises(UnauthenticatedError):
                await anon.list_nodes()
            assert await anon.check_health() == Serving.SERVING  # health needs no token
        meta = {"authorization": "Bearer good"}
        async with JobDistributor.connect(srv.address, timeout=5, metadata=meta) as jd:
            await jd.register_node(node.RegisterNodeRequest(name="n", public_key=pubkey(1)))
        for header in ("Bearer bad", "Basic Zm9vOmJhcg==", "bearer   good  "):
            status, _ = await raw_call(
                srv.port,
                "/api.node.v1.NodeService/ListNodes",
                b"",
                metadata={"authorization": header},
            )
            assert status == (Status.OK if header.endswith("good  ") else Status.UNAUTHENTICATED)
        assert seen == [None, "good", "bad", None, "good"]
        assert srv.write_calls == 1  # refused calls count as received

    async with EmbeddedJD.start(auth=broken) as srv:
        status, message = await raw_call(srv.port, "/api.app.v1.AppService/Version", b"")
        assert status == Status.UNAUTHENTICATED and message and "verified" in message


# ------------------------------------------------------------------- TLS


@pytest.mark.asyncio
async def test_tls(tmp_path: object) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = f"{tmp_path}/ca.pem"
    ca.cert_pem.write_to_path(ca_file)
    async with EmbeddedJD.start(ssl=server_ctx) as srv:
        tls = TLSConfig(ca_file=ca_file, server_name="localhost")
        async with JobDistributor.connect(srv.address, tls=tls, timeout=5) as jd:
            assert (await jd.version()).version == jdkit.__version__
        async with JobDistributor.connect(srv.address, timeout=2) as plain:
            with pytest.raises(jdkit.RPCError):
                await plain.version()


# ------------------------------------------------------ malformed input


@pytest.mark.asyncio
async def test_garbage_body_is_invalid_argument(env: Env) -> None:
    srv, _ = env
    path = "/api.node.v1.NodeService/GetNode"
    for body in (b"\xff\xff\xff", b"\x0a\x05ab", b"\x0a\x02\xff\xfe", b"\x08" + b"\xff" * 11):
        status, message = await raw_call(srv.port, path, body)
        assert status == Status.INVALID_ARGUMENT, body
        assert message and "does not decode as api.node.v1.GetNodeRequest" in message
    h2_status, message = await h2_call(srv.port, path, b"")  # no message at all
    assert h2_status == str(Status.INVALID_ARGUMENT.value) and message and "no message" in message


@pytest.mark.asyncio
async def test_unknown_method_is_unimplemented(env: Env) -> None:
    srv, _ = env
    status, _ = await raw_call(srv.port, "/api.node.v1.NodeService/Explode", b"")
    assert status == Status.UNIMPLEMENTED
    status, _ = await raw_call(srv.port, "/no.Such/Thing", b"")
    assert status == Status.UNIMPLEMENTED


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "headers",
    [
        {"grpc-timeout": "soon"},
        {"grpc-timeout": "-5S"},
        {"content-type": "application/grpc+json"},
        {"content-type": "text/plain"},
        {"te": "gzip"},
    ],
)
async def test_malformed_headers_are_invalid_argument(env: Env, headers: dict[str, str]) -> None:
    srv, _ = env
    status, message = await h2_call(
        srv.port, "/api.app.v1.AppService/Version", frame(b""), headers=headers
    )
    assert status == str(Status.INVALID_ARGUMENT.value), message
    status, _ = await h2_call(
        srv.port, "/api.app.v1.AppService/Version", frame(b""), headers={"grpc-timeout": "5S"}
    )
    assert status == "0"


@pytest.mark.asyncio
async def test_broken_frames(env: Env) -> None:
    srv, _ = env
    path = "/api.app.v1.AppService/Version"
    truncated = struct.pack(">?I", False, 50) + b"\x0a\x01"
    for body, want in [
        (truncated, Status.INVALID_ARGUMENT),  # length prefix promises more than arrives
        (b"\x00\x00", Status.INVALID_ARGUMENT),  # not even a whole prefix
        # flagged compressed, but the call names no grpc-encoding
        (struct.pack(">?I", True, 2) + b"\x0a\x00", Status.INVALID_ARGUMENT),
        (b"", Status.INVALID_ARGUMENT),  # no message
        (frame(b"\x0a\x00"), Status.OK),
    ]:
        status, message = await h2_call(srv.port, path, body)
        assert status == str(want.value), (body, message)


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, wire: int, payload: bytes | int) -> bytes:
    key = _varint(num << 3 | wire)
    if wire == 0:
        assert isinstance(payload, int)
        return key + _varint(payload)
    assert isinstance(payload, bytes)
    return key + _varint(len(payload)) + payload


@pytest.mark.asyncio
async def test_no_caller_input_gets_internal_or_unknown(env: Env) -> None:
    """Random and boundary bodies for every RPC: answers, never INTERNAL/UNKNOWN."""
    srv, jd = env
    n = await add_node(jd, 1, labels=[lbl("env", "x")])
    await propose(jd, n.id)
    rng = random.Random(1234)
    samples: list[bytes] = [
        b"",
        _field(1, 2, b""),
        _field(1, 2, b"\x00"),
        _field(1, 2, n.id.encode()),
        _field(1, 2, b"x" * 20_000),
        _field(1, 0, 2**64 - 1),
        _field(2, 0, 2**63),
        _field(3, 0, 2**31),
        _field(2, 2, b"\x00\x00"),
        _field(3, 2, _field(2, 0, 77) + _field(1, 2, b"env")),  # selector, unknown op
        _field(1, 2, _field(2, 0, 99)),  # filter.enabled = 99
        _field(1, 2, _field(3, 2, _field(1, 2, b"env") + _field(2, 0, 2**40))),
        _field(9, 5, b"\x00\x00\x00\x00"),
        _field(2, 2, spec().encode())
        + _field(1, 2, n.id.encode())
        + b"".join(_field(3, 2, _field(1, 2, f"k{i}".encode())) for i in range(2000)),
    ]
    samples += [rng.randbytes(rng.randint(1, 64)) for _ in range(8)]
    bad: list[tuple[str, bytes, Status, str | None]] = []
    for path in METHODS:
        if path.endswith("/Watch"):
            continue
        for body in samples:
            status, message = await raw_call(srv.port, path, body)
            if status in (Status.INTERNAL, Status.UNKNOWN):
                bad.append((path, body[:40], status, message))
    assert not bad
    assert await jd.check_health() == Serving.SERVING


@pytest.mark.asyncio
async def test_boundary_values_get_sensible_answers(env: Env) -> None:
    _srv, jd = env
    most_labels = [lbl(f"k{i}", str(i)) for i in range(100)]  # the rulebook's caps
    n = await add_node(jd, 1, labels=most_labels)
    assert len(n.labels) == 100
    with pytest.raises(InvalidArgumentError, match="labels has more than 100 entries"):
        await add_node(jd, 3, labels=[*most_labels, lbl("k100")])
    sel = label.Selector(key="k99", op=label.SelectorOp.EQ, value="99")
    found = await jd.list_nodes(
        node.ListNodesRequest(filter=node.ListNodesRequestFilter(selectors=[sel] * 100))
    )
    assert [x.id for x in found.nodes] == [n.id]
    with pytest.raises(InvalidArgumentError, match="NUL"):
        await jd.register_node(node.RegisterNodeRequest(name="a\x00b", public_key=pubkey(2)))
    with pytest.raises(InvalidArgumentError, match="NUL"):
        await jd.get_node(node.GetNodeRequest(id="node_\x00"))
    big_spec = spec(extra="x = '" + "y" * 1_000_000 + "'\n")
    p = (await jd.propose_job(job.ProposeJobRequest(node_id=n.id, spec=big_spec))).proposal
    assert p is not None and len(p.spec) == len(big_spec)
    with pytest.raises(NotFoundError):
        await jd.update_job(job.UpdateJobRequest(id=p.job_id, rollback_policy_id=-(2**63)))
    weird = job.ListJobsRequestFilter(selectors=[label.Selector(key="", op=label.SelectorOp(7))])
    assert (await jd.list_jobs(job.ListJobsRequest(filter=weird))).jobs == []


@pytest.mark.asyncio
async def test_server_survives_abrupt_clients(env: Env) -> None:
    srv, jd = env
    for _ in range(5):
        _, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(range(256)))
        await writer.drain()
        writer.close()
    _, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.1)
    assert (await jd.version()).version == jdkit.__version__
    status, _ = await raw_call(
        srv.port, "/api.app.v1.AppService/Version", csa.GetKeypairRequest().SerializeToString()
    )
    assert status == Status.OK
