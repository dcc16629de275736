"""Certificates shaped like upstream's (Go wsrpc): serial 0, empty subject and
issuer, zero validity dates (0001-01-01). Some X.509 parsers refuse them;
only the key counts on this protocol, so both sides must take them."""

from __future__ import annotations

import asyncio
import ssl
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from jdkit._wsrpc._keys import ed25519_key_from_cert, public_hex
from jdkit._wsrpc._tls import ClientStream
from jdkit._wsrpc._ws import client_handshake
from jdkit.pb import node
from tests.helpers.wsrpc_helpers import jd_env


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        head = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        head = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + head + body


def go_style_cert(key: Ed25519PrivateKey) -> bytes:
    """DER of what Go's x509.CreateCertificate makes from a template with only
    SerialNumber = 0 (and upstream's ed25519 key)."""
    alg = _der(0x30, _der(0x06, bytes.fromhex("2b6570")))  # Ed25519
    zero_time = _der(0x18, b"00010101000000Z")  # GeneralizedTime, year 1
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    spki = _der(0x30, alg + _der(0x03, b"\x00" + pub))
    tbs = _der(
        0x30,
        _der(0xA0, _der(0x02, b"\x02"))  # version 3
        + _der(0x02, b"\x00")  # serial 0
        + alg
        + _der(0x30, b"")  # issuer: empty
        + _der(0x30, zero_time + zero_time)
        + _der(0x30, b"")  # subject: empty
        + spki,
    )
    return _der(0x30, tbs + alg + _der(0x03, b"\x00" + key.sign(tbs)))


def test_the_key_is_read_from_an_upstream_shaped_certificate() -> None:
    key = Ed25519PrivateKey.generate()
    assert ed25519_key_from_cert(go_style_cert(key)) == bytes.fromhex(public_hex(key))


@pytest.mark.asyncio
async def test_the_jd_accepts_a_node_presenting_an_upstream_shaped_certificate() -> None:
    key = Ed25519PrivateKey.generate()
    async with jd_env() as env:
        await env.jd.register_node(node.RegisterNodeRequest(name="go", public_key=public_hex(key)))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with tempfile.TemporaryDirectory() as tmp:
            cert = Path(tmp) / "cert.pem"
            cert.write_text(ssl.DER_cert_to_PEM_cert(go_style_cert(key)))
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            (Path(tmp) / "key.pem").write_bytes(pem)
            ctx.load_cert_chain(cert, Path(tmp) / "key.pem")
        host, port = env.srv.node_address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx)
        try:
            await client_handshake(ClientStream(reader, writer), host, int(port))
            assert len(env.srv.nodeport.connected) == 1
        finally:
            writer.close()
