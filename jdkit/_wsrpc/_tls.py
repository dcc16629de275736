"""TLS 1.3 with pinned ed25519 keys, both roles.

Client (node) role: the standard `ssl` module can present a certificate,
skip chain verification and hand us the peer certificate, which is all the
node needs; the JD's key is compared right after the handshake, before any
byte is sent.

Server (JD) role: `ssl` cannot. It has no verify callback, and when a client
certificate is requested it rejects every self-signed one, which is all
wsrpc nodes have. pyOpenSSL exposes OpenSSL's verify callback, so the JD
accepts exactly the registered node keys during the handshake (an unknown key
fails the handshake, as upstream's does); it runs over memory BIOs so the
TLS bytes go through an ordinary asyncio stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import ssl
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

try:  # the JD's (server) role only, `node` extra; a node (client) needs stdlib ssl alone
    from OpenSSL import SSL, crypto
except ModuleNotFoundError as exc:
    _missing: ModuleNotFoundError | None = exc
else:
    _missing = None

from jdkit._wsrpc._keys import ed25519_key_from_spki, self_signed_cert

READ_CHUNK = 256 * 1024


# ---------------------------------------------------------------- client


def client_context(key: Ed25519PrivateKey) -> ssl.SSLContext:
    """TLS 1.3 only, our self-signed certificate, no chain verification
    (the caller checks the pinned JD key right after the handshake)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # load_cert_chain reads files only. On Linux they are memory-only files
    # (memfd: never on disk, gone when closed a moment later) and the key is
    # plain there. Elsewhere they go to a private temporary folder removed
    # right after, the key encrypted under a one-time password held only in
    # memory (that costs ~25 ms of key derivation per node, which is why
    # Linux skips it: a 1,000-node fleet would spend 25 s on it).
    cert_pem = self_signed_cert(key).public_bytes(serialization.Encoding.PEM)
    memfd = hasattr(os, "memfd_create") and Path("/proc/self/fd").is_dir()
    password = None if memfd else secrets.token_bytes(32)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption(),
    )
    with _files(memfd, cert_pem, key_pem) as (cert_path, key_path):
        ctx.load_cert_chain(cert_path, key_path, password=password)
    return ctx


@contextlib.contextmanager
def _files(memfd: bool, *blobs: bytes) -> Iterator[list[str]]:
    if memfd:
        fds = [os.memfd_create("jdkit-node-tls", 0) for _ in blobs]
        try:
            for fd, data in zip(fds, blobs, strict=True):
                os.write(fd, data)
            yield [f"/proc/self/fd/{fd}" for fd in fds]
        finally:
            for fd in fds:
                os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="jdkit-node-") as tmp:
        paths = []
        for i, data in enumerate(blobs):
            path = Path(tmp) / f"{i}.pem"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            paths.append(str(path))
        yield paths


# ---------------------------------------------------------------- server


def server_context(key: Ed25519PrivateKey, allowed: Callable[[bytes], bool]) -> SSL.Context:
    """TLS 1.3 only; our certificate from `key`; a client certificate is
    required and accepted only when `allowed(raw 32-byte ed25519 key)`."""
    if _missing is not None:
        raise ImportError(
            f"the JD's node port needs the `node` extra: pip install 'jdkit[node]' ({_missing})"
        ) from _missing
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_3_VERSION)
    ctx.use_certificate(self_signed_cert(key))
    ctx.use_privatekey(key)
    ctx.check_privatekey()
    ctx.set_options(SSL.OP_NO_TICKET)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)

    def verify(conn: SSL.Connection, cert: crypto.X509, err: int, depth: int, ok: int) -> bool:
        # Chain errors (self-signed, zero dates, ...) are expected: only the key counts.
        if depth != 0:
            return False  # the peer must send exactly one certificate
        raw = peer_key_of(cert)
        return raw is not None and allowed(raw)

    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, verify)
    return ctx


def peer_key_of(cert: crypto.X509) -> bytes | None:
    try:
        spki = crypto.dump_publickey(crypto.FILETYPE_ASN1, cert.get_pubkey())
    except (crypto.Error, ValueError, TypeError):
        return None
    return ed25519_key_from_spki(spki)


class TLSHandshakeError(ConnectionError):
    pass


class ServerTLSStream:
    """pyOpenSSL server-side TLS over an asyncio stream (memory BIOs)."""

    def __init__(
        self, ctx: SSL.Context, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._conn = SSL.Connection(ctx, None)
        self._conn.set_accept_state()
        self._reader = reader
        self._writer = writer
        self._eof = False

    def _pump_out(self) -> None:
        while True:
            try:
                out = self._conn.bio_read(READ_CHUNK)
            except SSL.WantReadError:
                return
            if not out:
                return
            self._writer.write(out)

    async def _pump_in(self) -> bool:
        data = await self._reader.read(READ_CHUNK)
        if not data:
            self._eof = True
            return False
        self._conn.bio_write(data)
        return True

    async def handshake(self) -> None:
        while True:
            try:
                self._conn.do_handshake()
            except SSL.WantReadError:
                self._pump_out()
                await self._writer.drain()
                if not await self._pump_in():
                    raise TLSHandshakeError("peer closed during the TLS handshake") from None
                continue
            except SSL.Error as exc:
                # send our alert so the client learns why (e.g. bad certificate)
                self._pump_out()
                with contextlib.suppress(ConnectionError, OSError):
                    await asyncio.wait_for(self._writer.drain(), 1.0)
                raise TLSHandshakeError(f"TLS handshake failed: {_ssl_reason(exc)}") from None
            self._pump_out()
            await self._writer.drain()
            return

    def peer_key(self) -> bytes | None:
        cert = self._conn.get_peer_certificate()
        if cert is None:
            return None
        chain = self._conn.get_peer_cert_chain() or []
        if len(chain) > 1:  # the server side's chain includes the leaf (OpenSSL 3+)
            return None
        return peer_key_of(cert)

    async def read(self) -> bytes:
        while True:
            try:
                return self._conn.recv(READ_CHUNK)
            except SSL.WantReadError:
                pass
            except SSL.ZeroReturnError:
                return b""
            except SSL.SysCallError:
                return b""
            except SSL.Error as exc:
                raise ConnectionError(f"TLS error: {_ssl_reason(exc)}") from None
            self._pump_out()
            if self._eof or not await self._pump_in():
                return b""

    def write(self, data: bytes) -> None:
        try:
            self._conn.sendall(data)
        except SSL.Error as exc:
            raise ConnectionError(f"TLS error: {_ssl_reason(exc)}") from None
        self._pump_out()

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        if not self._writer.is_closing():
            with contextlib.suppress(SSL.Error):
                self._conn.shutdown()
                self._pump_out()
            self._writer.close()


def _ssl_reason(exc: SSL.Error) -> str:
    try:
        parts = [p[2] for p in exc.args[0] if isinstance(p, tuple) and len(p) >= 3]
    except (IndexError, TypeError):
        parts = []
    return ", ".join(str(p) for p in parts) or repr(exc)


class ClientStream:
    """asyncio's TLS stream, shaped as a `ByteStream`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self) -> bytes:
        return await self._reader.read(READ_CHUNK)

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()
