"""`async with` for the node side's long-lived objects: start on entry, stop on exit."""

from __future__ import annotations

from typing import Self


class StartStop:
    """`async with x:` awaits `x.start()`, and `x.stop()` on the way out."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
