"""A token source from `JD_*` environment variables (see `jdkit.auth`)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from jdkit._exceptions import ConfigError
from jdkit.auth._tokens import StaticToken, TokenSource

__all__ = ["from_env"]

_FAMILIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # family: (required, optional)
    "JD_TOKEN": (("JD_TOKEN",), ()),
    "JD_OAUTH2_*": (
        ("JD_OAUTH2_TOKEN_URL", "JD_OAUTH2_CLIENT_ID", "JD_OAUTH2_CLIENT_SECRET"),
        ("JD_OAUTH2_SCOPE", "JD_OAUTH2_AUDIENCE"),
    ),
    "JD_COGNITO_*": (
        ("JD_COGNITO_CLIENT_ID", "JD_COGNITO_USERNAME", "JD_COGNITO_PASSWORD", "JD_COGNITO_REGION"),
        ("JD_COGNITO_CLIENT_SECRET", "JD_COGNITO_ENDPOINT_URL"),
    ),
}


def from_env(env: Mapping[str, str] | None = None) -> TokenSource | None:
    """A token source from the `JD_*` variables in the module docstring, or None.

    Raises ConfigError naming the first missing variable of a partly set
    family, or when more than one family is set (which one wins would be a
    guess).
    """
    env = os.environ if env is None else env
    vals = {k: v for k, v in env.items() if k.startswith("JD_") and v}
    if vals.get("JD_COGNITO_CLIENT_ID") and not vals.get("JD_COGNITO_REGION"):
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if region:
            vals["JD_COGNITO_REGION"] = region
    present = [fam for fam, (req, opt) in _FAMILIES.items() if any(vals.get(v) for v in req + opt)]
    if not present:
        return None
    if len(present) > 1:
        raise ConfigError(present[1], f"conflicts with {present[0]}: set only one way to auth")
    family = present[0]
    for var in _FAMILIES[family][0]:
        if not vals.get(var):
            raise ConfigError(var, f"must be set when other {family} variables are")
    prefix = family.rstrip("*")
    try:
        return _build_from(family, vals)
    except ConfigError as exc:  # name the variable, not the parameter
        var = "JD_TOKEN" if exc.field == "token" else prefix + exc.field.upper()
        raise ConfigError(var, exc.problem) from None


def _build_from(family: str, vals: Mapping[str, str]) -> TokenSource:
    if family == "JD_TOKEN":
        return StaticToken(vals["JD_TOKEN"])
    if family == "JD_OAUTH2_*":
        from jdkit.auth._oauth2 import OAuth2ClientCredentials

        return OAuth2ClientCredentials(
            vals["JD_OAUTH2_TOKEN_URL"],
            vals["JD_OAUTH2_CLIENT_ID"],
            vals["JD_OAUTH2_CLIENT_SECRET"],
            scope=vals.get("JD_OAUTH2_SCOPE"),
            audience=vals.get("JD_OAUTH2_AUDIENCE"),
        )
    from jdkit.auth._cognito import CognitoTokenSource

    return CognitoTokenSource(
        vals["JD_COGNITO_CLIENT_ID"],
        vals["JD_COGNITO_USERNAME"],
        vals["JD_COGNITO_PASSWORD"],
        vals.get("JD_COGNITO_CLIENT_SECRET"),
        region=vals["JD_COGNITO_REGION"],
        endpoint_url=vals.get("JD_COGNITO_ENDPOINT_URL"),
    )
