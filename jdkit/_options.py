"""The one definition of a client's options, and the one place they are checked.

Every way to get a client (`JobDistributor.connect`, `jdkit.connect`, each
provider, `with_dry_run`, the testing factories, the CLI) takes a
`ClientOptions` and/or keywords naming its fields; keywords override the
object's fields (`options.replace(**keywords)`). The list of options is the
dataclass's fields and nothing else, so an option added here works everywhere.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jdkit import _exports
from jdkit._channel import Target, TLSConfig, parse_target
from jdkit._compression import ENCODINGS
from jdkit._exceptions import ConfigError
from jdkit._interceptors import Interceptor
from jdkit._redact import register_metadata
from jdkit._retry import RetryPolicy
from jdkit._transport import DEFAULT_MAX_RECEIVE

if TYPE_CHECKING:
    from jdkit._dryrun import Journal
    from jdkit.auth import TokenManager, TokenSource

__all__ = ["DEFAULT_TIMEOUT", "ClientOptions", "check_metadata", "check_timeout"]

#: The default per-call deadline in seconds.
DEFAULT_TIMEOUT = 30.0

ENV_URL = "JD_GRPC_URL"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


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


def check_metadata(name: str, metadata: object) -> None:
    """gRPC metadata keys are lower-case ASCII; values here are str (no binary headers)."""
    if metadata is None:
        return
    if not isinstance(metadata, Mapping):
        raise ConfigError(name, f"expected a mapping of str to str, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or key != key.lower() or not key or not isinstance(value, str):
            raise ConfigError(name, f"keys must be lower-case str and values str: {key!r}")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(name, f"expected True or False, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class ClientOptions:
    """How a client reaches a JD and treats each call; checked on construction.

    Build one and pass it around, or pass its fields as keywords; keywords
    win over an object's fields:

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
    `metadata` is sent with every call; the values of credential keys
    (`authorization`, or a key naming a token, secret, password, api-key or
    cookie) are treated as secrets: kept out of log records and of
    this repr. `dry_run`: True, or a `Journal` to
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

    target: str | None = None
    tls: TLSConfig | bool | None = None
    timeout: float | None = DEFAULT_TIMEOUT
    retry: RetryPolicy | None = None
    auth: TokenSource | TokenManager | None = None
    allow_insecure_auth: bool | None = None
    interceptors: Sequence[Interceptor] = ()
    metadata: Mapping[str, str] | None = field(default=None, repr=False)
    dry_run: bool | Journal = False
    max_receive_message_size: int | None = DEFAULT_MAX_RECEIVE
    max_send_message_size: int | None = None
    keepalive_time: float | None = 30.0
    keepalive_timeout: float = 10.0
    min_version: str | None = None
    tracing: Any = False
    compression: str | None = None

    def __post_init__(self) -> None:
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
            object.__setattr__(self, "metadata", dict(self.metadata))
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
                f"unknown client option(s) {', '.join(map(repr, unknown))}; "
                f"ClientOptions has {', '.join(self.names())}"
            )
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, options: ClientOptions | None = None, /, **changes: Any) -> ClientOptions:
        """`options` (default: the defaults) with keyword `changes` applied."""
        if options is not None and not isinstance(options, ClientOptions):
            raise ConfigError("options", f"expected ClientOptions, got {type(options).__name__}")
        return (options if options is not None else cls()).replace(**changes)

    # -- derived

    def parsed_target(self) -> Target:
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

        Without `JD_GRPC_URL` the target is None, as `jdkit.connect()` reads
        it: the provider decides (`EmbeddedProvider` starts a JD; a remote
        provider, `RemoteConfig.from_env` and the CLI require the URL).

        | variable | meaning |
        |---|---|
        | `JD_GRPC_URL` | `host:port`, `grpc://host:port` or `grpcs://host[:port]` |
        | `JD_TLS` | `1` for TLS with the system roots (implied by `grpcs://` or any TLS file) |
        | `JD_TLS_CA_FILE`, `JD_TLS_CERT_FILE`, `JD_TLS_KEY_FILE` | TLS / mTLS files |
        | `JD_TLS_SERVER_NAME` | the name checked against the server certificate |
        | `JD_TIMEOUT` | default per-call deadline in seconds (`0`/`none`: no deadline) |
        | `JD_ALLOW_INSECURE_AUTH` | `1` to allow bearer tokens on a plaintext channel |
        | `JD_TOKEN`, `JD_OAUTH2_*`, `JD_COGNITO_*` | a token source, see `jdkit.auth.from_env` |
        """
        env = os.environ if env is None else env
        url = env.get(ENV_URL, "").strip() or None
        tls_files = {
            k: env.get(f"JD_TLS_{k.upper()}") or None
            for k in ("ca_file", "cert_file", "key_file", "server_name")
        }
        values: dict[str, Any] = {"target": url}
        if any(tls_files.values()):
            values["tls"] = TLSConfig(**tls_files)
        elif "JD_TLS" in env:
            values["tls"] = _flag(env, "JD_TLS")
        if env.get("JD_TIMEOUT"):
            raw = env["JD_TIMEOUT"].strip().lower()
            try:
                timeout = None if raw in ("0", "none") else float(raw)
            except ValueError:
                raise ConfigError("JD_TIMEOUT", f"not a number of seconds: {raw!r}") from None
            check_timeout("JD_TIMEOUT", timeout)
            values["timeout"] = timeout
        from jdkit.auth import from_env as auth_from_env

        values["auth"] = auth_from_env(env)
        values["allow_insecure_auth"] = _flag(env, "JD_ALLOW_INSECURE_AUTH")
        return cls(**values).replace(**changes)


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(name, f"expected 1/0, true/false, yes/no; got {raw!r}")


# jdkit exports these (imported on first use): their public home, as they load
_exports.publish("jdkit", ClientOptions)
