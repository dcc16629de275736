"""Cell text: how one field value becomes the text of a cell, and how rich
colours a status cell by that text."""

from __future__ import annotations

import datetime as _dt
import enum
import json
from typing import Any

import betterproto2

from jdkit._json import to_json_dict
from jdkit.pb import label
from jdkit.selectors import format_labels


def fmt_time(value: _dt.datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(_dt.UTC)
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    return value.strftime("%Y-%m-%d %H:%M:%S")


def fmt_bool(value: bool) -> str:
    return "yes" if value else "no"


def short(value: str, keep: int = 8) -> str:
    """`abcdef12…9f0e` for long keys; ids and short strings stay whole."""
    if len(value) <= 2 * keep + 2:
        return value
    return f"{value[:keep]}…{value[-4:]}"


def fmt_value(value: Any) -> str:
    """Any field value as one cell of text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return fmt_bool(value)
    if isinstance(value, _dt.datetime):
        return fmt_time(value)
    if isinstance(value, enum.Enum):
        return str(value.name)
    if isinstance(value, betterproto2.Message):
        return json.dumps(to_json_dict(value), separators=(",", ":"), sort_keys=True)
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, label.Label) for v in value):
            return format_labels(value)
        return ", ".join(fmt_value(v) for v in value)
    return str(value)


STATUS_STYLE = {
    "PROPOSED": "yellow",
    "PENDING": "yellow",
    "APPROVED": "green",
    "REJECTED": "red",
    "CANCELLED": "magenta",
    "REVOKED": "dim",
    "DELIVERED": "green",
    "ACKNOWLEDGED": "green",
    "FAILED": "red",
    "yes": "green",
    "no": "red",
    "ok": "green",
    "failed": "red",
}
