"""200 concurrent calls across a token expiry, through the client, against the embedded JD."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jdkit import JobDistributor
from jdkit._server import EmbeddedJD
from jdkit.auth import Token, TokenManager
from tests.helpers.auth_helpers import FakeClock


class CountingIssuer:
    """Issues short-lived tokens that the server accepts until they expire."""

    def __init__(self, clock: FakeClock, lifetime: float = 300) -> None:
        self.clock, self.lifetime = clock, lifetime
        self.valid: dict[str, float] = {}
        self.fetches = 0
        self._n = itertools.count()

    async def fetch(self) -> Token:
        self.fetches += 1
        await asyncio.sleep(0.05)  # a slow identity provider widens the race
        value = f"tok-{next(self._n)}"
        expires = self.clock() + self.lifetime
        self.valid[value] = expires
        return Token(value, expires)

    async def verify(self, token: str | None) -> None:
        if token is None or token not in self.valid:
            raise GRPCError(Status.UNAUTHENTICATED, "unknown token")
        if self.clock() >= self.valid[token]:
            raise GRPCError(Status.UNAUTHENTICATED, "token expired")


@pytest.mark.asyncio
async def test_200_calls_across_expiry_cause_one_refresh_and_no_failure() -> None:
    clock = FakeClock()
    issuer = CountingIssuer(clock)
    async with EmbeddedJD.start(auth=issuer.verify) as srv:
        manager = TokenManager(issuer, margin=30, clock=clock)
        async with JobDistributor.connect(
            srv.address, auth=manager, allow_insecure_auth=True
        ) as jd:
            await jd.list_nodes()
            assert issuer.fetches == 1
            clock.advance(280)  # inside the refresh margin: every caller finds it stale
            results = await asyncio.gather(
                *(jd.list_nodes() for _ in range(200)), return_exceptions=True
            )
            failures = [r for r in results if isinstance(r, BaseException)]
            assert failures == []
            assert issuer.fetches == 2  # exactly one refresh for 200 calls

            clock.advance(400)  # now the cached token is past expiry on the server too
            versions = await asyncio.gather(
                *(jd.version() for _ in range(200)), return_exceptions=True
            )
            assert [r for r in versions if isinstance(r, BaseException)] == []
            assert issuer.fetches == 3
