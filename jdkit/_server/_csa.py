"""JD's CSA keypair: created once, private half sealed with the start-up secret.

The private key is encrypted with AES-256-GCM under a key derived from the
secret by scrypt (fresh salt per key), with the public key as associated data
so a sealed blob cannot be moved to another public key. Plaintext private key
bytes exist only transiently inside `create` and `verify`; nothing here is
logged or returned to callers; `unseal` hands the key object to the node
port's TLS context only.
"""

from __future__ import annotations

import base64
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from jdkit._exceptions import ConfigError

#: The dev/test secret, used only when an embedded server is started without
#: one (and never by `EmbeddedJD.from_env`, the production-shaped entry).
#: Anyone can read it here, so a key sealed with it is not protected.
DEV_CSA_SECRET = "jdkit-embedded-dev-only-csa-secret-not-for-production"
"""The published secret a server without one seals its CSA key with: for tests only."""

_N, _R, _P = 2**14, 8, 1


def _kdf(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(secret.encode())


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def create(secret: str) -> tuple[str, str]:
    """A new keypair: (public key hex, sealed private key as text)."""
    key = Ed25519PrivateKey.generate()
    public_hex = (
        key.public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        .hex()
    )
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    salt, nonce = os.urandom(16), os.urandom(12)
    ct = AESGCM(_kdf(secret, salt, _N, _R, _P)).encrypt(nonce, raw, public_hex.encode())
    sealed = json.dumps(
        {
            "v": 1,
            "kdf": "scrypt",
            "n": _N,
            "r": _R,
            "p": _P,
            "salt": _b64(salt),
            "nonce": _b64(nonce),
            "ct": _b64(ct),
        }
    )
    return public_hex, sealed


def verify(secret: str, public_hex: str, sealed: str) -> None:
    """Check that `secret` opens the sealed key and that it matches `public_hex`.

    Raises ConfigError naming `csa_secret` otherwise: a server must refuse to
    start rather than silently mint a new key nodes do not trust.
    """
    unseal(secret, public_hex, sealed)


def unseal(secret: str, public_hex: str, sealed: str) -> Ed25519PrivateKey:
    """The CSA private key, for the node port's TLS only (where the JD proves
    it holds the key nodes pin); raises ConfigError like `verify`."""
    try:
        box = json.loads(sealed)
        key = _kdf(secret, base64.b64decode(box["salt"]), box["n"], box["r"], box["p"])
        raw = AESGCM(key).decrypt(
            base64.b64decode(box["nonce"]), base64.b64decode(box["ct"]), public_hex.encode()
        )
    except InvalidTag:
        raise ConfigError(
            "csa_secret",
            "does not decrypt the CSA private key stored in this database; start the "
            "server with the secret it was first started with (CSA_KEY_ENCRYPTION_SECRET)",
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError("csa_secret", f"the stored CSA key is unreadable: {exc}") from None
    priv = Ed25519PrivateKey.from_private_bytes(raw)
    derived = (
        priv.public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        .hex()
    )
    if derived != public_hex:
        raise ConfigError("csa_secret", "the stored CSA private key does not match its public key")
    return priv
