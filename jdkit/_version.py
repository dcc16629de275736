"""`min_version`: refuse a JD older than the caller needs, once, before the first call.

Versions compare as numbers (`v0.10.2` > `0.9.0`); a pre-release (`1.2.0-rc1`)
sorts below its release. A JD reporting something that is no version (a
commit hash, `dev`) cannot be compared, which is an error too: a script that
asked for a minimum should not run against a server it cannot vouch for.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from jdkit._exceptions import ConfigError, VersionError
from jdkit._interceptors import Call, Interceptor, Message, UnaryNext

if TYPE_CHECKING:
    from jdkit._client import JobDistributor

__all__ = ["VERSION_PATH", "VersionCheck", "parse_version"]

VERSION_PATH = "/api.app.v1.AppService/Version"
_VERSION = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?([-+~.]?)(.*)$", re.IGNORECASE)


def parse_version(field: str, text: str) -> tuple[int, int, int, int]:
    """(major, minor, patch, 1 for a release / 0 for a pre-release); ConfigError if not one."""
    m = _VERSION.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ConfigError(field, f"{text!r} is not a version like 1.2.3")
    major, minor, patch, sep, rest = m.groups()
    release = 1 if not rest or sep == "+" or rest.isdigit() else 0
    return int(major), int(minor or 0), int(patch or 0), release


class VersionCheck(Interceptor):
    """Outermost in the chain: the first call waits for one Version call and its verdict.

    A dry-run view shares its client's channel, so its check takes the version
    its client's check asked for (`share`): one Version call per client.
    """

    def __init__(self, client: JobDistributor, minimum: str) -> None:
        self.client = client
        self.minimum = minimum
        self._wanted = parse_version("min_version", minimum)
        self._asked: asyncio.Future[str] | None = None  # the version JD reports
        self._source = self  # whose Version call this check goes by
        self._passed = False

    def share(self, other: VersionCheck) -> None:
        """Go by the version `other` (the check of the client a view is of) asks for."""
        self._source = other._source

    async def unary(self, call: Call, proceed: UnaryNext) -> Message:
        if call.method.path != VERSION_PATH:
            await self.verify()
        return await proceed(call)

    async def verify(self) -> None:
        """Check once (single-flight); a failed *call* is tried again next time."""
        if not self._passed:
            self._compare(await self._source._reported())
            self._passed = True

    async def _reported(self) -> str:
        asked = self._asked
        if asked is None or (asked.done() and (asked.cancelled() or asked.exception())):
            asked = self._asked = asyncio.ensure_future(self._ask())
        return await asyncio.shield(asked)

    async def _ask(self) -> str:
        return (await self.client.version()).version

    def _compare(self, reported: str) -> None:
        try:
            have = parse_version("version", reported)
        except ConfigError:
            raise VersionError(
                f"JD at {self.client.target} reports version {reported!r}, which cannot be "
                f"compared with min_version {self.minimum!r}",
                reported=reported,
                minimum=self.minimum,
            ) from None
        if have < self._wanted:
            raise VersionError(
                f"JD at {self.client.target} is version {reported}, older than "
                f"min_version {self.minimum}",
                reported=reported,
                minimum=self.minimum,
            )
