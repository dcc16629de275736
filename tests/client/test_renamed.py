"""A 0.1 name that 0.2 renamed fails with a pointer to its new name."""

from __future__ import annotations

import pytest

import jdkit
import jdkit.server


@pytest.mark.parametrize(
    ("module", "old", "new"),
    [
        (jdkit, "sweep", "jdkit.sweep_docker"),
        (jdkit, "Backoff", "jdkit.NodeBackoff"),
        (jdkit, "NotConnectedError", "jdkit.NodeNotConnectedError"),
        (jdkit.server, "StaticTokens", "jdkit.server.StaticTokenVerifier"),
        (jdkit.server, "serve_forever", "jdkit.server.serve"),
        (jdkit.server, "AuthHook", "jdkit.server.Verifier"),
    ],
)
def test_a_renamed_name_points_at_its_new_name(module: object, old: str, new: str) -> None:
    with pytest.raises(AttributeError, match=f"renamed to {new} in 0.2"):
        getattr(module, old)
    assert hasattr(module, new.rsplit(".", 1)[1])


def test_an_unknown_name_is_a_plain_attribute_error() -> None:
    with pytest.raises(AttributeError) as info:
        jdkit.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    assert str(info.value) == "module 'jdkit' has no attribute 'no_such_name'"
