"""The fast codec against its references, on random messages of every type.

betterproto2 is the reference for objects (`decode(cls, b)` must equal
`cls.parse(b)` field by field, unknown fields and enum classes included) and
for bytes (`encode(m)` must equal `bytes(m)`, or fail the same way); the
official protobuf runtime (upb, via grpcio-tools stubs built from proto/)
is the reference that the bytes mean what proto/ says.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import random
import struct
from typing import Any

import betterproto2 as bp
import pytest
from google.protobuf import descriptor_pool, message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jdkit._codec import DecodeError, decode, encode
from jdkit._codec._generated import DECODERS
from jdkit._core.wire import WireError
from jdkit._core.wire import check as check_wire
from jdkit._methods import METHODS
from jdkit._proto.message_pool import default_message_pool
from tests.helpers.grpcio import stubs

#: every request and response type of the API (nested types come along inside)
CLASSES = sorted(
    {t for m in METHODS.values() for t in (m.request, m.response)},
    key=lambda c: f"{c.__module__}.{c.__name__}",
)
IDS = [f"{c.__module__.removeprefix('jdkit._proto.')}.{c.__name__}" for c in CLASSES]
EXAMPLES = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

INT_RANGES = {
    bp.TYPE_INT32: (-(2**31), 2**31 - 1),
    bp.TYPE_SINT32: (-(2**31), 2**31 - 1),
    bp.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    bp.TYPE_INT64: (-(2**63), 2**63 - 1),
    bp.TYPE_SINT64: (-(2**63), 2**63 - 1),
    bp.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    bp.TYPE_UINT32: (0, 2**32 - 1),
    bp.TYPE_FIXED32: (0, 2**32 - 1),
    bp.TYPE_UINT64: (0, 2**64 - 1),
    bp.TYPE_FIXED64: (0, 2**64 - 1),
}

MIN_TS = dt.datetime(1, 1, 2)
MAX_TS = dt.datetime(9999, 12, 30)


# ------------------------------------------------------------ strategies


def _varint(n: int) -> bytes:
    return bp.encode_varint(n)


def unknown_fields(cls: Any) -> st.SearchStrategy[bytes]:
    """Valid wire bytes for field numbers the message does not declare."""
    used = set(cls._betterproto.field_name_by_number)
    free = [n for n in (*range(1, 20), 100, 2047, 2**29 - 1) if n not in used]
    one = st.tuples(st.sampled_from(free), st.sampled_from([0, 1, 2, 5]), st.data()).map(
        lambda t: t
    )

    def field(t: tuple[int, int, Any]) -> st.SearchStrategy[bytes]:
        number, wire, _ = t
        key = _varint(number << 3 | wire)
        if wire == 0:
            return st.integers(0, 2**64 - 1).map(lambda v: key + _varint(v))
        if wire == 1:
            return st.binary(min_size=8, max_size=8).map(lambda v: key + v)
        if wire == 5:
            return st.binary(min_size=4, max_size=4).map(lambda v: key + v)
        return st.binary(max_size=12).map(lambda v: key + _varint(len(v)) + v)

    return st.lists(one.flatmap(field), max_size=2).map(b"".join)


def scalar(proto_type: str, field_cls: Any) -> st.SearchStrategy[Any]:
    if proto_type in INT_RANGES:
        lo, hi = INT_RANGES[proto_type]
        return st.one_of(st.integers(lo, hi), st.sampled_from([0, 1, lo, hi]))
    if proto_type == bp.TYPE_BOOL:
        return st.booleans()
    if proto_type == bp.TYPE_FLOAT:
        return st.floats(width=32, allow_nan=False)
    if proto_type == bp.TYPE_DOUBLE:
        return st.floats(allow_nan=False)
    if proto_type == bp.TYPE_STRING:
        return st.one_of(st.text(max_size=8), st.text(min_size=120, max_size=300))
    if proto_type == bp.TYPE_BYTES:
        return st.binary(max_size=200)
    if proto_type == bp.TYPE_ENUM:
        # proto3 enums are open: values the enum does not name must survive too
        return st.one_of(
            st.sampled_from(list(field_cls)), st.integers(-(2**31), 2**31 - 1).map(field_cls)
        )
    raise AssertionError(proto_type)


def timestamps() -> st.SearchStrategy[dt.datetime]:
    zones = st.one_of(
        st.just(dt.UTC),
        st.integers(-23 * 60, 23 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m))),
    )
    return st.datetimes(min_value=MIN_TS, max_value=MAX_TS, timezones=zones)


def value_of(meta: Any, field_cls: Any, depth: int) -> st.SearchStrategy[Any]:
    if meta.proto_type == bp.TYPE_MESSAGE:
        if meta.unwrap is not None:
            assert meta.unwrap().__name__ == "Timestamp"
            return timestamps()
        return messages(field_cls, depth - 1)
    return scalar(meta.proto_type, field_cls)


@st.composite
def _message(draw: st.DrawFn, cls: Any, depth: int) -> bp.Message:
    by_field = cls._betterproto.cls_by_field
    kwargs: dict[str, Any] = {}
    groups: dict[str, list[str]] = {}
    for f in dataclasses.fields(cls):
        meta = bp.FieldMetadata.get(f)
        if meta.group:
            groups.setdefault(meta.group, []).append(f.name)
    # one member of each oneof at most: protobuf keeps only the last one
    chosen = {g: draw(st.sampled_from([None, *names])) for g, names in groups.items()}
    for f in dataclasses.fields(cls):
        meta = bp.FieldMetadata.get(f)
        fcls: Any = by_field.get(f.name)
        nested = meta.proto_type == bp.TYPE_MESSAGE and meta.unwrap is None
        if meta.group and chosen[meta.group] != f.name:
            continue
        if nested and depth <= 0 and not meta.group:
            continue
        if meta.map_meta:
            kmeta, vmeta = meta.map_meta
            vcls = by_field[f"{f.name}.value"]
            if vmeta.proto_type == bp.TYPE_MESSAGE and depth <= 0:
                continue
            kwargs[f.name] = draw(
                st.dictionaries(
                    scalar(kmeta.proto_type, None),
                    value_of(vmeta, vcls, depth),
                    max_size=3,
                )
            )
        elif meta.repeated:
            kwargs[f.name] = draw(st.lists(value_of(meta, fcls, depth), max_size=3))
        elif meta.optional or meta.group or nested:
            if nested and depth <= 0:
                kwargs[f.name] = fcls()  # an empty message still counts as set
            else:
                kwargs[f.name] = draw(st.one_of(st.none(), value_of(meta, fcls, depth)))
        else:
            kwargs[f.name] = draw(value_of(meta, fcls, depth))
    msg: bp.Message = cls(**kwargs)
    msg._unknown_fields = draw(unknown_fields(cls))
    return msg


def messages(cls: Any, depth: int = 3) -> st.SearchStrategy[bp.Message]:
    return _message(cls, depth)


# ------------------------------------------------------------ comparison


def assert_same(a: Any, b: Any, path: str = "") -> None:
    """Equal as betterproto2's `==`, plus what `==` does not look at: the
    classes of every value, enum names, unknown fields, float bits."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, bp.Message):
        assert vars(a).keys() == vars(b).keys(), path
        for f in dataclasses.fields(a):  # type: ignore[arg-type]
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
        assert a._unknown_fields == b._unknown_fields, f"{path}: unknown fields differ"
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))
    elif isinstance(a, bp.Enum):
        assert (int(a), a.name) == (int(b), b.name), path
    else:
        assert a == b, path
        if isinstance(a, dt.datetime):
            assert a.tzinfo == b.tzinfo, path


# ------------------------------------------------------------ protobuf side


def _load_pb2() -> None:
    for name in (
        "v1.node.node_pb2",
        "v1.job.job_pb2",
        "v1.csa.csa_pb2",
        "v1.app.app_pb2",
        "v1.probation.probation_pb2",
        "v1.shared.ptypes.label_pb2",
        "jdhealth.health_pb2",
    ):
        stubs(name)


def pb_class(cls: type[bp.Message]) -> Any:
    _load_pb2()
    full = default_message_pool.type_to_url[cls].removeprefix("type.googleapis.com/")
    desc = descriptor_pool.Default().FindMessageTypeByName(full)
    return message_factory.GetMessageClass(desc)


# ------------------------------------------------------------ properties


def _split(raw: bytes) -> list[bytes]:
    """Top-level fields of a well-formed encoding, as raw byte strings."""
    out, i = [], 0
    while i < len(raw):
        start = i
        key, i = bp.decode_varint(raw, i)
        wire = key & 7
        if wire == 0:
            _, i = bp.decode_varint(raw, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            n, i = bp.decode_varint(raw, i)
            i += n
        out.append(raw[start:i])
    return out


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
@EXAMPLES
@given(data=st.data())
def test_fast_codec_equals_the_references(cls: type[bp.Message], data: st.DataObject) -> None:
    msg = data.draw(messages(cls))
    try:
        raw = bytes(msg)
    except Exception as exc:  # e.g. a datetime whose UTC instant is before year 1
        with pytest.raises(type(exc)):
            encode(msg)
        return
    # encode: betterproto2's bytes exactly
    assert encode(msg) == raw
    # decode: betterproto2's objects exactly
    assert_same(decode(cls, raw), cls.parse(raw))
    # protobuf reads the bytes as the same message: what it writes back decodes alike
    again = pb_class(cls).FromString(raw).SerializeToString()
    got = decode(cls, again)
    assert_same(got, cls.parse(again))
    assert got == cls.parse(raw)
    # valid but not canonical: fields shuffled, some sent twice (the last one wins)
    fields = _split(raw)
    rnd = random.Random(data.draw(st.integers(0, 2**32)))
    fields += [f for f in fields if rnd.random() < 0.3]
    rnd.shuffle(fields)
    shuffled = b"".join(fields)
    assert_same(decode(cls, shuffled), cls.parse(shuffled))


def _mutations(raw: bytes) -> st.SearchStrategy[bytes]:
    cut = st.integers(0, max(len(raw) - 1, 0)).map(lambda n: raw[:n])
    flip = st.tuples(st.integers(0, max(len(raw) - 1, 0)), st.integers(0, 255)).map(
        lambda t: raw[: t[0]] + bytes([t[1]]) + raw[t[0] + 1 :] if raw else raw
    )
    return st.one_of(cut, flip, st.binary(max_size=64), st.just(raw + b"\x80"))


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
@EXAMPLES
@given(data=st.data())
def test_malformed_bytes_raise_or_equal_the_reference(
    cls: type[bp.Message], data: st.DataObject
) -> None:
    raw = data.draw(messages(cls, depth=2).map(bytes).flatmap(_mutations))
    try:
        got = decode(cls, raw)
    except DecodeError:
        # refused: then the strict wire check or betterproto2 itself refuses too
        try:
            check_wire(raw, cls)
            cls.parse(raw)
        except (WireError, Exception):
            return
        raise AssertionError(f"fast path refused bytes the wire check accepts: {raw!r}") from None
    assert_same(got, cls.parse(raw))


# ------------------------------------------------------------ examples


def test_large_repeated_fields() -> None:
    from jdkit.pb import job, label, node

    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    nodes = node.ListNodesResponse(
        nodes=[
            node.Node(
                id=f"node_{i}",
                name=f"n{i}" * (i % 50),
                public_key=f"{i:064x}",
                is_enabled=bool(i % 2),
                labels=[
                    label.Label(key=f"k{j}", value=None if j == 3 else str(i)) for j in range(5)
                ],
                created_at=t0 + dt.timedelta(microseconds=i * 7919),
                updated_at=t0 + dt.timedelta(seconds=i),
                workflow_key="" if i % 3 else None,
            )
            for i in range(1500)
        ],
        total_count=1500,
    )
    batch = job.BatchProposeJobRequest(
        node_ids=[f"node_{i}" for i in range(10_000)], spec="x" * 100_000
    )
    for msg in (nodes, batch, node.ListNodesResponse(), job.ListJobsResponse(jobs=[])):
        raw = bytes(msg)
        assert encode(msg) == raw
        assert_same(decode(type(msg), raw), type(msg).parse(raw))


def test_unknown_enum_values_and_unset_optionals() -> None:
    from jdkit.pb import job

    pb2 = stubs("v1.job.job_pb2")
    raw = pb2.Proposal(status=99, delivery_status=-5).SerializeToString()
    got = decode(job.Proposal, raw)
    assert_same(got, job.Proposal.parse(raw))
    assert (int(got.status), got.status.name) == (99, "")
    assert type(got.status) is job.ProposalStatus
    assert got.acked_at is None and got.response_received_at is None
    assert decode(job.Proposal, b"").status is job.ProposalStatus.UNSPECIFIED


def test_struct_values_nest() -> None:
    from jdkit.pb import probation, protobuf

    policy = protobuf.Struct.from_dict(
        {"a": [1.5, "x", None, True, {"b": {"c": []}}], "d": {}, "e": -0.0}
    )
    msg = probation.RollbackPolicy(id="p", policy=policy)
    raw = bytes(msg)
    assert encode(msg) == raw
    assert_same(decode(probation.RollbackPolicy, raw), probation.RollbackPolicy.parse(raw))


@pytest.mark.parametrize(
    "raw",
    [
        b"\x0a\x05abc",  # length runs past the end
        b"\x0a",  # key without its value
        b"\x08\x01",  # field 1 (a string) sent as a varint
        b"\x0b\x0c",  # a group
        b"\x00\x00",  # field number 0
        b"\x0a\x02\xff\xfe",  # not UTF-8
        b"\x3a\x0b\x08" + b"\xff" * 10,  # an 11-byte varint inside a Timestamp
        b"\x3a\x0a\x08" + b"\x80" * 8 + b"\x40",  # Timestamp 2**62 s: past year 9999
    ],
)
def test_malformed_examples_are_decode_errors(raw: bytes) -> None:
    from jdkit.pb import node

    with pytest.raises(DecodeError):
        decode(node.Node, raw)


ALL_GENERATED = sorted(DECODERS, key=lambda c: f"{c.__module__}.{c.__name__}")


@pytest.mark.parametrize(
    "cls",
    ALL_GENERATED,
    ids=[f"{c.__module__.removeprefix('jdkit._proto.')}.{c.__name__}" for c in ALL_GENERATED],
)
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_generated_codec_matches_betterproto2(cls: Any, data: st.DataObject) -> None:
    # beyond the API's request/response types: every nested type on its own
    msg = data.draw(messages(cls, depth=2))
    try:
        raw = bytes(msg)
    except Exception as exc:
        with pytest.raises(type(exc)):
            encode(msg)
        return
    assert encode(msg) == raw
    assert_same(decode(cls, raw), cls.parse(raw))
