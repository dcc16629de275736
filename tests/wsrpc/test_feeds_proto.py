"""The node-facing protos (proto/orchestrator/feedsmanager, proto/wsrpc) are
the published contract `feeds-v1.desc`, field by field."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
FILES = ["orchestrator/feedsmanager/feedsmanager.proto", "wsrpc/message.proto"]
REFERENCE = next(
    (
        p
        for p in (
            Path(os.environ.get("JD_FEEDS_DESC", "/nonexistent")),
            ROOT.parent / "shared" / "jd-api" / "feeds-v1.desc",
            Path("/work/shared/jd-api/feeds-v1.desc"),
        )
        if p.exists()
    ),
    None,
)


@pytest.fixture(scope="module")
def descs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    if REFERENCE is None:
        if os.environ.get("CI"):
            pytest.fail("shared/jd-api/feeds-v1.desc not found beside the checkout")
        pytest.skip("reference feeds-v1.desc is not available")
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("feeds") / "ours.desc"
    include = Path(protoc.__file__).parent / "_proto"
    rc = protoc.main(
        [
            "protoc",
            f"-I{ROOT / 'proto'}",
            f"-I{include}",
            f"--descriptor_set_out={out}",
            "--include_imports",
            *FILES,
        ]
    )
    assert rc == 0
    ours = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    ref = descriptor_pb2.FileDescriptorSet.FromString(REFERENCE.read_bytes())
    return {f.name: f for f in ours.file}, {f.name: f for f in ref.file}


def _fields(m: Any, prefix: str = "") -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    name = f"{prefix}{m.name}"
    for f in m.field:
        out[f"{name}.{f.name}"] = (
            f.number,
            f.type,
            f.label,
            f.type_name,
            f.json_name,
            f.HasField("oneof_index") and m.oneof_decl[f.oneof_index].name,
            f.proto3_optional,
        )
    out[f"{name} (message)"] = (
        [f.name for f in m.field],
        [o.name for o in m.oneof_decl],
        m.options.map_entry,
    )
    for n in m.nested_type:
        out.update(_fields(n, f"{name}."))
    for e in m.enum_type:
        out[f"{name}.{e.name} (enum)"] = tuple((v.name, v.number) for v in e.value)
    return out


def _facts(fd: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "package": fd.package,
        "syntax": fd.syntax,
        "dependency": list(fd.dependency),
        "go_package": fd.options.go_package,
        "message order": [m.name for m in fd.message_type],
    }
    for m in fd.message_type:
        out.update(_fields(m))
    for e in fd.enum_type:
        out[f"{e.name} (enum)"] = tuple((v.name, v.number) for v in e.value)
    for s in fd.service:
        out[f"service {s.name}"] = tuple(
            (m.name, m.input_type, m.output_type, m.client_streaming, m.server_streaming)
            for m in s.method
        )
    return out


@pytest.mark.parametrize("name", FILES)
def test_every_field_matches_the_reference(
    descs: tuple[dict[str, Any], dict[str, Any]], name: str
) -> None:
    ours, ref = descs
    a, b = _facts(ours[name]), _facts(ref[name])
    assert sorted(a) == sorted(b), f"{name}: different set of names"
    for key in b:
        assert a[key] == b[key], f"{name}: {key} differs"


@pytest.mark.parametrize("name", FILES)
def test_whole_descriptor_matches(descs: tuple[dict[str, Any], dict[str, Any]], name: str) -> None:
    ours, ref = descs
    a = descriptor_pb2.FileDescriptorProto()
    a.CopyFrom(ours[name])
    a.ClearField("source_code_info")
    assert a == ref[name]


def test_reference_has_nothing_we_lack(descs: tuple[dict[str, Any], dict[str, Any]]) -> None:
    ours, ref = descs
    assert set(ref) <= set(ours)
