"""Where connections are made: target parsing, TLS / mTLS, the grpclib channel."""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from grpclib.client import Channel
from grpclib.config import Configuration

from jdkit import _exports
from jdkit._codec import ClientCodec
from jdkit._exceptions import ConfigError
from jdkit._redact import redact_url

if TYPE_CHECKING:
    from jdkit._options import ClientOptions

_SCHEMES = {"": None, "grpc": False, "http": False, "grpcs": True, "https": True}


@dataclass(frozen=True, slots=True)
class Target:
    """Where a client connects: `ClientOptions.target` parsed
    (`ClientOptions.parsed_target()`, `JobDistributor.target`).

    `tls` is what the scheme says (`grpcs://`: True, `grpc://`: False), None
    without one; `str()` gives `host:port`.
    """

    host: str
    port: int
    tls: bool | None  # None: not said by the scheme

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def is_loopback(host: str | None) -> bool:
    """Whether `host` (a name or an address, brackets allowed) is this machine's loopback.

    The one check jdkit uses wherever plaintext is allowed only locally.
    """
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_target(target: str) -> Target:
    """Accept `host:port`, `[v6]:port`, or a `grpc://` / `grpcs://` URL; name what is wrong."""
    if not isinstance(target, str) or not target.strip():
        raise ConfigError("target", "is empty; expected host:port, e.g. 127.0.0.1:14231")
    raw = target.strip()
    scheme = ""
    if "://" in raw:
        scheme, _, _ = raw.partition("://")
        scheme = scheme.lower()
        if scheme not in _SCHEMES:
            raise ConfigError(
                "target", f"unknown scheme {scheme!r} in {raw!r}; use grpc:// or grpcs://"
            )
    rest = raw.partition("://")[2] if scheme else raw
    netloc = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in netloc:
        # user:password@host: refused (and never echoed), so it cannot end up
        # in a repr, a log line or an error; tokens go in auth=.
        shown = redact_url(f"{scheme or 'grpc'}://{netloc}", keep_user=False)
        shown = shown if scheme else shown.partition("://")[2]
        raise ConfigError(
            "target",
            f"credentials in the address ({shown}) are not supported; "
            "pass them as auth= (e.g. jdkit.auth.StaticToken) instead",
        )
    parts = urlsplit(raw if scheme else f"//{raw}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError("target", f"{raw!r} has a path or query; expected host:port")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("target", f"port in {raw!r} is not a number in 1..65535") from None
    host = parts.hostname or ""
    if not host:
        raise ConfigError("target", f"no host in {raw!r}; expected host:port")
    if port is None:
        if scheme in ("grpcs", "https"):
            port = 443
        else:
            raise ConfigError("target", f"no port in {raw!r}; expected host:port")
    if not 0 < port < 65536:
        raise ConfigError("target", f"port {port} in {raw!r} is out of range 1..65535")
    return Target(host, port, _SCHEMES[scheme])


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """TLS for the client channel; set cert_file + key_file for mutual TLS.

    `ca_file` None trusts the system store; `server_name` overrides the name
    checked against the server certificate (for IP targets or test CAs).
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not os.path.isfile(path):
                raise ConfigError(f"tls.{name}", f"file not found: {path}")
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("tls.cert_file", "cert_file and key_file must be given together")

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["h2"])
        if self.cert_file and self.key_file:
            try:
                ctx.load_cert_chain(self.cert_file, self.key_file)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(
                    "tls.cert_file", f"cannot load client certificate: {exc}"
                ) from None
        return ctx


ChannelT = TypeVar("ChannelT", bound=Channel)


def open_channel(
    target: Target,
    options: ClientOptions,
    channel_cls: type[ChannelT] = Channel,  # type: ignore[assignment]
) -> ChannelT:
    """The grpclib channel for `target` as `options` say (TLS, keepalive)."""
    tls = options.resolved_tls()
    config = Configuration(
        _keepalive_time=options.keepalive_time,
        _keepalive_timeout=options.keepalive_timeout,
        _keepalive_permit_without_calls=False,
        ssl_target_name_override=tls.server_name if tls else None,
    )
    return channel_cls(
        target.host,
        target.port,
        ssl=tls.context() if tls else None,
        config=config,
        codec=ClientCodec(),  # the generated fast path (jdkit._codec)
    )


_exports.publish_lazy(globals())  # what jdkit imports from here on first use
