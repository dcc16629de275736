"""Public names show their public home, not the private module defining them.

A class or function jdkit exports is defined in a private module
(`ClientOptions` in `jdkit._options`), but `help()`, tracebacks, reprs and
pickle name an object by its `__module__`: so each public module sets it to
itself for the names it exports, as httpx does. The names `jdkit` loads on
first use (its `_LAZY` table) are published by the private module they come
from, when it loads (`publish_lazy`), because they reach users before any
lookup through `jdkit` (`jdkit.connect()` returns an `EmbeddedProvider`, a
pager raises `ProviderNotInitializedError`).
The first home wins: `show` is `jdkit.show` even when imported from
`jdkit.display`.

Two kinds of names keep their `__module__`:
- the generated messages and enums (`jdkit._proto...`, e.g. `Selector`,
  `ServingStatus`): betterproto2 resolves a message's field types in
  `sys.modules[cls.__module__]`, and jdkit names a message's proto package
  after it (the server's `proto_name`, the rulebook's caps);
- what other libraries define (`Message` is betterproto2's) and values
  without a module of their own (constants, type aliases).

A class's annotations are strings (`from __future__ import annotations`),
which `typing.get_type_hints` evaluates in `sys.modules[cls.__module__]`:
the public module, which lacks the private module's imports. So publishing a
class first evaluates its own annotations where they were written and
stores the result (`_resolve_annotations`); one that cannot be evaluated yet
(a name imported for type checkers only) stays a `ForwardRef` bound to the
defining module, as it resolved before the move.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import typing
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any


def _movable(obj: object) -> bool:
    module = getattr(obj, "__module__", None)
    return (
        (inspect.isclass(obj) or inspect.isfunction(obj))
        and isinstance(module, str)
        and module.startswith("jdkit.")
        and any(part.startswith("_") for part in module.split("."))  # a private module
        and not module.startswith("jdkit._proto")
    )


def publish(home: str, *objects: object) -> None:
    """Set `__module__` of each class or function to `home`, unless it is
    generated, another library's, or already published (the first home wins);
    a class's private bases (`JobDistributor`'s per-concern mixins) too."""
    for obj in objects:
        if _movable(obj):
            if inspect.isclass(obj):
                _resolve_annotations(obj)
            obj.__module__ = home
            if inspect.isclass(obj):  # the private mixins it is made of: help() lists them
                publish(home, *obj.__mro__[1:])


def _resolve_annotations(cls: type) -> None:
    """Evaluate `cls`'s own string annotations in the module that wrote them
    (before its `__module__` moves) and store them, dataclass fields' `type`
    too; one that names what only type checkers import becomes a
    `ForwardRef` to that module, which `typing.get_type_hints` resolves there."""
    annotations = inspect.get_annotations(cls)
    if not annotations:
        return
    module = cls.__module__
    # as get_type_hints looks names up: the module first, then the class body
    scope = (dict(vars(cls)), getattr(sys.modules.get(module), "__dict__", {}))
    resolved: dict[str, object] = {}
    for name, value in annotations.items():
        # a stand-in class in the same module: get_type_hints' own rules (ClassVar, nested strings)
        probe = type(cls.__name__, (), {"__annotations__": {name: value}, "__module__": module})
        try:
            value = typing.get_type_hints(probe, *scope, include_extras=True)[name]
        except Exception:  # a name not importable at run time: resolve it later, there
            if isinstance(value, str):
                value = typing.ForwardRef(value, module=module, is_class=True)
        resolved[name] = value
    cls.__annotations__ = resolved
    if dataclasses.is_dataclass(cls):
        for field in dataclasses.fields(cls):
            if field.name in resolved and not isinstance(resolved[field.name], typing.ForwardRef):
                field.type = resolved[field.name]


def publish_lazy(namespace: Mapping[str, object], target: str | None = None) -> None:
    """`publish` to `jdkit` what `jdkit._LAZY` imports on first use from this
    module, or from `target` (as `_LAZY` writes it: `._providers`) for the
    names a module re-exports lazily."""
    import jdkit

    target = target or "." + str(namespace["__name__"]).removeprefix("jdkit.")
    names = [n for n, where in jdkit._LAZY.items() if where == target]
    publish("jdkit", *(namespace[n] for n in names if n in namespace))


def publish_all(namespace: dict[str, Any]) -> None:
    """`publish` what the module of `namespace` lists in `__all__`, to itself,
    and give it a `__dir__` that lists only its public names (`public_dir`)."""
    names: Iterable[str] = namespace.get("__all__", ())
    publish(str(namespace["__name__"]), *(namespace[n] for n in names if n in namespace))
    namespace["__dir__"] = lambda: public_dir(namespace)


def public_dir(namespace: Mapping[str, object]) -> list[str]:
    """`dir()` of a public module: its `__all__`, dunders and loaded public submodules.

    Not the helpers it imports (`ConfigError`, `Iterable`, `annotations`).
    """
    own = f"{namespace['__name__']}."
    names: Iterable[str] = namespace.get("__all__", ())  # type: ignore[assignment]
    return sorted(
        set(names)
        | {n for n in namespace if n.startswith("__") and n.endswith("__")}
        | {
            n
            for n, v in namespace.items()
            if isinstance(v, ModuleType) and not n.startswith("_") and v.__name__.startswith(own)
        }
    )


def no_attribute(module: str, name: str, renamed: Mapping[str, str]) -> AttributeError:
    """The AttributeError for a missing name, pointing at its 0.2 name when
    `name` is one 0.1 had (CHANGELOG.md, "Migration from 0.1")."""
    new = renamed.get(name)
    hint = f"; renamed to {new} in 0.2 (see the changelog)" if new else ""
    return AttributeError(f"module {module!r} has no attribute {name!r}{hint}")
