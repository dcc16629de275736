"""Request validation shared by the RPC handlers: caller mistakes become
INVALID_ARGUMENT with a message naming the field, never a server error."""

from __future__ import annotations

import re
import tomllib
import uuid as _uuid
from collections.abc import Sequence

from jdkit._exceptions import InvalidArgumentError
from jdkit._proto.api.label import Label

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")

LabelPairs = list[tuple[str, str | None]]


def public_key(value: str, field: str = "public_key") -> str:
    """A node CSA public key: hex of a 32-byte ed25519 key, normalised to lower case."""
    if not value:
        raise InvalidArgumentError(
            f"{field} is required (hex of the node's 32-byte ed25519 CSA key)"
        )
    if not _HEX64.fullmatch(value):
        what = f"{len(value)} characters" if len(value) != 64 else "non-hex characters"
        raise InvalidArgumentError(
            f"{field} must be 64 hex characters (a 32-byte ed25519 key); got {what}"
        )
    return value.lower()


def labels(items: Sequence[Label], field: str = "labels") -> LabelPairs:
    """Labels as (key, value) pairs in the caller's order.

    Keys must be non-empty and unique: selectors treat labels as a map, and
    silently keeping one of two values for a key would hide the mistake.
    """
    seen: set[str] = set()
    out: LabelPairs = []
    for i, lb in enumerate(items):
        if not lb.key:
            raise InvalidArgumentError(f"{field}[{i}].key is empty; every label needs a key")
        if lb.key in seen:
            raise InvalidArgumentError(f"{field}: key {lb.key!r} appears more than once")
        seen.add(lb.key)
        out.append((lb.key, lb.value))
    return out


def spec_external_job_id(spec: str) -> str:
    """The spec's `externalJobID`, as a canonical lower-case UUID."""
    if not spec.strip():
        raise InvalidArgumentError("spec is empty; it must be a TOML job spec with externalJobID")
    try:
        doc = tomllib.loads(spec)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgumentError(f"spec is not valid TOML: {exc}") from None
    if "externalJobID" not in doc:
        raise InvalidArgumentError(
            "spec has no externalJobID; JD identifies a job by (externalJobID, node), "
            'so the spec needs e.g. externalJobID = "<uuid>" at top level'
        )
    raw = doc["externalJobID"]
    if not isinstance(raw, str):
        raise InvalidArgumentError(
            f"spec externalJobID must be a UUID string, got TOML {type(raw).__name__}"
        )
    try:
        return str(_uuid.UUID(raw))
    except ValueError:
        raise InvalidArgumentError(f"spec externalJobID {raw!r} is not a UUID") from None


def normalise_uuid(value: str) -> str:
    """Canonical form when `value` is a UUID, else unchanged (it then matches nothing)."""
    try:
        return str(_uuid.UUID(value))
    except ValueError:
        return value
