"""gRPC metadata as jdkit holds it: checked once against gRPC's rules, then read-only.

grpclib refuses, at send time, keys and values that HTTP/2 or gRPC reserve;
that surfaced as every call failing with an error that looked like the
server's answer. So metadata is checked where it is given (client options,
per-call options) with the same rules, as a `ConfigError` naming the key:

- keys: lower-case `0-9 a-z _ - .`, not `grpc-*`, `te`, `content-type` or
  `user-agent` (HTTP/2 pseudo-headers such as `:authority` fail the
  character rule);
- a key ending in `-bin` carries bytes; any other key printable ASCII text
  (no CR/LF, not empty).

Values never appear in messages: some are credentials.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from jdkit._exceptions import ConfigError
from jdkit._redact import REDACTED, is_sensitive_key

__all__ = ["Metadata", "check_metadata"]

_KEY_RE = re.compile(r"[0-9a-z_.\-]+")
_VALUE_RE = re.compile(r"[ !-~]+")  # what grpclib sends: space and printable ASCII
_RESERVED = frozenset({"te", "content-type", "user-agent"})


def check_metadata(name: str, metadata: object) -> None:
    """`metadata` is None or a mapping gRPC can send; else a ConfigError naming `name`."""
    if metadata is None:
        return
    if not isinstance(metadata, Mapping):
        raise ConfigError(name, f"expected a mapping of str to str, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise ConfigError(
                name, f"key {key!r}: keys are lower-case ASCII letters, digits and '_-.'"
            )
        if key in _RESERVED or key.startswith("grpc-"):
            raise ConfigError(name, f"key {key!r} is reserved by gRPC / HTTP/2")
        if key.endswith("-bin"):
            if not isinstance(value, bytes):
                raise ConfigError(
                    name,
                    f"value of {key!r}: a '-bin' key carries bytes, got {type(value).__name__}",
                )
        elif not isinstance(value, str):
            raise ConfigError(name, f"value of {key!r}: expected str, got {type(value).__name__}")
        elif not _VALUE_RE.fullmatch(value):
            raise ConfigError(
                name, f"value of {key!r} must be non-empty printable ASCII (no CR/LF)"
            )


class Metadata(Mapping[str, Any]):
    """A read-only, hashable mapping of metadata keys to values (`str`, or bytes
    for `-bin` keys); equal to a dict with the same items. Its repr hides the
    values of credential keys."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] = {}) -> None:
        check_metadata("metadata", items)
        self._items: dict[str, Any] = dict(items)

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._items == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        shown = {k: REDACTED if is_sensitive_key(k) else v for k, v in self._items.items()}
        return f"Metadata({shown!r})"
