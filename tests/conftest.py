"""Fixtures shared by every component folder.

Helpers that are plain functions or context managers live in the package
`tests.helpers` and are imported explicitly; only fixtures belong here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from jdkit import JobDistributor
from jdkit._server import EmbeddedJD
from tests.helpers.server_fixtures import served

Env = tuple[EmbeddedJD, JobDistributor]


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    """An in-memory embedded JD and a client connected to it."""
    async with served() as pair:
        yield pair
