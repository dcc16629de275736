"""jdkit's pytest plugin (loaded through the `pytest11` entry point)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("jdkit")
    group.addoption(
        "--jd-docker",
        action="store_true",
        default=False,
        help="jdkit: run tests that use the jd_docker fixture (a JD in Docker)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "jd_docker: the test uses a JD in Docker (jd_docker)")
