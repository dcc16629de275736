"""Public names show their public home: `__module__` (help(), tracebacks,
reprs, pickle) is the public module exporting them (see jdkit/_exports.py)."""

from __future__ import annotations

import importlib
import inspect
import pathlib
import pickle
import pydoc
import re
import subprocess
import sys
import traceback

import pytest
from grpclib.const import Status

from jdkit.pb import job
from tests.helpers.public_api import PUBLIC, exported, generated, ours, public_objects

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _home(obj: object) -> str:
    """The first public module exporting `obj`: `show` is `jdkit.show`."""
    for module_name in PUBLIC:
        module = importlib.import_module(module_name)
        if any(getattr(module, n) is obj for n in module.__all__):
            return module_name
    raise AssertionError(obj)


@pytest.mark.parametrize(("module_name", "name"), exported())
def test_every_public_name_shows_its_public_home(module_name: str, name: str) -> None:
    obj = getattr(importlib.import_module(module_name), name)
    if generated(obj):
        # Generated messages and enums (Selector, Op, ServingStatus) keep their
        # module: betterproto2 resolves a message's field types in
        # sys.modules[cls.__module__] (Message._type_hints), and jdkit names a
        # message's proto package after it (the server's proto_name, the
        # rulebook's caps). They pickle by their own (importable) path.
        assert pickle.loads(pickle.dumps(obj)) is obj
        return
    if not ours(obj):
        return  # values (METHODS, DEV_CSA_SECRET), type aliases, betterproto2's Message
    assert obj.__module__ == _home(obj), f"{module_name}.{name}"
    assert obj.__qualname__ == name  # pickle resolves module + qualname
    assert pickle.loads(pickle.dumps(obj)) is obj


def test_lazily_imported_names_have_their_home_as_they_load() -> None:
    """Without a lookup through `jdkit`: `jdkit.connect()` hands out an
    EmbeddedProvider, the Docker fixture raises DockerProviderError."""
    code = (
        "import importlib, inspect, jdkit\n"
        "bad = []\n"
        "for name, target in jdkit._LAZY.items():\n"
        "    obj = getattr(importlib.import_module(target, 'jdkit'), name)\n"
        "    mod = getattr(obj, '__module__', '')\n"
        "    if (inspect.isclass(obj) or inspect.isfunction(obj)) and mod.startswith('jdkit._')"
        " and not mod.startswith('jdkit._proto'):\n"
        "        bad.append((name, mod))\n"
        "assert not bad, bad\n"
        "assert type(jdkit.connect()).__module__ == 'jdkit'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def _exception_classes() -> list[type[BaseException]]:
    return [
        obj
        for module_name, name in exported()
        if inspect.isclass(obj := getattr(importlib.import_module(module_name), name))
        and issubclass(obj, BaseException)
    ]


def _sample(param: inspect.Parameter) -> object:
    """A value for a constructor parameter, by its name or annotation's text."""
    text = str(param.annotation)
    if param.name == "target":  # ProposalWaitError's status
        return job.ProposalStatus.APPROVED
    if text.startswith("dict"):
        return {}
    if text.startswith("float"):
        return 1.5
    if text == "Status":
        return Status.NOT_FOUND
    return "boom"


@pytest.mark.parametrize("cls", _exception_classes(), ids=lambda c: c.__name__)
def test_exceptions_pickle_and_print_their_public_name(cls: type[BaseException]) -> None:
    try:
        params = list(inspect.signature(cls).parameters.values())
    except ValueError:  # Exception's own constructor
        params = []
    args = [_sample(p) for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    kwargs = {
        p.name: _sample(p) for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty
    }
    exc = cls(*(args or ["boom"]), **kwargs)
    line = traceback.format_exception_only(cls, exc)[-1]
    assert line.startswith(f"{cls.__module__}.{cls.__name__}: ")
    assert ".\x5f" not in line.split(":")[0]  # no private module in the traceback
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is cls and str(again) == str(exc)
    assert vars(again).keys() == vars(exc).keys()


@pytest.mark.parametrize(
    ("label", "obj"), public_objects(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_help_names_no_private_module(label: str, obj: object) -> None:
    """help() of a public class lists its bases (the per-concern mixins too)
    by their public home; only generated message types keep theirs."""
    text = pydoc.plain(pydoc.render_doc(obj))
    private = set(re.findall(r"jdkit\._(?!proto\b)[\w.]+", text))
    assert not private, f"{label}: {sorted(private)}"


def test_help_renders_generated_messages() -> None:
    """help(jdkit.Selector) used to fail an assert inside betterproto2 (see jdkit/pb.py)."""
    import jdkit

    assert "class Selector" in pydoc.plain(pydoc.render_doc(jdkit.Selector))
    for obj in (job.Job, jdkit.pb.node.Node, jdkit.pb.node, jdkit):
        assert pydoc.plain(pydoc.render_doc(obj))
