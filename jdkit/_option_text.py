"""Client options written as text: environment variables and command-line flags.

Each `ClientOptions` field says how it is read from text (`text_field`): a
parser in the field's metadata, else one chosen by its annotation. Every
such field is `JD_<FIELD>` in the environment (`ClientOptions.from_env`) and
`--<field>` on the command line, so a field added with a parser is reachable
from the shell without new code there. Fields that are objects (auth,
interceptors) or that would change what a run does behind the user's back
(`dry_run`) are not read from text.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import re
import typing
from collections.abc import Callable
from typing import Any

from jdkit._exceptions import ConfigError

__all__ = ["TextField", "parse_flag", "text_fields"]

Parser = Callable[[str], Any]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_NONE = {"none", "null"}
_UNITS = {"": 1, "b": 1, "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2, "g": 1024**3,
          "gib": 1024**3}  # fmt: skip
_SIZE_RE = re.compile(r"(\d+)\s*([a-z]*)")


def parse_flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected 1/0, true/false, yes/no; got {raw!r}")


def _seconds(raw: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"not a number of seconds: {raw!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"must be a positive number of seconds, got {raw!r}")
    return seconds


def _seconds_or_none(raw: str) -> float | None:
    value = raw.strip().lower()
    return None if value in _NONE or value == "0" else _seconds(value)


def _bytes_or_none(raw: str) -> int | None:
    value = raw.strip().lower()
    if value in _NONE:
        return None
    match = _SIZE_RE.fullmatch(value)
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"expected a number of bytes (e.g. 4194304, 16MiB) or none, got {raw!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _text_or_none(raw: str) -> str | None:
    value = raw.strip()
    return None if value.lower() in _NONE or not value else value


def parse_retry(raw: str) -> Any:
    """`off` (or 1): no retries; a number: that many attempts per call."""
    from jdkit._retry import RetryPolicy

    value = raw.strip().lower()
    if value in ("off", "no", "false"):
        return RetryPolicy.disabled()
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"expected a number of attempts >= 1 or off, got {raw!r}")
    return RetryPolicy(max_attempts=int(value))


def parse_metadata(raw: str) -> dict[str, Any]:
    """`key=value[,key=value...]`; a `-bin` key's value is base64."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"expected key=value, got an item without '=' (key {key!r})")
        if key.endswith("-bin"):
            try:
                out[key] = base64.b64decode(value.strip() + "=" * (-len(value.strip()) % 4))
            except (binascii.Error, ValueError):
                raise ValueError(f"value of {key!r} is not base64") from None
        else:
            out[key] = value
    return out


#: Parsers by field type, for fields that do not name their own.
_BY_TYPE: dict[object, Parser] = {
    bool: parse_flag,
    bool | None: parse_flag,
    float: _seconds,
    float | None: _seconds_or_none,
    int | None: _bytes_or_none,
    str | None: _text_or_none,
}


#: How `--help` shows a value, by parser.
_METAVARS: dict[Parser, str] = {
    parse_flag: "1|0",
    _seconds: "SECONDS",
    _seconds_or_none: "SECONDS",
    _bytes_or_none: "BYTES",
    _text_or_none: "TEXT",
    parse_retry: "N|off",
    parse_metadata: "KEY=VALUE",
}


@dataclasses.dataclass(frozen=True)
class TextField:
    """One option as the shell spells it."""

    name: str
    parse: Parser
    help: str
    #: given more than once on the command line (values merged, e.g. metadata)
    multiple: bool = False
    env_var: str | None = None
    metavar: str = "TEXT"

    @property
    def env(self) -> str:
        """`JD_<FIELD>`, unless the field names its variable."""
        return self.env_var or f"JD_{self.name.upper()}"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def read(self, raw: str, blame: str) -> Any:
        """The value `raw` stands for, checked as the field checks it; a mistake
        is a ConfigError naming `blame` (the variable or flag written)."""
        from jdkit._options import ClientOptions

        try:
            value = self.parse(raw)
            ClientOptions(**{self.name: value})
        except ConfigError as exc:
            raise ConfigError(blame, exc.problem) from None
        except ValueError as exc:
            raise ConfigError(blame, str(exc)) from None
        return value


def text_fields(cls: type) -> tuple[TextField, ...]:
    """The fields of dataclass `cls` that can be given as text, with their parsers."""
    hints = typing.get_type_hints(cls)  # evaluated types, however the source spells them
    out = []
    for f in dataclasses.fields(cls):
        parse = f.metadata.get("text", _BY_TYPE.get(hints[f.name]))
        if parse is None:
            continue
        meta = f.metadata
        out.append(
            TextField(
                f.name,
                parse,
                meta.get("help", ""),
                multiple=meta.get("multiple", False),
                env_var=meta.get("env"),
                metavar=meta.get("metavar", _METAVARS.get(parse, "TEXT")),
            )
        )
    return tuple(out)
