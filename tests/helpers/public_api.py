"""What the public-API tests share: the public modules and their names."""

from __future__ import annotations

import importlib
import inspect
import re

PUBLIC = [
    "jdkit",
    "jdkit.auth",
    "jdkit.server",
    "jdkit.testing",
    "jdkit.pb",
    "jdkit.selectors",
    "jdkit.display",
    "jdkit.otel",
]
PRIVATE_IMPORT = re.compile(r"^\s*(from\s+jdkit\._|import\s+jdkit\._)|\bjdkit\._[a-z]", re.M)


def exported() -> list[tuple[str, str]]:
    return [(m, n) for m in PUBLIC for n in importlib.import_module(m).__all__]


def generated(obj: object) -> bool:
    return str(getattr(obj, "__module__", "")).startswith("jdkit._proto")


def ours(obj: object) -> bool:
    """A class or function jdkit defines (not generated, not another library's)."""
    module = getattr(obj, "__module__", None)
    return (
        (inspect.isclass(obj) or inspect.isfunction(obj))
        and isinstance(module, str)
        and (module == "jdkit" or module.startswith("jdkit."))
        and not generated(obj)
    )


def public_objects() -> list[tuple[str, object]]:
    seen: dict[int, tuple[str, object]] = {}
    for module_name, name in exported():
        obj = getattr(importlib.import_module(module_name), name)
        if ours(obj):
            seen.setdefault(id(obj), (f"{module_name}.{name}", obj))
    return list(seen.values())
