"""Connect to a JD that is already running somewhere."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jdkit._channel import TLSConfig, parse_target
from jdkit._client import DEFAULT_TIMEOUT, JobDistributor, check_timeout
from jdkit._exceptions import ConfigError
from jdkit._interceptors import Interceptor
from jdkit._providers._base import Provider
from jdkit._retry import RetryPolicy

if TYPE_CHECKING:
    from jdkit._auth import TokenSource

ENV_URL = "JD_GRPC_URL"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class RemoteConfig:
    """Where a remote JD is and how to talk to it; validated on construction.

    `from_env()` reads (all optional but the URL):

    | variable | meaning |
    |---|---|
    | `JD_GRPC_URL` | `host:port`, `grpc://host:port` or `grpcs://host[:port]` |
    | `JD_TLS` | `1` for TLS with the system roots (implied by `grpcs://` or any TLS file) |
    | `JD_TLS_CA_FILE`, `JD_TLS_CERT_FILE`, `JD_TLS_KEY_FILE`, `JD_TLS_SERVER_NAME` | TLS / mTLS |
    | `JD_TIMEOUT` | default per-call deadline in seconds (`0`/`none`: no deadline) |
    | `JD_ALLOW_INSECURE_AUTH` | `1` to allow bearer tokens on a plaintext channel |
    | `JD_TOKEN`, `JD_OAUTH2_*`, `JD_COGNITO_*` | a token source, see `jdkit._auth.from_env` |
    """

    url: str
    tls: TLSConfig | bool | None = None
    timeout: float | None = DEFAULT_TIMEOUT
    retry: RetryPolicy | None = None
    auth: TokenSource | None = field(default=None, repr=False)
    allow_insecure_auth: bool = False
    interceptors: Sequence[Interceptor] = ()
    metadata: Mapping[str, str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        parse_target(self.url)  # raises ConfigError("target", ...) naming the problem
        check_timeout("timeout", self.timeout)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RemoteConfig:
        env = os.environ if env is None else env
        url = env.get(ENV_URL, "").strip()
        if not url:
            raise ConfigError(ENV_URL, "is not set; expected host:port of the JD gRPC API")
        tls_files = {
            k: env.get(f"JD_TLS_{k.upper()}") or None
            for k in ("ca_file", "cert_file", "key_file", "server_name")
        }
        tls: TLSConfig | bool | None = None
        if any(tls_files.values()):
            tls = TLSConfig(**tls_files)
        elif "JD_TLS" in env:
            tls = _flag(env, "JD_TLS")
        timeout: float | None = DEFAULT_TIMEOUT
        if env.get("JD_TIMEOUT"):
            raw = env["JD_TIMEOUT"].strip().lower()
            try:
                timeout = None if raw in ("0", "none") else float(raw)
            except ValueError:
                raise ConfigError("JD_TIMEOUT", f"not a number of seconds: {raw!r}") from None
            check_timeout("JD_TIMEOUT", timeout)
        from jdkit._auth import from_env as auth_from_env

        return cls(
            url=url,
            tls=tls,
            timeout=timeout,
            auth=auth_from_env(env),
            allow_insecure_auth=_flag(env, "JD_ALLOW_INSECURE_AUTH"),
        )


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(name, f"expected 1/0, true/false, yes/no; got {raw!r}")


class RemoteProvider(Provider):
    """A JD reached over the network; nothing to start, only a channel to own."""

    name = "remote"

    def __init__(self, config: RemoteConfig, *, dry_run: bool = False) -> None:
        super().__init__(dry_run=dry_run)
        self.config = config

    @classmethod
    def from_env(cls, *, dry_run: bool = False) -> RemoteProvider:
        return cls(RemoteConfig.from_env(), dry_run=dry_run)

    async def _start(self) -> JobDistributor:
        c = self.config
        return JobDistributor.connect(
            c.url,
            tls=c.tls,
            timeout=c.timeout,
            retry=c.retry,
            auth=c.auth,
            allow_insecure_auth=c.allow_insecure_auth,
            interceptors=c.interceptors,
            metadata=c.metadata,
        )
