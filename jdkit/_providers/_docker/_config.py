"""What a Docker run is configured with, checked before any engine is contacted.

Kept free of aiodocker, so a bad config is a `ConfigError` even where the
`docker` extra is not installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import secrets
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from jdkit._exceptions import ConfigError, JDError
from jdkit._options import ClientOptions
from jdkit._redact import REDACTED, is_sensitive_key, scrub

ENV_JD_IMAGE = "CTF_JD_IMAGE"
DEFAULT_POSTGRES_IMAGE = "postgres:16"
# Built on this machine by scripts/docker_images.py; never pulled from a registry.
LOCAL_JD_IMAGE = "jdkit/jd:dev"
LOCAL_POSTGRES_IMAGE = "jdkit/postgres:15"
LOCAL_PREFIX = "jdkit/"

PG_ALIAS = "postgres"
PG_PORT = 5432

_IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:@+-]*$", re.IGNORECASE)
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOST_SCHEMES = ("unix://", "tcp://", "http://", "https://", "ssh://", "npipe://")


class DockerProviderError(JDError):
    """The Docker provider could not start (or reach) its JD; carries container logs."""


def _default_jd_image() -> str:
    return os.environ.get(ENV_JD_IMAGE, "").strip() or LOCAL_JD_IMAGE


def _random_password() -> str:
    return secrets.token_urlsafe(24)


def _random_secret() -> str:
    return secrets.token_hex(32)  # 64 hex digits, the form upstream's JD uses


@dataclass(frozen=True, kw_only=True, repr=False)
class DockerConfig:
    """How to run JD in Docker; every field is checked on construction.

    | field | default |
    |---|---|
    | `jd_image` | `$CTF_JD_IMAGE`, else the locally built `jdkit/jd:dev` |
    | `postgres_image` | `postgres:16` (used when present locally or pullable) |
    | `postgres_fallback` | `jdkit/postgres:15`, built locally; None: no fallback |
    | `postgres_user` / `postgres_db` | `jd` / `jd` |
    | `postgres_password`, `csa_secret` | random for each config (never shown by repr) |
    | `ready_timeout` | 120 s from creating the containers to SERVING |
    | `pull_timeout` | 120 s for one image pull |
    | `reuse` | False; True keeps the containers for the process (module doc) |
    | `docker_host` | `$DOCKER_HOST`, else the local socket |
    | `build_images` | True: build/refresh `jdkit/*` images from the checkout |
    | `jd_command` | None (the image's CMD); a list replaces it |
    | `jd_env` | extra environment for JD (wins over the provider's) |
    | `grpc_port`, `node_rpc_port`, `healthz_port` | JD's ports inside its container |
    | `check_healthz` | True: readiness also needs `GET /healthz` to answer 200 |
    | `fast_postgres` | True: fsync off and a tmpfs data directory (test data only) |
    | `call_timeout` | deprecated: give `DockerProvider` the `ClientOptions` field `timeout` |
    | `log_tail` | lines of each container's log put into errors (50) |
    """

    jd_image: str = field(default_factory=_default_jd_image)
    postgres_image: str = DEFAULT_POSTGRES_IMAGE
    postgres_fallback: str | None = LOCAL_POSTGRES_IMAGE
    postgres_user: str = "jd"
    postgres_password: str = field(default_factory=_random_password)
    postgres_db: str = "jd"
    csa_secret: str = field(default_factory=_random_secret)
    ready_timeout: float = 120.0
    pull_timeout: float = 120.0
    reuse: bool = False
    docker_host: str | None = None
    build_images: bool = True
    jd_command: Sequence[str] | None = None
    jd_env: Mapping[str, str] = field(default_factory=dict)
    grpc_port: int = 14231
    node_rpc_port: int = 8080
    healthz_port: int = 8081
    check_healthz: bool = True
    fast_postgres: bool = True
    call_timeout: float | None = None  # deprecated: ClientOptions.timeout
    log_tail: int = 50

    def __post_init__(self) -> None:
        env_image = os.environ.get(ENV_JD_IMAGE, "").strip()
        for name in ("jd_image", "postgres_image", "postgres_fallback"):
            value = getattr(self, name)
            if value is None and name == "postgres_fallback":
                continue
            if not isinstance(value, str) or not _IMAGE_RE.match(value):
                source = (
                    f" (from ${ENV_JD_IMAGE})"
                    if name == "jd_image" and value == env_image and env_image
                    else ""
                )
                raise ConfigError(name, f"not an image reference: {value!r}{source}")
        for name in ("postgres_user", "postgres_db"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _IDENT_RE.match(value):
                raise ConfigError(
                    name,
                    f"must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 "
                    f"characters), got {value!r}",
                )
        for name in ("postgres_password", "csa_secret"):
            value = getattr(self, name)
            # The value itself is never put into the message.
            if not isinstance(value, str) or not value:
                raise ConfigError(name, "must be a non-empty string")
            if any(c in value for c in "\0\n\r"):
                raise ConfigError(name, "must not contain NUL or line breaks")
        for name in ("ready_timeout", "pull_timeout"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ConfigError(name, f"must be a positive number of seconds, got {value!r}")
        if self.call_timeout is not None and (
            isinstance(self.call_timeout, bool)
            or not isinstance(self.call_timeout, int | float)
            or self.call_timeout <= 0
        ):
            raise ConfigError(
                "call_timeout", f"must be positive seconds or None, got {self.call_timeout!r}"
            )
        if self.call_timeout is not None:
            warnings.warn(
                "DockerConfig.call_timeout is deprecated: pass timeout= (a ClientOptions field) "
                "to DockerProvider, as for every provider",
                DeprecationWarning,
                stacklevel=3,
            )
        for name in ("reuse", "build_images", "check_healthz", "fast_postgres"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, f"must be True or False, got {getattr(self, name)!r}")
        if self.docker_host is not None and (
            not isinstance(self.docker_host, str) or not self.docker_host.startswith(_HOST_SCHEMES)
        ):
            raise ConfigError(
                "docker_host",
                f"expected a URL starting with one of {', '.join(_HOST_SCHEMES)}, "
                f"got {self.docker_host!r}",
            )
        for name in ("grpc_port", "node_rpc_port", "healthz_port"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
                raise ConfigError(name, f"must be a port number 1-65535, got {value!r}")
        if len({self.grpc_port, self.node_rpc_port, self.healthz_port}) != 3:
            raise ConfigError("grpc_port", "grpc_port, node_rpc_port and healthz_port must differ")
        if self.jd_command is not None:
            if (
                isinstance(self.jd_command, str)
                or not all(isinstance(a, str) for a in self.jd_command)
                or not self.jd_command
            ):
                raise ConfigError("jd_command", "must be a non-empty list of strings (or None)")
            object.__setattr__(self, "jd_command", tuple(self.jd_command))
        if not isinstance(self.jd_env, Mapping):
            raise ConfigError("jd_env", f"must be a mapping, got {type(self.jd_env).__name__}")
        for key, value in self.jd_env.items():
            if not isinstance(key, str) or not _ENV_KEY_RE.match(key):
                raise ConfigError("jd_env", f"not an environment variable name: {key!r}")
            if not isinstance(value, str):
                raise ConfigError("jd_env", f"value of {key} must be a string")
        object.__setattr__(self, "jd_env", dict(self.jd_env))
        tail = self.log_tail
        if isinstance(tail, bool) or not isinstance(tail, int) or tail < 0:
            raise ConfigError("log_tail", f"must be a whole number >= 0, got {self.log_tail!r}")

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("postgres_password", "csa_secret"):
                parts.append(f"{f.name}={REDACTED}")
            elif f.name == "jd_env":
                parts.append(f"jd_env={{{', '.join(f'{k!r}: ...' for k in value)}}}")
            else:
                parts.append(f"{f.name}={value!r}")
        return f"DockerConfig({', '.join(parts)})"

    __str__ = __repr__

    def database_url(self, host: str = PG_ALIAS, port: int = PG_PORT) -> str:
        """The URL JD is given (it contains the password: do not log it)."""
        return (
            f"postgresql://{quote(self.postgres_user, safe='')}:"
            f"{quote(self.postgres_password, safe='')}@{host}:{port}/"
            f"{quote(self.postgres_db, safe='')}"
        )

    def redact(self, text: str) -> str:
        """`text` with the password and the CSA secret (in any quoting) masked."""
        env_secrets = (v for k, v in self.jd_env.items() if is_sensitive_key(k) and v)
        return scrub(
            text,
            self.postgres_password,
            quote(self.postgres_password),
            self.csa_secret,
            *env_secrets,
        )

    def _reuse_key(self) -> str:
        """Equal for configs that may share containers (secrets left out)."""
        data = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name
            not in (
                "postgres_password",
                "csa_secret",
                "ready_timeout",
                "pull_timeout",
                "call_timeout",
                "log_tail",
                "reuse",
            )
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=repr).encode()).hexdigest()


def provider_options(
    config: DockerConfig | ClientOptions | None,
    options: ClientOptions | None,
    overrides: dict[str, Any],
) -> tuple[DockerConfig, ClientOptions]:
    """`DockerProvider`'s arguments as (config, client options): keywords go to
    whichever of the two has the field; neither is a TypeError naming it."""
    if isinstance(config, ClientOptions):
        if options is not None:
            raise TypeError("DockerProvider got ClientOptions twice: first and as options=")
        config, options = None, config
    if config is not None and not isinstance(config, DockerConfig):
        raise TypeError(
            f"DockerProvider takes a DockerConfig (or ClientOptions) first, "
            f"got {type(config).__name__}"
        )
    client_names = set(ClientOptions.names())
    docker_names = {f.name for f in dataclasses.fields(DockerConfig)}
    unknown = sorted(set(overrides) - client_names - docker_names)
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, unknown))}: neither ClientOptions nor "
            f"DockerConfig fields; ClientOptions has {', '.join(sorted(client_names))}; "
            f"DockerConfig has {', '.join(sorted(docker_names))}"
        )
    client = {k: overrides.pop(k) for k in list(overrides) if k in client_names}
    opts = ClientOptions.of(options, **client)
    if config is None:
        config = DockerConfig(**overrides)
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    if config.call_timeout is not None:  # the deprecated spelling of `timeout`
        given = opts.given()
        if "timeout" in given and given["timeout"] != config.call_timeout:
            raise ConfigError(
                "call_timeout",
                f"{config.call_timeout!r} conflicts with timeout={given['timeout']!r}; "
                "call_timeout is deprecated: give timeout only",
            )
        opts = opts.replace(timeout=config.call_timeout)
    return config, opts
