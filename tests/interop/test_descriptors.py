"""Contract check: descriptors compiled from proto/ against the reference.

The reference is `jd-v1.desc`, which the wire contract ships.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from tests.helpers.paths import ROOT, jd_api

# the published contract: shared/ lies beside the checkout (CI copies it there)
REFERENCE_DESC = (
    Path(os.environ["JD_API_DESC"]) if "JD_API_DESC" in os.environ else jd_api("jd-v1.desc")
)


def _compile_descriptor_set(out: Path) -> Any:
    from grpc_tools import protoc

    include = Path(protoc.__file__).parent / "_proto"
    files = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    rc = protoc.main(
        [
            "protoc",
            f"-I{ROOT / 'proto'}",
            f"-I{include}",
            f"--descriptor_set_out={out}",
            "--include_imports",
            *files,
        ]
    )
    assert rc == 0, "protoc failed on proto/"
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


@pytest.fixture(scope="module")
def descriptor_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Any]:
    if not REFERENCE_DESC.exists():
        if os.environ.get("CI"):
            pytest.fail("shared/jd-api/jd-v1.desc not found beside the checkout (set JD_API_DESC)")
        pytest.skip(f"reference descriptor set {REFERENCE_DESC} is not available")
    ours = _compile_descriptor_set(tmp_path_factory.mktemp("desc") / "jdkit.desc")
    ref = descriptor_pb2.FileDescriptorSet.FromString(REFERENCE_DESC.read_bytes())
    return {f.name: f for f in ours.file}, {f.name: f for f in ref.file}


def _field_facts(f: Any) -> tuple[Any, ...]:
    return (
        f.name,
        f.number,
        f.type,
        f.label,
        f.type_name,
        f.json_name,
        f.HasField("oneof_index") and f.oneof_index,
        f.proto3_optional,
        f.default_value,
        f.extendee,
    )


def _enum_facts(e: Any) -> tuple[Any, ...]:
    return (e.name, tuple((v.name, v.number) for v in e.value))


def _message_facts(m: Any) -> tuple[Any, ...]:
    return (
        m.name,
        tuple(_field_facts(f) for f in m.field),
        tuple(o.name for o in m.oneof_decl),
        tuple(_message_facts(n) for n in m.nested_type),
        tuple(_enum_facts(e) for e in m.enum_type),
        m.options.map_entry,
        tuple((r.start, r.end) for r in m.reserved_range),
        tuple(m.reserved_name),
    )


def _file_facts(fd: Any) -> dict[str, Any]:
    return {
        "package": fd.package,
        "syntax": fd.syntax,
        "dependency": tuple(fd.dependency),
        "messages": tuple(_message_facts(m) for m in fd.message_type),
        "enums": tuple(_enum_facts(e) for e in fd.enum_type),
        "services": tuple(
            (
                s.name,
                tuple(
                    (m.name, m.input_type, m.output_type, m.client_streaming, m.server_streaming)
                    for m in s.method
                ),
            )
            for s in fd.service
        ),
    }


def test_descriptor_files_match_reference(descriptor_sets: tuple[dict[str, Any], Any]) -> None:
    ours, ref = descriptor_sets
    assert set(ref) <= set(ours), f"missing: {sorted(set(ref) - set(ours))}"
    # the one extra file is the standard health service, which the reference leaves out
    assert set(ours) - set(ref) == {
        "grpc/health/v1/health.proto",
        # the node-facing protocol, checked against feeds-v1.desc in tests/wsrpc
        "orchestrator/feedsmanager/feedsmanager.proto",
        "wsrpc/message.proto",
    }
    assert ours["grpc/health/v1/health.proto"].package == "grpc.health.v1"


@pytest.mark.parametrize(
    "name",
    [
        "v1/app/app.proto",
        "v1/csa/csa.proto",
        "v1/job/job.proto",
        "v1/node/node.proto",
        "v1/probation/probation.proto",
        "v1/shared/ptypes/label.proto",
        "google/protobuf/timestamp.proto",
        "google/protobuf/struct.proto",
    ],
)
def test_descriptor_wire_contract_identical(
    descriptor_sets: tuple[dict[str, Any], Any], name: str
) -> None:
    """Names, packages, messages, fields (number/type/label/type_name), oneofs,
    enum values, services and methods: everything that reaches the wire."""
    ours, ref = descriptor_sets
    a, b = _file_facts(ours[name]), _file_facts(ref[name])
    for key in b:
        assert a[key] == b[key], f"{name}: {key} differs"


def _normalised(fd: Any) -> Any:
    """The file descriptor without comments and without empty option messages
    (`rpc X(A) returns (B) {}` records an empty MethodOptions, `...;` none)."""
    out = descriptor_pb2.FileDescriptorProto()
    out.CopyFrom(fd)
    out.ClearField("source_code_info")
    for svc in out.service:
        for m in svc.method:
            if m.HasField("options") and m.options.ByteSize() == 0:
                m.ClearField("options")
    return out


def test_descriptor_options_identical(descriptor_sets: tuple[dict[str, Any], Any]) -> None:
    """Options too (go_package, deprecated on the uuid fields, map entries):
    the whole descriptor equals the reference, up to empty option messages."""
    ours, ref = descriptor_sets
    for name, fd in ref.items():
        assert _normalised(ours[name]) == _normalised(fd), name
        assert ours[name].options.go_package == fd.options.go_package


def test_descriptor_known_cosmetic_differences(
    descriptor_sets: tuple[dict[str, Any], Any],
) -> None:
    """Byte-for-byte the descriptors differ only where listed here (none affects the wire)."""
    ours, ref = descriptor_sets
    differing = set()
    for name, fd in ref.items():
        a = descriptor_pb2.FileDescriptorProto()
        a.CopyFrom(ours[name])
        a.ClearField("source_code_info")
        if a != fd:
            differing.add(name)
    # csa.proto declares `rpc ... {}` (empty MethodOptions); the reference has `rpc ...;`
    assert differing <= {"v1/csa/csa.proto"}
