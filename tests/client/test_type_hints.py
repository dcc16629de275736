"""`typing.get_type_hints` works on the public API although each public class
shows its public home as `__module__` (jdkit/_exports.py evaluates a class's
string annotations where they were written before moving it)."""

from __future__ import annotations

import dataclasses
import inspect
import typing

import pytest

from tests.helpers.public_api import public_objects

#: Hints naming what the module imports for type checkers only, on purpose:
#: the client side loaded on first use (layering: jdkit._wsrpc and the
#: providers' base load no client), or an
#: optional extra (httpx, aiodocker, rich) imported only when used. Each
#: resolves at run time once that is imported; get_type_hints fails on it
#: as it does on any TYPE_CHECKING-only name.
LAZY = {
    "jdkit.JobDistributor.with_dry_run": "Journal",
    "jdkit.Provider.initialize": "JobDistributor",
    "jdkit.SimulatedFleet.__init__": "JobDistributor",
    "jdkit.SimulatedFleet.register": "JobDistributor",
    "jdkit.sweep_docker": "Docker",
    "jdkit.auth.OAuth2ClientCredentials.__init__": "httpx",
    "jdkit.server.JWKSVerifier.__init__": "httpx",
    "jdkit.testing.ThreadedProvider.__init__": "Provider",
    "jdkit.display.Table.rich_table": "RenderableType",
}


def _targets() -> list[tuple[str, object]]:
    """Every public class and function, and each class's public methods and `__init__`."""
    out: list[tuple[str, object]] = []
    for label, obj in public_objects():
        out.append((label, obj))
        if inspect.isclass(obj):
            out += [
                (f"{label}.{name}", value)
                for name, value in vars(obj).items()
                if inspect.isfunction(value) and (not name.startswith("_") or name == "__init__")
            ]
    return out


@pytest.mark.parametrize(
    ("label", "obj"), _targets(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_get_type_hints_resolves(label: str, obj: object) -> None:
    if label in LAZY:
        with pytest.raises(NameError, match=LAZY[label]):
            typing.get_type_hints(obj)
        return
    hints = typing.get_type_hints(obj)
    assert not any(isinstance(h, str | typing.ForwardRef) for h in hints.values()), label


@pytest.mark.parametrize(
    ("label", "cls"),
    [(label, obj) for label, obj in public_objects() if dataclasses.is_dataclass(obj)],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_dataclass_field_types_are_types(label: str, cls: type) -> None:
    """`dataclasses.fields(cls)[i].type` is the evaluated type, not the source string."""
    if label in LAZY:
        return
    for field in dataclasses.fields(cls):
        assert not isinstance(field.type, str), f"{label}.{field.name}: {field.type!r}"


def test_get_type_hints_on_the_regressed_classes() -> None:
    """The classes whose hints named their private module's imports (Status, Message, ...)."""
    import jdkit

    assert typing.get_type_hints(jdkit.RPCError)["code"].__name__ == "Status"
    assert "request" in typing.get_type_hints(jdkit.Call)
    assert typing.get_type_hints(jdkit.JournalEntry)
    assert typing.get_type_hints(jdkit.SimulatedNode)["on_proposal"] == jdkit.ProposalPolicy


def test_text_fields_read_evaluated_field_types() -> None:
    """The CLI flags and JD_* variables come from the fields' types: the same
    with the evaluated types as with the source strings they were made from."""
    import jdkit
    from jdkit._option_text import text_fields
    from jdkit._options import TEXT_FIELDS

    again = text_fields(jdkit.ClientOptions)
    assert [f.name for f in again] == [f.name for f in TEXT_FIELDS]
