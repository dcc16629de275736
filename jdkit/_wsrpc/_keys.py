"""ed25519 identities for wsrpc: keys, the self-signed certificate each side
presents, and reading a peer's key out of its certificate.

Only the key counts on this protocol (no names, CAs or dates). Upstream's
certificates use serial 0 and zero dates, which some X.509 parsers refuse, so
the peer key is read straight from the certificate's SubjectPublicKeyInfo
with a minimal DER walk instead of a full parse.
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from jdkit._exceptions import ConfigError

#: DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410): SEQ{SEQ{OID 1.3.101.112}, BIT STRING}
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")

NodeKeyLike = Ed25519PrivateKey | bytes | str | os.PathLike[str]
"""A node's ed25519 private key as `SimulatedNode(private_key=...)` takes it: the
key object, 32 (seed) or 64 raw bytes, hex, PEM, or the path of a file with hex or PEM."""


def public_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _from_text(text: str, field: str) -> Ed25519PrivateKey:
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(field, f"PEM private key does not load: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(field, f"is a {type(key).__name__}, not an ed25519 key")
        return key
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise ConfigError(
            field, "is neither hex (32-byte seed or 64-byte seed+public key) nor PEM"
        ) from None
    return _from_bytes(raw, field)


def _from_bytes(raw: bytes, field: str) -> Ed25519PrivateKey:
    if len(raw) == 64:
        # Go's ed25519.PrivateKey: seed followed by the public key
        key = Ed25519PrivateKey.from_private_bytes(raw[:32])
        if not hmac.compare_digest(bytes.fromhex(public_hex(key)), raw[32:]):
            raise ConfigError(field, "64-byte key: its second half is not the seed's public key")
        return key
    if len(raw) != 32:
        raise ConfigError(field, f"an ed25519 private key is 32 bytes (or 64), got {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_private_key(key: NodeKeyLike | None, field: str = "private_key") -> Ed25519PrivateKey:
    """A key object, raw bytes (32-byte seed or Go's 64 bytes), hex of those,
    PEM text, or a path to a file holding hex or PEM. None makes a new key."""
    if key is None:
        return Ed25519PrivateKey.generate()
    if isinstance(key, Ed25519PrivateKey):
        return key
    if isinstance(key, bytes):
        return _from_bytes(key, field)
    if isinstance(key, os.PathLike):
        try:
            return _from_text(Path(key).read_text(), field)
        except OSError as exc:
            raise ConfigError(field, f"cannot read key file: {exc.strerror}") from None
    if isinstance(key, str):
        return _from_text(key, field)
    raise ConfigError(field, f"{type(key).__name__} is not an ed25519 private key")


def parse_public_hex(text: str, field: str) -> bytes:
    try:
        raw = bytes.fromhex(text.strip().removeprefix("0x"))
    except (ValueError, AttributeError):
        raise ConfigError(field, "is not hex (64 hex characters of an ed25519 key)") from None
    if len(raw) != 32:
        raise ConfigError(field, f"an ed25519 public key is 32 bytes, got {len(raw)}")
    return raw


def self_signed_cert(key: Ed25519PrivateKey) -> x509.Certificate:
    """The certificate this side presents: only its key matters to the peer."""
    now = dt.datetime.now(dt.UTC)
    empty = x509.Name([])
    return (
        x509.CertificateBuilder()
        .subject_name(empty)
        .issuer_name(empty)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, None)
    )


# ----------------------------------------------------- minimal DER walk


def _tlv(der: bytes, i: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the element at `i`."""
    if i + 2 > len(der):
        raise ValueError("truncated DER")
    tag, first = der[i], der[i + 1]
    i += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or i + n > len(der):
            raise ValueError("bad DER length")
        length = int.from_bytes(der[i : i + n], "big")
        i += n
    if i + length > len(der):
        raise ValueError("truncated DER")
    return tag, i, i + length


def spki_from_cert(der: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of a DER certificate."""
    tag, start, _ = _tlv(der, 0)  # Certificate
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, i, tbs_end = _tlv(der, start)  # tbsCertificate
    if tag != 0x30:
        raise ValueError("not a certificate")
    if der[i] == 0xA0:  # [0] version
        i = _tlv(der, i)[2]
    for _ in range(5):  # serial, signature, issuer, validity, subject
        i = _tlv(der, i)[2]
    tag, _, e = _tlv(der, i)
    if tag != 0x30 or e > tbs_end:
        raise ValueError("certificate has no SubjectPublicKeyInfo")
    return der[i:e]


def ed25519_key_from_spki(spki: bytes) -> bytes | None:
    """The raw 32-byte key, or None when the SPKI is not ed25519."""
    if len(spki) == 44 and spki.startswith(ED25519_SPKI_PREFIX):
        return spki[12:]
    return None


def ed25519_key_from_cert(der: bytes) -> bytes | None:
    try:
        return ed25519_key_from_spki(spki_from_cert(der))
    except ValueError:
        return None


def same_key(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
