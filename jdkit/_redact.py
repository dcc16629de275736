"""Keep live secrets out of every log record, other libraries' records included.

jdkit's own log calls never carry secrets, but the libraries under it do once
an application turns DEBUG logging on:

- `hpack` logs each header it encodes or decodes, the `authorization` value
  among them: in clear (grpclib turns off h2's never-indexed marking of that
  header) and Huffman-coded inside the raw header block it also logs;
- `botocore` logs Cognito's InitiateAuth parameters (PASSWORD, SECRET_HASH,
  REFRESH_TOKEN) and its response body (AccessToken, IdToken, RefreshToken).

So the token sources in `jdkit.auth` `register()` each secret they hold or
receive, client options register the values of credential-like metadata
keys (`register_metadata`: `authorization`, `*token*`, `*api-key*`, ...),
and the first registration installs a log-record factory (chaining whatever
factory was set before) that replaces every registered secret with
`[redacted]` in each record's message and traceback text. A secret is matched
in the forms it takes in those logs: as is, inside a Python `repr()` of str or
bytes, JSON-escaped (and that inside a bytes repr), URL-encoded, and for header
values the HPACK Huffman coding of `<prefix><secret>`.

Cost: nothing until a secret is registered, and nothing for records no logger
is enabled for (the factory only runs for records that are made). Otherwise
each record's message is rendered once and searched for the registered forms;
it is only rewritten (`msg` = redacted text, `args` = ()) when one was found.

Limits: the registry keeps the `MAX_ENTRIES` most recently registered or used
secrets (tokens in use are re-registered on every call, so they stay); strings
shorter than `MIN_LENGTH` are not registered (redacting them would mangle every
log line); attributes added through `extra=` are not searched; a record made
without the factory (`logging.makeLogRecord`, records from another process)
is not seen; a factory installed later *without* chaining ours disables this.
Nothing is forgotten explicitly: `aclose()` does not end a source (it must
keep working), and a replaced token stays valid, maybe in flight, until it
expires; the LRU bound is what keeps the registry small.

Marking `authorization` never-indexed in HPACK is not possible through
grpclib (it turns off h2's outbound header normalisation and rebuilds the
metadata as plain tuples), and would not suffice: hpack still logs the raw
header block and, when decoding, the value in clear.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "MAX_ENTRIES",
    "MIN_LENGTH",
    "REDACTED",
    "SecretRegistry",
    "is_sensitive_key",
    "redact_url",
    "register",
    "register_metadata",
    "scrub",
]

REDACTED = "[redacted]"
#: Registered secrets (with their header prefix) kept, least recently used dropped first.
MAX_ENTRIES = 256
#: Shorter strings are not registered.
MIN_LENGTH = 4

RecordFactory = Callable[..., logging.LogRecord]


def _str_reprs(text: str) -> set[str]:
    """`text` as it shows inside a str repr, for either quote character Python picks."""
    forms = {repr('"' + text)[2:-1]}  # has a `"`: single-quoted, `'` escaped
    if '"' not in text:
        forms.add(repr("'" + text)[2:-1])  # double-quoted, `'` as is
    return forms


def _bytes_reprs(data: bytes) -> set[str]:
    """`data` as it shows inside a bytes repr, for either quote character."""
    forms = {repr(b'"' + data)[3:-1]}
    if b'"' not in data:
        forms.add(repr(b"'" + data)[3:-1])
    return forms


def _huffman(data: bytes) -> bytes | None:
    """HPACK's Huffman coding of a header value, as hpack writes (and logs) it."""
    try:
        from hpack.huffman import HuffmanEncoder
        from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
    except ImportError:  # pragma: no cover - hpack comes with grpclib's h2
        return None
    return HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode(data)


def forms_of(secret: str, header_prefix: str | None = None) -> frozenset[str]:
    """The strings a log line could show `secret` as (see the module docstring)."""
    texts = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        urllib.parse.quote_plus(secret),
        urllib.parse.quote(secret, safe=""),
    }
    forms: set[str] = set()
    for text in texts:
        forms.add(text)
        forms |= _str_reprs(text)
        forms |= _bytes_reprs(text.encode("utf-8", "backslashreplace"))
    if header_prefix is not None:
        coded = _huffman((header_prefix + secret).encode("utf-8", "backslashreplace"))
        if coded:
            forms |= _bytes_reprs(coded)
    return frozenset(f for f in forms if len(f) >= MIN_LENGTH and f not in REDACTED)


class SecretRegistry:
    """A bounded, thread-safe set of secrets and the forms to redact them in.

    `patterns` is an immutable snapshot (longest first) that readers use
    without locking.
    """

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str | None], frozenset[str]] = OrderedDict()
        self.patterns: tuple[str, ...] = ()
        #: Bumped on every new entry: a secret registered at generation g has not
        #: moved towards eviction while the generation is still g, so a caller
        #: that re-registers per use (to stay recently used) may skip it until then.
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"SecretRegistry(<{len(self._entries)} redacted>, max_entries={self.max_entries})"

    def register(self, secrets: Iterable[str | None], header_prefix: str | None = None) -> None:
        """Add `secrets` (or mark them recently used).

        `header_prefix` (None: not a header value; "" for a whole header
        value) also adds the HPACK Huffman form of prefix+secret.
        """
        for secret in secrets:
            if not isinstance(secret, str) or len(secret) < MIN_LENGTH:
                continue
            key = (secret, header_prefix)
            with self._lock:
                if key in self._entries:
                    self._entries.move_to_end(key)
                    continue
            forms = forms_of(secret, header_prefix)  # outside the lock: Huffman is slow-ish
            with self._lock:
                self._entries[key] = forms
                self._entries.move_to_end(key)
                self.generation += 1
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
                union: set[str] = set()
                for f in self._entries.values():
                    union |= f
                self.patterns = tuple(sorted(union, key=len, reverse=True))

    def __contains__(self, secret: object) -> bool:
        with self._lock:
            return any(key[0] == secret for key in self._entries)

    def redact(self, text: str) -> str:
        """`text` with every registered form replaced (the same object if none occurs)."""
        for form in self.patterns:
            if form in text:
                text = text.replace(form, REDACTED)
        return text


def scrub_record(record: logging.LogRecord, registry: SecretRegistry) -> None:
    """Redact `record`'s message and traceback text in place, if they hold a secret."""
    try:
        message = record.getMessage()
    except Exception:
        return  # a broken format: leave it to logging's own error report
    redacted = registry.redact(message)
    if redacted is not message:
        record.msg, record.args = redacted, ()
    if record.exc_info and record.exc_info[0] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        redacted = registry.redact(text)
        if redacted is not text:
            # Formatters print exc_text as is; dropping exc_info keeps handlers
            # that format the exception themselves from printing the secret.
            record.exc_text, record.exc_info = redacted, None


def _header_name(header: object) -> str:
    name = header[0] if isinstance(header, tuple) and header else header
    if isinstance(name, bytes):
        return name.decode("latin-1")
    return name if isinstance(name, str) else ""


def _masked(value: object) -> str:
    """`Bearer [redacted]` for `Bearer X`: the scheme stays readable."""
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    text = text.strip("'\"") if not isinstance(value, bytes) else text
    scheme, sep, _ = text.partition(" ")
    return f"{scheme} {REDACTED}" if sep and scheme.isalpha() else REDACTED


def scrub_hpack(record: logging.LogRecord) -> None:
    """Redact credentials from hpack's DEBUG records, registered or not.

    A server logs a caller's header block before any verifier has seen (and
    registered) the token in it, so hpack's records cannot rely on the
    registry: raw header blocks are shown by size only, and decoded or added
    headers whose name carries a credential lose their value.
    """
    args = record.args
    if not isinstance(args, tuple) or not args:
        return
    msg = str(record.msg)
    if msg.startswith(("Decoding %s", "Encoded header block to %s")):
        block = args[0]
        size = len(block) if isinstance(block, (bytes, bytearray, memoryview)) else 0
        record.args = (f"<{size} bytes of header block>", *args[1:])
    elif msg.startswith("Decoded %s") and is_sensitive_key(_header_name(args[0])):
        header = args[0]
        value = header[1] if isinstance(header, tuple) and len(header) > 1 else ""
        record.args = ((_header_name(header), _masked(value)), *args[1:])
    elif (
        msg.startswith("Adding %s=%s") and len(args) > 1 and is_sensitive_key(_header_name(args[0]))
    ):
        record.args = (args[0], _masked(args[1]), *args[2:])


def make_factory(previous: RecordFactory, registry: SecretRegistry) -> RecordFactory:
    """A record factory: `previous`'s record, scrubbed when `registry` is non-empty."""

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.name.startswith("hpack"):
            scrub_hpack(record)
        if registry.patterns:
            scrub_record(record, registry)
        return record

    return factory


_registry = SecretRegistry()
_install_lock = threading.Lock()
_installed = False


def install() -> None:
    """Install the redacting record factory once, chaining the current one."""
    global _installed
    if _installed:
        return
    with _install_lock:
        if not _installed:
            logging.setLogRecordFactory(make_factory(logging.getLogRecordFactory(), _registry))
            _installed = True


def register(*secrets: str | None, header_prefix: str | None = None) -> None:
    """Redact these secrets from all log records from now on (Nones and short strings skipped).

    `header_prefix` (e.g. "Bearer ", or "" when the secret is a whole header
    value) also covers the HPACK-coded header value prefix+secret.
    Registering a known secret again marks it recently used.
    """
    _registry.register(secrets, header_prefix)
    if not _installed and len(_registry):
        install()


def generation() -> int:
    """The global registry's generation (see `SecretRegistry.generation`)."""
    return _registry.generation


def scrub(text: str, *secrets: str | None, placeholder: str = REDACTED) -> str:
    """`text` with each secret replaced in every form `forms_of` knows.

    The one helper for error messages (which never reach the log factory
    unformatted): an endpoint that echoes a request may echo a secret raw,
    URL-encoded, JSON-escaped or inside a repr. Secrets shorter than
    `MIN_LENGTH` are replaced only as they are.
    """
    forms: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        forms.add(secret)
        if len(secret) >= MIN_LENGTH:
            forms |= forms_of(secret)
    for form in sorted(forms, key=len, reverse=True):
        if form in text:
            text = text.replace(form, placeholder)
    return text


#: Substrings of a metadata key that mark its value as a credential.
#: Words naming a credential in a key, `_` and `-` alike: gRPC metadata keys
#: (`x-api-key`) and environment variable names (`EXTRA_TOKEN`, `DATABASE_URL`).
_SENSITIVE_PARTS = (
    "token",
    "secret",
    "password",
    "passwd",
    "api-key",
    "apikey",
    "cookie",
    "private-key",
    "database-url",
)


def is_sensitive_key(key: str) -> bool:
    """Whether a key names a credential: a gRPC metadata key (`authorization`,
    `x-api-key`, ...) or an environment variable (`DATABASE_URL`, `*_SECRET`, ...).

    The one such test: metadata values registered and shown as `[redacted]`,
    and the Docker provider's `jd_env` values masked in its errors.
    """
    key = key.lower().replace("_", "-")
    if key.endswith("authorization") or any(part in key for part in _SENSITIVE_PARTS):
        return True
    # a name ending in a `key` or `credential(s)` word (`SIGNING_KEY`,
    # `x-hmac-key`): more often a secret than not, and masking a harmless value
    # costs less than logging a secret one
    return key.rsplit("-", 1)[-1] in ("key", "credential", "credentials")


def register_metadata(metadata: Mapping[str, Any] | None) -> None:
    """Register the values of `metadata`'s credential keys (see `is_sensitive_key`).

    hpack logs every header it sends, so a token given as plain metadata
    (`metadata={"authorization": "Bearer X"}`) needs the same treatment as
    one from a token source: the value in the forms a log shows it in, and
    for `scheme credential` values the credential alone too.
    """
    if not metadata:
        return
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str) or not is_sensitive_key(key):
            continue
        register(value, header_prefix="")
        scheme, sep, credential = value.partition(" ")
        if sep and scheme and credential.strip():
            register(credential, header_prefix=scheme + sep)


def redact_url(url: str, *, keep_user: bool = True) -> str:
    """The URL with any password replaced by `[redacted]`, for logs, reprs and
    errors; with `keep_user=False` the whole user part too (where a token may
    be given as a bare user name)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if "@" not in parts.netloc:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    if keep_user:
        if parts.password is None:
            return url
        userinfo = (parts.username or "") + ":" + REDACTED
    else:
        userinfo = REDACTED
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))
