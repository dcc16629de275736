"""The node protocol's bytes against Google's protobuf runtime.

grpcio-tools compiles the project's feeds and envelope protos; hypothesis
builds messages; what the official runtime encodes, jdkit's strict decoder
accepts and reads to the same values, and what jdkit encodes, the official
runtime parses back. Truncated encodings are refused, never half-read.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from grpc_tools import protoc
from hypothesis import given, settings
from hypothesis import strategies as st

from jdkit._core.wire import WireError
from jdkit._proto import cfm
from jdkit._proto.message import Message
from jdkit._wsrpc._strict import decode

ROOT = Path(__file__).resolve().parents[2]


def _official() -> tuple[ModuleType, ModuleType]:
    out = Path(tempfile.mkdtemp(prefix="jdkit-feeds-pb-"))
    include = str(Path(protoc.__file__).parent / "_proto")
    files = ["orchestrator/feedsmanager/feedsmanager.proto", "wsrpc/message.proto"]
    rc = protoc.main(
        ["protoc", f"-I{ROOT / 'proto'}", f"-I{include}", f"--python_out={out}", *files]
    )
    assert rc == 0
    for d in (out / "orchestrator", out / "orchestrator" / "feedsmanager", out / "wsrpc"):
        (d / "__init__.py").touch()
    sys.path.insert(0, str(out))
    try:
        return (
            importlib.import_module("orchestrator.feedsmanager.feedsmanager_pb2"),
            importlib.import_module("wsrpc.message_pb2"),
        )
    finally:
        sys.path.remove(str(out))


FM, MSG = _official()

text = st.text(max_size=12)
i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
chain_type = st.integers(min_value=0, max_value=9)


@st.composite
def update_node(draw: Any) -> dict[str, Any]:
    configs = []
    for _ in range(draw(st.integers(0, 3))):
        cfg: dict[str, Any] = {
            "chain": {"id": draw(text), "type": draw(chain_type)},
            "account_address": draw(text),
        }
        if draw(st.booleans()):
            cfg["ocr2_config"] = {
                "enabled": draw(st.booleans()),
                "p2p_key_bundle": {"peer_id": draw(text), "public_key": draw(text)},
                "plugins": {"median": draw(st.booleans()), "mercury": draw(st.booleans())},
            }
            if draw(st.booleans()):
                cfg["ocr2_config"]["forwarder_address"] = draw(text)
        if draw(st.booleans()):
            cfg["account_address_public_key"] = draw(text)
        configs.append(cfg)
    out: dict[str, Any] = {
        "job_types": draw(st.lists(st.integers(0, 3), max_size=4)),
        "chain_id": draw(i64),
        "chain_ids": draw(st.lists(i64, max_size=3)),
        "version": draw(text),
        "chain_configs": configs,
        "p2p_key_bundles": [
            {"peer_id": draw(text), "public_key": draw(text)}
            for _ in range(draw(st.integers(0, 2)))
        ],
        "nop_friendly_name": draw(text),
    }
    if draw(st.booleans()):
        out["workflow_key"] = draw(text)
    return out


def _official_msg(cls: Any, values: dict[str, Any]) -> Any:
    from google.protobuf import json_format

    return json_format.ParseDict(values, cls())


@settings(max_examples=150, deadline=None)
@given(update_node())
def test_official_encoding_decodes_to_the_same_values(values: dict[str, Any]) -> None:
    from google.protobuf import json_format

    official = _official_msg(FM.UpdateNodeRequest, values)
    ours = decode(official.SerializeToString(), cfm.UpdateNodeRequest)
    # and back: jdkit's encoding parses in the official runtime to an equal message
    again = FM.UpdateNodeRequest.FromString(bytes(ours))
    assert again == official
    assert json_format.MessageToDict(again, preserving_proto_field_name=True) == (
        json_format.MessageToDict(official, preserving_proto_field_name=True)
    )


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(text, text, max_size=4))
def test_map_of_messages(errors: dict[str, str]) -> None:
    official = FM.UpdateNodeResponse()
    for k, v in errors.items():
        official.chain_config_errors[k].message = v
    ours = decode(official.SerializeToString(), cfm.UpdateNodeResponse)
    assert {k: v.message for k, v in ours.chain_config_errors.items()} == errors
    assert FM.UpdateNodeResponse.FromString(bytes(ours)) == official


@settings(max_examples=150, deadline=None)
@given(text, text, st.binary(max_size=64), st.booleans(), text)
def test_envelope_both_ways(method: str, call_id: str, payload: bytes, req: bool, err: str) -> None:
    official = MSG.Message()
    if req:
        official.request.method, official.request.call_id = method, call_id
        official.request.payload = payload
    else:
        official.response.call_id, official.response.payload = call_id, payload
        official.response.error = err
    ours = decode(official.SerializeToString(), Message)
    if req:
        assert ours.request is not None
        assert (ours.request.method, ours.request.call_id, ours.request.payload) == (
            method,
            call_id,
            payload,
        )
    else:
        assert ours.response is not None
        assert (ours.response.call_id, ours.response.error) == (call_id, err)
    assert MSG.Message.FromString(bytes(ours)) == official


@settings(max_examples=100, deadline=None)
@given(update_node(), st.data())
def test_truncated_encodings_are_refused(values: dict[str, Any], data: Any) -> None:
    full = _official_msg(FM.UpdateNodeRequest, values).SerializeToString()
    if len(full) < 2:
        return
    cut = data.draw(st.integers(1, len(full) - 1))
    try:
        FM.UpdateNodeRequest.FromString(full[:cut])
        official_ok = True
    except Exception:
        official_ok = False
    if official_ok:
        # a cut at a field boundary is a valid (shorter) message for both
        decode(full[:cut], cfm.UpdateNodeRequest)
    else:
        with pytest.raises(WireError):
            decode(full[:cut], cfm.UpdateNodeRequest)


# Field number 0 inside a Timestamp (a wrapped type) or inside a map entry: the
# official runtime refuses both. The node side's own copy of the wire check did
# not look into either and let them through; the shared check does.
_TS_FIELD_ZERO = b"\x00\x01"
_ENTRY_FIELD_ZERO = b"\x0a\x01A" + b"\x00\x01"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("JobRunSummary", b"\x1a" + bytes([len(_TS_FIELD_ZERO)]) + _TS_FIELD_ZERO),
        ("UpdateNodeResponse", b"\x0a" + bytes([len(_ENTRY_FIELD_ZERO)]) + _ENTRY_FIELD_ZERO),
    ],
    ids=["in-a-timestamp", "in-a-map-entry"],
)
def test_field_number_zero_nested_in_a_wrapped_type_or_map_entry_is_refused(
    name: str, data: bytes
) -> None:
    from google.protobuf.message import DecodeError as OfficialDecodeError

    with pytest.raises(OfficialDecodeError):
        getattr(FM, name).FromString(data)
    with pytest.raises(WireError):
        decode(data, getattr(cfm, name))
