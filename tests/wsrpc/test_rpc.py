"""The wsrpc RPC layer on its own: two endpoints joined by in-memory pipes
(the layer takes bytes and a send coroutine; no transport is involved)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jdkit._proto import cfm
from jdkit._proto.message import Message, Request, Response
from jdkit._wsrpc._errors import NodeNotConnectedError, WsrpcCallError, WsrpcTimeoutError
from jdkit._wsrpc._rpc import Endpoint, Handler, encode_request, handler, is_uuid4, new_call_id


class Pipe:
    """Records what an endpoint sends and forwards it to the peer (if any)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.peer: Endpoint | None = None

    async def send(self, data: bytes) -> None:
        self.sent.append(data)
        if self.peer is not None:
            self.peer.feed(data)


def pair(
    a_handlers: dict[str, Handler], b_handlers: dict[str, Handler]
) -> tuple[Endpoint, Endpoint, Pipe, Pipe]:
    pa, pb = Pipe(), Pipe()
    a = Endpoint(pa.send, a_handlers, name="a")
    b = Endpoint(pb.send, b_handlers, name="b")
    pa.peer, pb.peer = b, a
    return a, b, pa, pb


def served(fn: Callable[[Any], Awaitable[Any]], cls: type[Any]) -> dict[str, Handler]:
    return {"ProposeJob": handler(cls, fn)}


async def echo(req: cfm.ProposeJobRequest) -> cfm.ProposeJobResponse:
    return cfm.ProposeJobResponse(id=req.id + ":" + req.spec)


@pytest.mark.asyncio
async def test_calls_both_ways_on_one_connection() -> None:
    async def approved(req: cfm.ApprovedJobRequest) -> cfm.ApprovedJobResponse:
        assert (req.uuid, req.version) == ("u", 3)
        return cfm.ApprovedJobResponse()

    a, b, pa, _ = pair(
        {"ApprovedJob": handler(cfm.ApprovedJobRequest, approved)},
        served(echo, cfm.ProposeJobRequest),
    )
    got = await a.call(
        "ProposeJob", cfm.ProposeJobRequest(id="x", spec="s"), cfm.ProposeJobResponse, timeout=1
    )
    assert got.id == "x:s"
    await b.call(
        "ApprovedJob", cfm.ApprovedJobRequest(uuid="u", version=3), cfm.ApprovedJobResponse
    )
    # the envelope on the wire: a request with the bare method name and a UUIDv4 call id
    env = Message.parse(pa.sent[0])
    assert env.request is not None and env.request.method == "ProposeJob"
    assert uuid.UUID(env.request.call_id).version == 4


@pytest.mark.asyncio
async def test_error_travels_as_text_only() -> None:
    async def boom(req: cfm.ProposeJobRequest) -> cfm.ProposeJobResponse:
        raise ValueError("spec is not TOML")

    a, _, _, pb = pair({}, served(boom, cfm.ProposeJobRequest))
    with pytest.raises(WsrpcCallError) as info:
        await a.call("ProposeJob", cfm.ProposeJobRequest(id="x"), cfm.ProposeJobResponse)
    assert info.value.text == "spec is not TOML" and info.value.method == "ProposeJob"
    resp = Message.parse(pb.sent[0]).response
    assert resp is not None and resp.payload == b"" and resp.error == "spec is not TOML"


@pytest.mark.asyncio
async def test_unknown_method_gets_no_reply_and_the_call_times_out() -> None:
    a, b, _, pb = pair({}, served(echo, cfm.ProposeJobRequest))
    with pytest.raises(WsrpcTimeoutError, match=r"no answer within 0\.2s"):
        await a.call("Nope", cfm.HealthcheckRequest(), cfm.HealthcheckResponse, timeout=0.2)
    assert pb.sent == [] and b.dropped == 1


@pytest.mark.asyncio
async def test_undecodable_payload_gets_no_reply() -> None:
    _, b, _, pb = pair({}, served(echo, cfm.ProposeJobRequest))

    def strict(data: bytes) -> Any:
        raise ValueError("bad bytes")

    b._handlers["Strict"] = Handler(decode=strict, fn=echo)  # type: ignore[arg-type]
    b.feed(encode_request("Strict", new_call_id(), b"\xff\xff"))
    await asyncio.sleep(0.01)
    assert pb.sent == [] and b.dropped == 1


@pytest.mark.asyncio
async def test_requests_without_a_uuid4_call_id_are_dropped() -> None:
    _, b, _, pb = pair({}, served(echo, cfm.ProposeJobRequest))
    payload = bytes(cfm.ProposeJobRequest(id="x"))
    for bad in ["", "1", str(uuid.uuid1()), str(uuid.uuid5(uuid.NAMESPACE_DNS, "x")), "z" * 36]:
        b.feed(encode_request("ProposeJob", bad, payload))
    await asyncio.sleep(0.01)
    assert pb.sent == [] and b.dropped == 5
    good = new_call_id()
    b.feed(encode_request("ProposeJob", good, payload))
    await asyncio.sleep(0.01)
    resp = Message.parse(pb.sent[0]).response
    assert resp is not None and resp.call_id == good


@pytest.mark.asyncio
async def test_garbage_and_empty_envelopes_are_dropped() -> None:
    _, b, _, pb = pair({}, served(echo, cfm.ProposeJobRequest))
    for data in [b"", b"\x00\x01\x02", bytes(Message()), b"\x12\xff"]:
        b.feed(data)
    b.feed(bytes(Message(response=Response(call_id=new_call_id()))))  # answers no call
    await asyncio.sleep(0.01)
    assert pb.sent == [] and b.dropped == 5


@pytest.mark.asyncio
async def test_close_fails_pending_calls_at_once_and_later_calls_too() -> None:
    pa = Pipe()  # nobody answers
    a = Endpoint(pa.send, {})
    call = asyncio.ensure_future(
        a.call("ProposeJob", cfm.ProposeJobRequest(), cfm.ProposeJobResponse, timeout=30)
    )
    await asyncio.sleep(0.01)
    a.close()
    with pytest.raises(NodeNotConnectedError):
        await asyncio.wait_for(call, 1)
    with pytest.raises(NodeNotConnectedError):
        await a.call("ProposeJob", cfm.ProposeJobRequest(), cfm.ProposeJobResponse)


@pytest.mark.asyncio
async def test_concurrent_calls_are_matched_by_call_id() -> None:
    async def slow(req: cfm.ProposeJobRequest) -> cfm.ProposeJobResponse:
        await asyncio.sleep(0.05 * (3 - int(req.id)))
        return cfm.ProposeJobResponse(id=req.id)

    a, _, _, _ = pair({}, served(slow, cfm.ProposeJobRequest))
    got = await asyncio.gather(
        *(
            a.call("ProposeJob", cfm.ProposeJobRequest(id=str(i)), cfm.ProposeJobResponse)
            for i in range(3)
        )
    )
    assert [g.id for g in got] == ["0", "1", "2"]


@pytest.mark.asyncio
async def test_first_request_hook_sees_only_served_requests() -> None:
    seen: list[str] = []
    pb = Pipe()
    b = Endpoint(pb.send, served(echo, cfm.ProposeJobRequest), on_request=seen.append)
    b.feed(encode_request("Unknown", new_call_id(), b""))
    b.feed(encode_request("ProposeJob", "not-a-uuid", b""))
    assert seen == []
    b.feed(bytes(Message(request=Request(method="ProposeJob", call_id=new_call_id()))))
    assert seen == ["ProposeJob"]


@given(st.uuids())
def test_is_uuid4_matches_the_uuid_version(u: uuid.UUID) -> None:
    assert is_uuid4(str(u)) == (u.version == 4 and u.variant == uuid.RFC_4122)


@given(st.text(max_size=40))
def test_is_uuid4_never_raises(text: str) -> None:
    assert is_uuid4(text) in (True, False)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=200))
def test_feeding_random_bytes_never_raises_or_answers(data: bytes) -> None:
    sent: list[bytes] = []

    async def send(b: bytes) -> None:
        sent.append(b)

    async def run() -> None:
        ep = Endpoint(send, served(echo, cfm.ProposeJobRequest))
        ep.feed(data)
        await asyncio.sleep(0)

    asyncio.run(run())
    # random bytes only get an answer if they happen to be a valid request
    for out in sent:
        assert Message.parse(out).response is not None
