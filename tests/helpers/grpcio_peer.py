"""Google's grpcio as the client peer of jdkit's embedded JD (tests/interop).

Official stubs compiled from the project's own protos (`tests.helpers.grpcio`),
the `Peer` bundle of one stub per service, and message builders shared by the
per-service interop files and the wire-format checks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from grpc import aio

from jdkit._server import EmbeddedJD
from jdkit.pb import node
from tests.helpers.grpcio import stubs

node_pb2 = stubs("v1.node.node_pb2")
node_grpc = stubs("v1.node.node_pb2_grpc")
job_pb2 = stubs("v1.job.job_pb2")
job_grpc = stubs("v1.job.job_pb2_grpc")
csa_pb2 = stubs("v1.csa.csa_pb2")
csa_grpc = stubs("v1.csa.csa_pb2_grpc")
app_pb2 = stubs("v1.app.app_pb2")
app_grpc = stubs("v1.app.app_pb2_grpc")
probation_pb2 = stubs("v1.probation.probation_pb2")
probation_grpc = stubs("v1.probation.probation_pb2_grpc")
label_pb2 = stubs("v1.shared.ptypes.label_pb2")
health_pb2 = stubs("jdhealth.health_pb2")
health_grpc = stubs("jdhealth.health_pb2_grpc")

UTC = dt.UTC


def pubkey(i: int) -> str:
    return f"{0xC5A0000 + i:064x}"


def spec(ext_id: str, body: str = "") -> str:
    return f'type = "offchainreporting2"\nschemaVersion = 1\nexternalJobID = "{ext_id}"\n{body}'


def lbl(key: str, value: str | None = None) -> Any:
    return label_pb2.Label(key=key) if value is None else label_pb2.Label(key=key, value=value)


def sel(key: str, op: int, value: str | None = None) -> Any:
    s = label_pb2.Selector(key=key, op=op)
    if value is not None:
        s.value = value
    return s


def ts(seconds: int, micros: int = 0) -> Any:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=micros * 1000)


def when(seconds: int, micros: int = 0) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, UTC) + dt.timedelta(microseconds=micros)


async def status_of(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(aio.AioRpcError) as info:
        await call
    return info.value.code(), info.value.details() or ""


@dataclass
class Peer:
    """The embedded JD and an official grpcio client to it."""

    srv: EmbeddedJD
    channel: aio.Channel
    nodes: Any
    jobs: Any
    csa: Any
    app: Any
    policies: Any
    health: Any

    async def register(self, i: int, labels: list[Any] | None = None) -> Any:
        resp = await self.nodes.RegisterNode(
            node_pb2.RegisterNodeRequest(name=f"node-{i}", public_key=pubkey(i), labels=labels)
        )
        return resp.node

    async def propose(self, node_id: str, ext_id: str, labels: list[Any] | None = None) -> Any:
        resp = await self.jobs.ProposeJob(
            job_pb2.ProposeJobRequest(node_id=node_id, spec=spec(ext_id), labels=labels)
        )
        return resp.proposal


def rpc_paths(*, streaming: bool | None = None) -> list[str]:
    """Every method the compiled (official) descriptors declare, as wire paths."""
    out = []
    for mod in (node_pb2, job_pb2, csa_pb2, app_pb2, probation_pb2, health_pb2):
        for svc in mod.DESCRIPTOR.services_by_name.values():
            for m in svc.methods:
                if streaming is None or m.server_streaming == streaming:
                    out.append(f"/{svc.full_name}/{m.name}")
    return out


def chain_config_pb2(node_id: str, chain_id: str = "11155111") -> Any:
    """A ChainConfig with every field set (grpcio types)."""
    return node_pb2.ChainConfig(
        chain=node_pb2.Chain(id=chain_id, type=node_pb2.CHAIN_TYPE_EVM),
        account_address="0xabc",
        admin_address="0xdef",
        flux_monitor_config=node_pb2.FluxMonitorConfig(enabled=True),
        ocr1_config=node_pb2.OCR1Config(
            enabled=True,
            is_bootstrap=True,
            p2p_key_bundle=node_pb2.OCR1Config.P2PKeyBundle(peer_id="p2p_1", public_key="aa"),
            ocr_key_bundle=node_pb2.OCR1Config.OCRKeyBundle(
                bundle_id="b1",
                config_public_key="c1",
                offchain_public_key="o1",
                onchain_signing_address="s1",
            ),
            multiaddr="/ip4/127.0.0.1/tcp/1",
        ),
        ocr2_config=node_pb2.OCR2Config(
            enabled=True,
            is_bootstrap=False,
            p2p_key_bundle=node_pb2.OCR2Config.P2PKeyBundle(peer_id="p2p_2", public_key="bb"),
            ocr_key_bundle=node_pb2.OCR2Config.OCRKeyBundle(
                bundle_id="b2",
                config_public_key="c2",
                offchain_public_key="o2",
                onchain_signing_address="s2",
                onchain_signing_pub_key="k2",
            ),
            multiaddr="/ip4/127.0.0.1/tcp/2",
            plugins=node_pb2.OCR2Config.Plugins(
                commit=True, execute=True, median=True, mercury=True, rebalancer=True
            ),
            forwarder_address="0xf0",
        ),
        account_address_public_key="0xpub",
        node_id=node_id,
    )


def chain_config_bp(node_id: str, chain_id: str = "11155111") -> node.ChainConfig:
    """The same ChainConfig, built independently with betterproto2 types."""
    return node.ChainConfig(
        chain=node.Chain(id=chain_id, type=node.ChainType.EVM),
        account_address="0xabc",
        admin_address="0xdef",
        flux_monitor_config=node.FluxMonitorConfig(enabled=True),
        ocr1_config=node.Ocr1Config(
            enabled=True,
            is_bootstrap=True,
            p2p_key_bundle=node.Ocr1ConfigP2PKeyBundle(peer_id="p2p_1", public_key="aa"),
            ocr_key_bundle=node.Ocr1ConfigOcrKeyBundle(
                bundle_id="b1",
                config_public_key="c1",
                offchain_public_key="o1",
                onchain_signing_address="s1",
            ),
            multiaddr="/ip4/127.0.0.1/tcp/1",
        ),
        ocr2_config=node.Ocr2Config(
            enabled=True,
            is_bootstrap=False,
            p2p_key_bundle=node.Ocr2ConfigP2PKeyBundle(peer_id="p2p_2", public_key="bb"),
            ocr_key_bundle=node.Ocr2ConfigOcrKeyBundle(
                bundle_id="b2",
                config_public_key="c2",
                offchain_public_key="o2",
                onchain_signing_address="s2",
                onchain_signing_pub_key="k2",
            ),
            multiaddr="/ip4/127.0.0.1/tcp/2",
            plugins=node.Ocr2ConfigPlugins(
                commit=True, execute=True, median=True, mercury=True, rebalancer=True
            ),
            forwarder_address="0xf0",
        ),
        account_address_public_key="0xpub",
        node_id=node_id,
    )


NESTED_POLICY: dict[str, Any] = {
    "max_failures": 3,
    "window": "10m",
    "enabled": True,
    "disabled": False,
    "nothing": None,
    "ratio": -0.25,
    "huge": 1e300,
    "text": "ünïcode ☃",
    "empty_obj": {},
    "empty_list": [],
    "steps": [
        {"action": "pause", "for": 30, "when": {"errors": [">", 5]}},
        ["nested", ["deeper", None, True]],
        1.5,
    ],
}


def struct_of(d: dict[str, Any]) -> Any:
    s = struct_pb2.Struct()
    s.update(d)
    return s


def raw(channel: aio.Channel, path: str) -> Any:
    identity: Callable[[bytes], bytes] = lambda b: b  # noqa: E731
    return channel.unary_unary(path, request_serializer=identity, response_deserializer=identity)
