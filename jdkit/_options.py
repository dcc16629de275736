"""The one definition of a client's options, and the one place they are checked.

Every way to get a client (`JobDistributor.connect`, `jdkit.connect`, each
provider, `with_dry_run`, the testing factories, the CLI) takes a
`ClientOptions` and/or keywords naming its fields; keywords override the
object's fields (`options.replace(**keywords)`). The list of options is the
dataclass's fields and nothing else, so an option added here works everywhere:
its text form (`jdkit._option_text`: a parser in the field's metadata or by
its annotation) makes it `JD_<FIELD>` and the CLI's `--<field>` too.

An object remembers which fields were given (`given()`), a default given
explicitly included: those win over the environment (`from_env(**given)`),
rather than whichever happen to differ from the defaults. That record is part
of what an object means, so it takes part in `==` (`ClientOptions(timeout=30.0)`
is not `ClientOptions()`: under `JD_TIMEOUT` they connect differently), and
`dataclasses.replace`, which passes every field to the constructor and so
cannot say which it changed, is refused in favour of `options.replace()`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass, field
from typing import Any, Self

from jdkit import _exports
from jdkit._channel import Target, TLSConfig, parse_target
from jdkit._compression import ENCODINGS

# Imported at run time, not for type checkers only: a public dataclass's field
# types must resolve (`typing.get_type_hints`, pydantic) in its own module.
from jdkit._dryrun import Journal
from jdkit._exceptions import ConfigError
from jdkit._interceptors import Interceptor
from jdkit._metadata import Metadata, check_metadata
from jdkit._option_text import parse_flag, parse_metadata, parse_retry, text_fields
from jdkit._redact import register_metadata
from jdkit._retry import RetryPolicy
from jdkit._transport import DEFAULT_MAX_RECEIVE
from jdkit.auth import TokenManager, TokenSource

__all__ = ["DEFAULT_TIMEOUT", "TEXT_FIELDS", "ClientOptions", "check_metadata", "check_timeout"]

#: The default per-call deadline in seconds.
DEFAULT_TIMEOUT = 30.0

ENV_URL = "JD_GRPC_URL"


def check_timeout(name: str, timeout: object) -> None:
    """A deadline is None or a finite positive number of seconds."""
    ok = timeout is None or (
        isinstance(timeout, int | float)
        and not isinstance(timeout, bool)
        and math.isfinite(timeout)
        and timeout > 0
    )
    if not ok:
        raise ConfigError(
            name, f"must be a finite positive number of seconds or None, got {timeout!r}"
        )


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(name, f"expected True or False, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class ClientOptions:
    """How a client reaches a JD and treats each call; checked on construction.

    Build one and pass it around, or pass its fields as keywords; keywords
    win over an object's fields, and fields given win over the environment
    (`given()`); every field read from text is also `JD_<FIELD>` and `--<field>`
    in the CLI:

        opts = jdkit.ClientOptions(target="grpcs://jd.example.com", auth=source)
        jd = JobDistributor.connect(options=opts, timeout=5)

    `target` is `host:port`, `grpc://host:port` or `grpcs://host[:port]`
    (None: the provider decides, e.g. `jdkit.connect()` starts an embedded
    JD). `tls`: a `TLSConfig`, True for TLS with the system roots, False/None
    for plaintext unless the target says `grpcs://`. `timeout` is the default
    per-call deadline (None: none). `auth` is a token source (see
    `jdkit.auth`); bearer tokens are refused on a plaintext channel unless
    `allow_insecure_auth` is True (None, the default: the provider decides;
    only a provider that started the JD itself on loopback allows them).
    `interceptors` run between the deadline and dry-run, in the order given.
    `metadata` (a mapping, held read-only and hashable) is sent with every
    call, checked as gRPC sends it (lower-case token keys, none reserved;
    bytes for `-bin` keys, printable ASCII otherwise); the values of credential keys
    (`authorization`, or a key naming a token, secret, password, api-key or
    cookie) are treated as secrets: kept out of log records, and
    shown as `[redacted]` in this repr. `dry_run`: True, or a `Journal` to
    record into, gives a client whose writes are journaled instead of sent.

    Transport: `max_receive_message_size` (bytes, default 4 MiB as grpc-go's
    and grpcio's; None: no limit) refuses a larger reply before reading it,
    `max_send_message_size` (default None) a larger request before sending
    it; both as `ResourceExhaustedError`. A connection quiet for
    `keepalive_time` seconds is pinged before a call is sent on it, and one
    with calls in flight that often; no answer within `keepalive_timeout`
    closes it (None: no pings). `min_version`: the lowest JD version
    (`AppService/Version`) to accept, checked once before the first call.
    `tracing`: True (the global TracerProvider) or a TracerProvider gives one
    OpenTelemetry span per call (see `jdkit.otel`; needs `jdkit[otel]`).
    `compression` ("gzip" or "deflate"; default None) compresses requests of
    1 KiB or more and asks the server for compressed replies; compressed
    replies are decompressed within `max_receive_message_size`.
    """

    target: str | None = field(
        default=None, metadata={"env": ENV_URL, "help": "JD gRPC address (grpcs://host for TLS)"}
    )
    tls: TLSConfig | bool | None = None
    timeout: float | None = field(
        default=DEFAULT_TIMEOUT, metadata={"help": "per-call deadline in seconds (0: none)"}
    )
    retry: RetryPolicy | None = field(
        default=None,
        metadata={"text": parse_retry, "help": "attempts per call (off or 1: no retries)"},
    )
    # Fields holding the caller's objects (which may not be hashable) are left
    # out of the hash, so any options can be hashed; equality still compares them.
    auth: TokenSource | TokenManager | None = field(default=None, hash=False)
    allow_insecure_auth: bool | None = field(
        default=None, metadata={"help": "send tokens over plaintext (local testing only)"}
    )
    interceptors: Sequence[Interceptor] = field(default=(), hash=False)
    metadata: Mapping[str, str | bytes] | None = field(
        default=None,  # in the repr: Metadata's redacts credentials
        metadata={
            "text": parse_metadata,
            "multiple": True,
            "help": "sent with every call (repeat the flag; comma-separate in the variable)",
        },
    )
    dry_run: bool | Journal = field(default=False, hash=False, metadata={"text": None})
    max_receive_message_size: int | None = field(
        default=DEFAULT_MAX_RECEIVE,
        metadata={"help": "largest reply read, in bytes (e.g. 16MiB; none: no limit)"},
    )
    max_send_message_size: int | None = field(
        default=None, metadata={"help": "largest request sent, in bytes (none: no limit)"}
    )
    keepalive_time: float | None = field(
        default=30.0, metadata={"help": "seconds of quiet before a ping (0: no pings)"}
    )
    keepalive_timeout: float = field(
        default=10.0, metadata={"help": "seconds to wait for a ping's answer"}
    )
    min_version: str | None = field(
        default=None,
        metadata={"help": "lowest JD version to accept (checked at start)", "metavar": "VERSION"},
    )
    tracing: Any = field(
        default=False,
        hash=False,
        metadata={"text": parse_flag, "help": "one OpenTelemetry span per call (jdkit[otel])"},
    )
    compression: str | None = field(
        default=None,
        metadata={
            "help": f"compress calls: {' or '.join(ENCODINGS)} (none: off)",
            "metavar": "NAME",
        },
    )

    # Not a field: `dataclasses.replace` passes it on (it copies every init
    # parameter from the original, which holds the record under this name),
    # and only it does, so its presence tells that call apart from a
    # constructor call given every field.
    _given: InitVar[frozenset[str] | None] = None

    def __new__(cls, *args: Any, **given: Any) -> Self:
        # Which fields the caller gave (a default given explicitly counts):
        # what they give wins over the environment (`given()`).
        self = super().__new__(cls)
        object.__setattr__(self, "_given", frozenset(given) - {"_given"})
        return self

    def __eq__(self, other: object) -> bool:
        # The fields, and which were given: those win over the environment,
        # so options given differently are different options.
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, ClientOptions)
        return _given(self) == _given(other) and all(
            getattr(self, name) == getattr(other, name) for name in self.names()
        )

    def __post_init__(self, _given: frozenset[str] | None) -> None:
        if _given is not None:
            raise TypeError(
                "dataclasses.replace() cannot tell which options it changes (it passes them "
                "all), and a given option wins over the environment: use options.replace(...)"
            )
        if self.target is not None:
            parse_target(self.target)  # ConfigError("target", ...) naming the problem
        if self.tls is not None and not isinstance(self.tls, bool | TLSConfig):
            raise ConfigError("tls", f"expected TLSConfig or bool, got {type(self.tls).__name__}")
        if self.target is not None and self.tls is False and parse_target(self.target).tls:
            raise ConfigError("tls", f"target {self.target!r} asks for TLS but tls=False was given")
        check_timeout("timeout", self.timeout)
        if self.retry is not None and not isinstance(self.retry, RetryPolicy):
            raise ConfigError("retry", f"expected a RetryPolicy, got {type(self.retry).__name__}")
        if self.auth is not None and not callable(getattr(self.auth, "fetch", None)):
            raise ConfigError(
                "auth", f"{type(self.auth).__name__} is not a token source (no fetch())"
            )
        if self.allow_insecure_auth is not None:
            _check_bool("allow_insecure_auth", self.allow_insecure_auth)
        if isinstance(self.interceptors, Interceptor) or not isinstance(
            self.interceptors, Sequence
        ):
            raise ConfigError("interceptors", "expected a sequence of Interceptor")
        for icp in self.interceptors:
            if not isinstance(icp, Interceptor):
                raise ConfigError(
                    "interceptors", f"expected Interceptor instances, got {type(icp).__name__}"
                )
        object.__setattr__(self, "interceptors", tuple(self.interceptors))
        check_metadata("metadata", self.metadata)
        if self.metadata is not None:
            object.__setattr__(self, "metadata", Metadata(self.metadata))  # read-only
            register_metadata(self.metadata)  # hpack logs every header it sends
        for name in ("max_receive_message_size", "max_send_message_size"):
            size = getattr(self, name)
            if size is not None and (
                isinstance(size, bool) or not isinstance(size, int) or size < 1
            ):
                raise ConfigError(name, f"must be a positive number of bytes or None, got {size!r}")
        check_timeout("keepalive_time", self.keepalive_time)
        if self.keepalive_timeout is None:
            raise ConfigError("keepalive_timeout", "must be a finite positive number of seconds")
        check_timeout("keepalive_timeout", self.keepalive_timeout)
        if self.compression is not None and self.compression not in ENCODINGS:
            raise ConfigError(
                "compression",
                f"expected one of {', '.join(ENCODINGS)} or None, got {self.compression!r}",
            )
        if self.min_version is not None:
            from jdkit._version import parse_version

            parse_version("min_version", self.min_version)
        if self.tracing is not False and self.tracing is not True:
            if not callable(getattr(self.tracing, "get_tracer", None)):
                raise ConfigError(
                    "tracing",
                    f"expected a bool or a TracerProvider, got {type(self.tracing).__name__}",
                )
        if self.tracing is not False:
            try:
                import opentelemetry.trace  # noqa: F401
            except ImportError:
                raise ConfigError(
                    "tracing", "needs OpenTelemetry: pip install 'jdkit[otel]'"
                ) from None
        if not isinstance(self.dry_run, bool):
            from jdkit._dryrun import Journal

            if not isinstance(self.dry_run, Journal):
                raise ConfigError(
                    "dry_run", f"expected a bool or a Journal, got {type(self.dry_run).__name__}"
                )

    # -- keywords as sugar

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, i.e. the dataclass's fields."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> ClientOptions:
        """A copy with `changes` applied; an unknown name is a TypeError naming it."""
        if not changes:
            return self
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise TypeError(
                f"unknown client option(s) {', '.join(map(repr, unknown))}: not ClientOptions "
                f"fields; ClientOptions has {', '.join(self.names())}"
            )
        values = {name: getattr(self, name) for name in self.names()}
        new = type(self)(**(values | changes))
        object.__setattr__(new, "_given", _given(self) | frozenset(changes))
        return new

    def given(self) -> dict[str, Any]:
        """The fields given explicitly (to the constructor, `replace` or as keywords),
        even where equal to the default; they win over the environment."""
        return {name: getattr(self, name) for name in self.names() if name in _given(self)}

    @classmethod
    def of(cls, options: ClientOptions | None = None, /, **changes: Any) -> ClientOptions:
        """`options` (default: the defaults) with keyword `changes` applied."""
        if options is not None and not isinstance(options, ClientOptions):
            raise ConfigError("options", f"expected ClientOptions, got {type(options).__name__}")
        return (options if options is not None else cls()).replace(**changes)

    # -- derived

    def parsed_target(self) -> Target:
        """`target` parsed (`ConfigError` when it is not set or not an address)."""
        if self.target is None:
            raise ConfigError("target", "is not set; expected host:port of the JD gRPC API")
        return parse_target(self.target)

    def resolved_tls(self) -> TLSConfig | None:
        """The TLS settings for the channel (None: plaintext)."""
        if isinstance(self.tls, TLSConfig):
            return self.tls
        if self.tls is True:
            return TLSConfig()
        if self.tls is None and self.target is not None and parse_target(self.target).tls:
            return TLSConfig()
        return None

    # -- environment

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **changes: Any) -> ClientOptions:
        """Options from the environment (all optional), then `changes`.

        A field in `changes` is not read from the environment at all (a bad
        variable for it is no error). Without `JD_GRPC_URL` the target is
        None, as `jdkit.connect()` reads it: the provider decides
        (`EmbeddedProvider` starts a JD; a remote provider, `RemoteConfig.from_env`
        and the CLI require the URL).

        | variable | meaning |
        |---|---|
        | `JD_GRPC_URL` | `host:port`, `grpc://host:port` or `grpcs://host[:port]` |
        | `JD_TLS` | `1` for TLS with the system roots (implied by `grpcs://` or any TLS file) |
        | `JD_TLS_CA_FILE`, `JD_TLS_CERT_FILE`, `JD_TLS_KEY_FILE` | TLS / mTLS files |
        | `JD_TLS_SERVER_NAME` | the name checked against the server certificate |
        | `JD_TOKEN`, `JD_OAUTH2_*`, `JD_COGNITO_*` | a token source, see `jdkit.auth.from_env` |
        | `JD_<FIELD>` | any other field read from text (`JD_TIMEOUT`, `JD_METADATA`, ...) |

        `JD_<FIELD>` covers `timeout` (seconds, `0`/`none`: no deadline),
        `retry` (attempts, `off`), `allow_insecure_auth`, `metadata`
        (`k=v,k2=v2`), `max_receive_message_size` / `max_send_message_size`
        (bytes, `16MiB`, `none`), `keepalive_time`, `keepalive_timeout`,
        `min_version`, `tracing` and `compression`; `dry_run` is never read
        from the environment.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for tf in TEXT_FIELDS:
            raw = env.get(tf.env, "").strip()
            if tf.name not in changes and raw:
                # a bad URL stays a ConfigError naming `target` (the CLI re-blames it)
                values[tf.name] = raw if tf.name == "target" else tf.read(raw, tf.env)
        if "tls" not in changes:
            tls_files = {
                k: env.get(f"JD_TLS_{k.upper()}") or None
                for k in ("ca_file", "cert_file", "key_file", "server_name")
            }
            if any(tls_files.values()):
                values["tls"] = TLSConfig(**tls_files)
            elif "JD_TLS" in env:
                values["tls"] = _flag(env, "JD_TLS")
        if "auth" not in changes:
            from jdkit.auth import from_env as auth_from_env

            values["auth"] = auth_from_env(env)
        return cls(**values).replace(**changes)


def _given(options: ClientOptions) -> frozenset[str]:
    given: frozenset[str] = getattr(options, "_given", frozenset())
    return given


def _flag(env: Mapping[str, str], name: str) -> bool:
    try:
        return parse_flag(env.get(name, ""))
    except ValueError as exc:
        raise ConfigError(name, str(exc)) from None


#: The fields read from text: `JD_<FIELD>` variables and the CLI's flags.
TEXT_FIELDS = text_fields(ClientOptions)

_exports.publish_lazy(globals())  # what jdkit imports from here on first use
