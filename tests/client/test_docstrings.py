"""`help(jd)` and `pytest --fixtures` explain every public method and fixture."""

from __future__ import annotations

import inspect

import jdkit
from jdkit import pytest_plugin


def test_every_public_client_method_has_a_docstring() -> None:
    missing = [
        name
        for name, member in inspect.getmembers(jdkit.JobDistributor)
        if not name.startswith("_") and callable(member) and not (member.__doc__ or "").strip()
    ]
    assert missing == []


def test_every_plugin_fixture_has_a_docstring() -> None:
    for name in ("jd_server", "jd", "jd_dry_run", "jd_docker"):
        fixture = getattr(pytest_plugin, name)
        unwrap = getattr(fixture, "_get_wrapped_function", None)
        func = unwrap() if unwrap is not None else fixture
        assert (func.__doc__ or "").strip(), name
