"""Reading what the user gave: spec files, labels, selectors, the nodes they name."""

from __future__ import annotations

import sys
import tomllib
import uuid
from collections.abc import Sequence
from typing import Any

from jdkit import selectors
from jdkit._exceptions import ConfigError
from jdkit.pb import label


def read_spec(path: str) -> str:
    """The spec text from `path` or stdin (`-`), checked locally so mistakes are named
    before anything is sent: valid TOML with an `externalJobID` UUID."""
    where = "stdin" if path == "-" else path
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
    except FileNotFoundError:
        raise ConfigError("--spec", f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("--spec", f"cannot read {where}: {exc}") from None
    if not text.strip():
        raise ConfigError("--spec", f"{where} is empty")
    try:
        doc = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ConfigError("--spec", f"{where} is not valid TOML: {exc}") from None
    ext = doc.get("externalJobID")
    if not isinstance(ext, str) or not ext:
        raise ConfigError(
            "--spec", f"{where} has no externalJobID (every JD job spec needs a UUID there)"
        )
    try:
        uuid.UUID(ext)
    except ValueError:
        raise ConfigError("--spec", f"externalJobID {ext!r} in {where} is not a UUID") from None
    return text


def labels_of(items: Sequence[str], flag: str = "--label") -> list[label.Label]:
    try:
        return selectors.parse_labels(list(items)) if items else []
    except ConfigError as exc:
        raise ConfigError(flag, exc.problem) from None


def selectors_of(items: Sequence[str], flag: str = "-l/--selector") -> list[label.Selector]:
    try:
        return selectors.parse(list(items)) if items else []
    except ConfigError as exc:
        raise ConfigError(flag, exc.problem) from None


async def node_ids_for(
    jd: Any, node_ids: Sequence[str], selector: Sequence[str]
) -> list[str] | None:
    """The nodes `--node` and `-l` name together; None when neither was given."""
    if not node_ids and not selector:
        return None
    out = list(dict.fromkeys(node_ids))
    sels = selectors_of(selector)
    if sels:
        out += [n.id async for n in jd.iter_nodes(selector=sels) if n.id not in out]
    return out
