"""A flag value the request cannot carry (bytes that are no UTF-8, which
Python hands over as lone surrogates) is the same one-line error with
`--dry-run` as without: the dry run refuses it as the client does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jdkit.testing import ThreadedJD

from .test_cli import assert_one_line_error, jdkit, new_key


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedJD]:
    srv = ThreadedJD.start()
    yield srv
    srv.stop()


def test_a_name_that_cannot_be_encoded_is_one_line_in_a_dry_run_too(server: ThreadedJD) -> None:
    key = new_key()
    # "\udcff" is how Python passes the byte 0xff of $'\xff' in argv
    args = ["nodes", "register", "--name", "\udcff", "--public-key", key]
    real = jdkit(*args, url=server.address)
    assert_one_line_error(real, 1, "RegisterNode request cannot be encoded")
    dry = jdkit("--dry-run", *args, url=server.address)
    assert_one_line_error(dry, real.returncode)
    assert dry.stderr == real.stderr
    assert jdkit("--dry-run", "nodes", "list", url=server.address).returncode == 0
