"""The command line's connection flags and environment -> one `ClientOptions`.

A flag beats the environment variable it stands for, and a mistake is
blamed on what the user actually wrote: `--timeout abc` names `--timeout`,
a bad `JD_TIMEOUT` names `JD_TIMEOUT`. So the environment variables a flag
overrides are dropped before `ClientOptions.from_env` reads the rest, and
flag values are applied with `ClientOptions.replace` afterwards. Secrets
(passwords, client secrets) come only from the environment, out of `ps` and
shell history.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import click

from jdkit._channel import TLSConfig, parse_target
from jdkit._exceptions import ConfigError, JDError
from jdkit._options import TEXT_FIELDS, ClientOptions

NO_URL = (
    "no JD to talk to: pass --url HOST:PORT or set JD_GRPC_URL "
    "(start a local one with `jdkit serve`)"
)

_AUTH_PREFIXES = ("JD_TOKEN", "JD_OAUTH2_", "JD_COGNITO_")
#: Cognito flags are laid over these variables (the password and secret stay env-only).
COGNITO_FLAGS = {
    "cognito_client_id": "JD_COGNITO_CLIENT_ID",
    "cognito_username": "JD_COGNITO_USERNAME",
    "cognito_region": "JD_COGNITO_REGION",
    "cognito_endpoint_url": "JD_COGNITO_ENDPOINT_URL",
}
TLS_FLAGS = {
    "tls_ca": "ca_file",
    "tls_cert": "cert_file",
    "tls_key": "key_file",
    "tls_server_name": "server_name",
}
#: ClientOptions fields with a flag of their own above; every other field read
#: from text gets `--<field>` (and `JD_<FIELD>`) from the dataclass: `FIELD_FLAGS`.
_OWN_FLAGS = {"target", "timeout", "allow_insecure_auth"}
FIELD_FLAGS = tuple(tf for tf in TEXT_FIELDS if tf.name not in _OWN_FLAGS)

#: Option / field names in errors -> how the command line spells them.
FLAG_NAMES = {
    **{tf.name: tf.flag for tf in FIELD_FLAGS},
    "target": "--url",
    "url": "--url",
    "timeout": "--timeout",
    "tls": "--tls",
    "allow_insecure_auth": "--allow-insecure-auth",
    "token": "--token",
    **{k: "--" + k.replace("_", "-") for k in COGNITO_FLAGS},
    "tls.ca_file": "--tls-ca",
    "tls.cert_file": "--tls-cert",
    "tls.key_file": "--tls-key",
    "tls.server_name": "--tls-server-name",
}


class UsageError(JDError):
    """A mistake on the command line that the parser cannot see (exit status 2)."""


class Seconds(click.ParamType):  # type: ignore[type-arg]
    """A deadline in seconds; `0` or `none` means no deadline (returned as 0.0)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        raw = str(value).strip().lower()
        if raw in ("0", "none"):
            return 0.0
        try:
            seconds = float(raw)
        except ValueError:
            self.fail(f"{value!r} is not a number of seconds (0 or none: no deadline)", param, ctx)
        if not math.isfinite(seconds) or seconds < 0:
            self.fail(f"{value!r} must be a positive number of seconds", param, ctx)
        return seconds


class FieldText(click.ParamType):  # type: ignore[type-arg]
    """A ClientOptions field's value as text, checked as the field checks it."""

    def __init__(self, name: str) -> None:
        self.field = next(tf for tf in FIELD_FLAGS if tf.name == name)
        self.name = name.split("_")[-1]

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.field.read(value, self.field.flag)
        except ConfigError as exc:
            self.fail(exc.problem, param, ctx)


def field_values(flags: Mapping[str, Any]) -> dict[str, Any]:
    """The `--<field>` flags given, as ClientOptions changes (repeated ones merged)."""
    out: dict[str, Any] = {}
    for tf in FIELD_FLAGS:
        value = flags.get(tf.name)
        if tf.multiple and value:
            out[tf.name] = {k: v for part in value for k, v in part.items()}
        elif not tf.multiple and value is not None:
            out[tf.name] = value
    return out


def _blame(exc: ConfigError, flag: str) -> ConfigError:
    """The same problem, named after what the user wrote (a flag or a variable)."""
    return ConfigError(flag, exc.problem)


def client_options(
    flags: Mapping[str, Any], env: Mapping[str, str], *, dry_run: bool = False
) -> ClientOptions:
    """The one `ClientOptions` for this run: environment, then flags, then `dry_run`."""
    env = dict(env)
    given = {k: v for k, v in flags.items() if v is not None and v is not False and v != ""}
    url = given.get("url")
    if url is not None:
        try:
            parse_target(url)
        except ConfigError as exc:
            raise _blame(exc, "--url") from None
        env["JD_GRPC_URL"] = url
    if not env.get("JD_GRPC_URL", "").strip():
        raise UsageError(NO_URL)
    tls_files = {field: given[flag] for flag, field in TLS_FLAGS.items() if flag in given}
    if tls_files or given.get("tls"):
        for k in [k for k in env if k.startswith("JD_TLS")]:
            del env[k]
    if "timeout" in given:
        env.pop("JD_TIMEOUT", None)
    if given.get("allow_insecure_auth"):
        env.pop("JD_ALLOW_INSECURE_AUTH", None)
    overlaid: dict[str, str] = {}
    if "token" in given or any(k in given for k in COGNITO_FLAGS):
        # an auth flag picks the family: another family's variables would conflict
        keep = (
            {"JD_COGNITO_PASSWORD", "JD_COGNITO_CLIENT_SECRET"} if "token" not in given else set()
        )
        for k in [k for k in env if k.startswith(_AUTH_PREFIXES) and k not in keep]:
            del env[k]
        for flag, var in COGNITO_FLAGS.items():
            if flag in given:
                env[var] = str(given[flag])
                overlaid[var] = "--" + flag.replace("_", "-")
    try:
        # a `--<field>` flag given makes its JD_<FIELD> variable irrelevant
        opts = ClientOptions.from_env(env, **field_values(flags))
    except ConfigError as exc:
        if exc.field in overlaid:
            raise _blame(exc, overlaid[exc.field]) from None
        if exc.field == "target":
            raise _blame(exc, "--url" if url is not None else "JD_GRPC_URL") from None
        raise
    changes: dict[str, Any] = {}
    if tls_files:
        try:
            changes["tls"] = TLSConfig(**tls_files)
        except ConfigError as exc:
            raise _blame(exc, FLAG_NAMES.get(exc.field, "--tls-ca")) from None
    elif given.get("tls"):
        changes["tls"] = True
    if "timeout" in given:
        changes["timeout"] = None if given["timeout"] == 0 else float(given["timeout"])
    if given.get("allow_insecure_auth"):
        changes["allow_insecure_auth"] = True
    if "token" in given:
        from jdkit.auth import StaticToken

        changes["auth"] = StaticToken(given["token"])
    if dry_run:
        changes["dry_run"] = True
    try:
        final = opts.replace(**changes)
    except ConfigError as exc:
        raise _blame(exc, FLAG_NAMES.get(exc.field, exc.field)) from None
    if final.auth is not None and final.allow_insecure_auth is not True:
        if final.resolved_tls() is None:
            # Checked here, not left to the client, to blame what the user
            # gave (the token), not the flag they did not give.
            raise ConfigError(
                _token_origin(given, env),
                "refusing to send a bearer token over a plaintext channel; use TLS "
                "(a grpcs:// URL or --tls) or pass --allow-insecure-auth (local testing only)",
            )
    return final


def _token_origin(given: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """The flag or variable the run's token source came from."""
    if "token" in given:
        return "--token"
    for flag in COGNITO_FLAGS:
        if flag in given:
            return FLAG_NAMES[flag]
    if env.get("JD_TOKEN"):
        return "JD_TOKEN"
    for prefix in ("JD_OAUTH2_", "JD_COGNITO_"):
        if any(k.startswith(prefix) for k in env):
            return prefix + "*"
    return "--token"
