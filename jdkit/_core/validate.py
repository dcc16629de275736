"""What a request value must look like: caller mistakes become
INVALID_ARGUMENT with a message naming the field, never a server error."""

from __future__ import annotations

import json
import re
import tomllib
import uuid as _uuid
from collections.abc import Sequence

from jdkit._exceptions import InvalidArgumentError
from jdkit._proto.api.label import Label
from jdkit._proto.google.protobuf import Struct

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")

LabelPairs = list[tuple[str, str | None]]

# Caps on what one request may carry (INVALID_ARGUMENT naming the field and
# the limit). Generous for real deployments, tight enough that a request built
# to make the server work (300,000 labels fit in a 4 MiB message) is refused
# before it costs anything: the server counts repeated fields on the wire,
# before decoding (`jdkit._core.caps`), and these checks repeat it for the
# dry run and for strings.
#: labels in one request (a node's or a job's labels)
MAX_LABELS = 100
#: label selectors in one filter
MAX_SELECTORS = 100
#: ids in one list (BatchProposeJob node_ids, every List* filter)
MAX_IDS = 10_000
#: characters of a label key, and of a selector's key
MAX_LABEL_KEY = 256
#: characters of a label value
MAX_LABEL_VALUE = 4096
#: characters of a node name
MAX_NAME = 256
#: characters of an id (node, job, proposal, policy)
MAX_ID = 256
#: characters of a job spec (the 4 MiB message limit bounds its bytes)
MAX_SPEC = 1024 * 1024


def no_nul(value: str, field: str) -> str:
    """JD stores text in Postgres, which cannot hold NUL: refuse it up front."""
    if "\x00" in value:
        raise InvalidArgumentError(f"{field} contains NUL (\\x00); text values must not")
    return value


def at_most(value: str, limit: int, field: str) -> str:
    if len(value) > limit:
        raise InvalidArgumentError(f"{field} is {len(value)} characters long; the limit is {limit}")
    return value


def count_at_most(items: Sequence[object], limit: int, field: str) -> None:
    if len(items) > limit:
        raise InvalidArgumentError(f"{field} has {len(items)} entries; the limit is {limit}")


def required(value: str, field: str, limit: int = MAX_ID) -> str:
    if not value:
        raise InvalidArgumentError(f"{field} is required")
    return no_nul(at_most(value, limit, field), field)


def name(value: str, field: str = "name") -> str:
    return required(value, field, MAX_NAME)


def optional_name(value: str, field: str = "name") -> str:
    """A name that may be empty (UpdateNode: empty leaves it alone)."""
    return no_nul(at_most(value, MAX_NAME, field), field) if value else value


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
    count_at_most(items, MAX_LABELS, field)
    seen: set[str] = set()
    out: LabelPairs = []
    for i, lb in enumerate(items):
        if not lb.key:
            raise InvalidArgumentError(f"{field}[{i}].key is empty; every label needs a key")
        no_nul(at_most(lb.key, MAX_LABEL_KEY, f"{field}[{i}].key"), f"{field}[{i}].key")
        if lb.value is not None:
            at_most(lb.value, MAX_LABEL_VALUE, f"{field}[{i}].value")
            no_nul(lb.value, f"{field}[{i}].value")
        if lb.key in seen:
            raise InvalidArgumentError(f"{field}: key {lb.key!r} appears more than once")
        seen.add(lb.key)
        out.append((lb.key, lb.value))
    return out


def labels_json(pairs: LabelPairs) -> str:
    """The stored form of labels; equal labels in the same order give equal text."""
    return json.dumps([[k, v] for k, v in pairs])


#: Arrays and inline tables nested deeper than this are refused before parsing.
#: Real job specs nest a handful of levels; tomllib recurses per level and
#: would hit Python's recursion limit a few hundred levels down.
MAX_SPEC_NESTING = 64


def toml_nesting(text: str) -> int:
    """How deeply `[`/`{` nest outside strings and comments (a cheap upper
    bound of what the parser will recurse through; table headers count 1-2)."""
    depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            nl = text.find("\n", i)
            i = n if nl < 0 else nl
        elif c in "\"'":
            quote = c * 3 if text.startswith(c * 3, i) else c
            j = i + len(quote)
            while True:
                j = text.find(quote, j)
                if j < 0:
                    return deepest  # unterminated: the parser will say so
                if c == '"' and _escaped(text, j):
                    j += 1
                    continue
                break
            i = j + len(quote)
            continue
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth = max(depth - 1, 0)
        i += 1
    return deepest


def _escaped(text: str, j: int) -> bool:
    """Whether text[j] is preceded by an odd number of backslashes."""
    k = j
    while k > 0 and text[k - 1] == "\\":
        k -= 1
    return (j - k) % 2 == 1


def spec_external_job_id(spec: str, field: str = "spec") -> str:
    """The spec's `externalJobID`, as a canonical lower-case UUID."""
    at_most(spec, MAX_SPEC, field)
    if not spec.strip():
        raise InvalidArgumentError(
            f"{field} is empty; it must be a TOML job spec with externalJobID"
        )
    no_nul(spec, field)
    depth = toml_nesting(spec)
    if depth > MAX_SPEC_NESTING:
        raise InvalidArgumentError(
            f"{field} nests arrays or inline tables {depth} levels deep; "
            f"the limit is {MAX_SPEC_NESTING}"
        )
    try:
        doc = tomllib.loads(spec)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgumentError(f"{field} is not valid TOML: {_short(exc)}") from None
    except RecursionError:  # the pre-check should make this unreachable
        raise InvalidArgumentError(f"{field} nests too deeply to parse") from None
    except Exception as exc:  # any parser failure is the caller's input, not a server bug
        raise InvalidArgumentError(
            f"{field} could not be parsed as TOML ({type(exc).__name__}: {_short(exc)})"
        ) from None
    if "externalJobID" not in doc:
        raise InvalidArgumentError(
            f"{field} has no externalJobID; JD identifies a job by (externalJobID, node), "
            'so the spec needs e.g. externalJobID = "<uuid>" at top level'
        )
    raw = doc["externalJobID"]
    if not isinstance(raw, str):
        raise InvalidArgumentError(
            f"{field} externalJobID must be a UUID string, got TOML {type(raw).__name__}"
        )
    try:
        return str(_uuid.UUID(raw))
    except ValueError:
        raise InvalidArgumentError(f"{field} externalJobID {raw!r} is not a UUID") from None


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "…"


def external_job_id_or_none(spec: str) -> str | None:
    """For display (plan text): the externalJobID, or None when the spec has none."""
    try:
        return spec_external_job_id(spec)
    except InvalidArgumentError:
        return None


def normalise_uuid(value: str) -> str:
    """Canonical form when `value` is a UUID, else unchanged (it then matches nothing)."""
    try:
        return str(_uuid.UUID(value))
    except ValueError:
        return value


def policy_json(policy: Struct | None, field: str = "policy") -> str:
    """A rollback policy's stored form; an absent policy is `{}`."""
    if policy is None:
        return "{}"
    try:
        return json.dumps(policy.to_dict())
    except RecursionError:
        raise InvalidArgumentError(f"{field} nests too deeply") from None
    except (ValueError, TypeError, AssertionError, AttributeError) as exc:
        # AttributeError: a map entry whose Value is absent (betterproto2 gives None)
        raise InvalidArgumentError(
            f"{field} is not a valid google.protobuf.Struct: {exc}"
        ) from None


def policy_num(pid: str) -> int | None:
    """The number of a policy id; None for strings no policy can have."""
    if pid.isascii() and pid.isdigit() and len(pid) < 19 and str(int(pid)) == pid:
        return int(pid)
    return None
