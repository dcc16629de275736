"""Errors as a command-line user reads them: one line, in the CLI's own spelling."""

from __future__ import annotations

import re

from jdkit._cli._config import FLAG_NAMES, UsageError
from jdkit._exceptions import ConfigError, JDError, RPCError, UnavailableError

#: Python spellings in library messages -> what a CLI user types.
_HINTS = [
    (
        re.compile(r"pass allow_insecure_auth=True"),
        "pass --allow-insecure-auth (or set JD_ALLOW_INSECURE_AUTH=1)",
    ),
    (re.compile(r"allow_insecure_auth=True"), "--allow-insecure-auth"),
    (re.compile(r"\bdry_run=True\b"), "--dry-run"),
]


def cli_spelling(text: str) -> str:
    for pattern, replacement in _HINTS:
        text = pattern.sub(replacement, text)
    return text


def _field(field: str) -> str:
    if field.startswith(("-", "JD_", "CSA_")):
        return field
    return FLAG_NAMES.get(field, field)


def describe(exc: BaseException) -> str:
    """One line for the user, without a traceback."""
    if isinstance(exc, RPCError):
        msg = exc.message or exc.code.name
        line = f"{exc.code.name}: {msg}"
        if exc.attempts > 1:
            line += f" (after {exc.attempts} attempts)"
        if isinstance(exc, UnavailableError) and exc.reached_server is False:
            line += " (is a JD running there? `jdkit serve` starts one)"
        return cli_spelling(line)
    if isinstance(exc, ConfigError):
        return cli_spelling(f"{_field(exc.field)}: {exc.problem}")
    return cli_spelling(str(exc) or type(exc).__name__)


def error_json(exc: JDError) -> dict[str, object]:
    if isinstance(exc, RPCError):
        out: dict[str, object] = {
            "code": exc.code.name,
            "message": exc.message,
            "method": exc.method,
        }
        if exc.attempts > 1:
            out["attempts"] = exc.attempts
        return out
    if isinstance(exc, ConfigError):
        return {"code": "CONFIG", "field": _field(exc.field), "message": cli_spelling(exc.problem)}
    if isinstance(exc, UsageError):
        return {"code": "USAGE", "message": str(exc)}
    return {"code": type(exc).__name__, "message": cli_spelling(str(exc))}


def exit_code(exc: BaseException) -> int:
    return 2 if isinstance(exc, UsageError | ConfigError) else 1
