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


@dataclass(frozen=True)
class _ChainConfigTypes:
    """One runtime's classes for a ChainConfig, so both builders below share a
    recipe and each runtime still builds its message with its own constructors."""

    chain_config: Any
    chain: Any
    evm: Any
    flux_monitor: Any
    ocr1: tuple[Any, Any, Any]  # config, P2P key bundle, OCR key bundle
    ocr2: tuple[Any, Any, Any]
    plugins: Any


_PB2_TYPES = _ChainConfigTypes(
    node_pb2.ChainConfig,
    node_pb2.Chain,
    node_pb2.CHAIN_TYPE_EVM,
    node_pb2.FluxMonitorConfig,
    (node_pb2.OCR1Config, node_pb2.OCR1Config.P2PKeyBundle, node_pb2.OCR1Config.OCRKeyBundle),
    (node_pb2.OCR2Config, node_pb2.OCR2Config.P2PKeyBundle, node_pb2.OCR2Config.OCRKeyBundle),
    node_pb2.OCR2Config.Plugins,
)
_BP_TYPES = _ChainConfigTypes(
    node.ChainConfig,
    node.Chain,
    node.ChainType.EVM,
    node.FluxMonitorConfig,
    (node.Ocr1Config, node.Ocr1ConfigP2PKeyBundle, node.Ocr1ConfigOcrKeyBundle),
    (node.Ocr2Config, node.Ocr2ConfigP2PKeyBundle, node.Ocr2ConfigOcrKeyBundle),
    node.Ocr2ConfigPlugins,
)


def _ocr_config(
    classes: tuple[Any, Any, Any], n: int, peer_key: str, keys: dict[str, str], **more: Any
) -> Any:
    """OCR`n`'s config: the fields OCR1 and OCR2 share, numbered `n`, plus `more`."""
    config, p2p_bundle, ocr_bundle = classes
    return config(
        enabled=True,
        is_bootstrap=n == 1,
        p2p_key_bundle=p2p_bundle(peer_id=f"p2p_{n}", public_key=peer_key),
        ocr_key_bundle=ocr_bundle(
            bundle_id=f"b{n}",
            config_public_key=f"c{n}",
            offchain_public_key=f"o{n}",
            onchain_signing_address=f"s{n}",
            **keys,
        ),
        multiaddr=f"/ip4/127.0.0.1/tcp/{n}",
        **more,
    )


def _chain_config(t: _ChainConfigTypes, node_id: str, chain_id: str) -> Any:
    return t.chain_config(
        chain=t.chain(id=chain_id, type=t.evm),
        account_address="0xabc",
        admin_address="0xdef",
        flux_monitor_config=t.flux_monitor(enabled=True),
        ocr1_config=_ocr_config(t.ocr1, 1, "aa", {}),
        ocr2_config=_ocr_config(
            t.ocr2,
            2,
            "bb",
            {"onchain_signing_pub_key": "k2"},
            plugins=t.plugins(
                commit=True, execute=True, median=True, mercury=True, rebalancer=True
            ),
            forwarder_address="0xf0",
        ),
        account_address_public_key="0xpub",
        node_id=node_id,
    )


def chain_config_pb2(node_id: str, chain_id: str = "11155111") -> Any:
    """A ChainConfig with every field set (grpcio types)."""
    return _chain_config(_PB2_TYPES, node_id, chain_id)


def chain_config_bp(node_id: str, chain_id: str = "11155111") -> node.ChainConfig:
    """The same ChainConfig, built with betterproto2 types."""
    config: node.ChainConfig = _chain_config(_BP_TYPES, node_id, chain_id)
    return config


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
