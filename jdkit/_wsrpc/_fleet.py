"""`SimulatedFleet`: many simulated nodes in one process, for scale tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from jdkit._exceptions import ConfigError
from jdkit._wsrpc._keys import NodeKeyLike
from jdkit._wsrpc._lifecycle import StartStop
from jdkit._wsrpc._node import SimulatedNode

if TYPE_CHECKING:
    from jdkit._client import JobDistributor
    from jdkit._proto.api.label import Label


class SimulatedFleet(StartStop):
    """`count` nodes (or one per key in `keys`) sharing every `SimulatedNode` option.

        async with SimulatedFleet(srv.node_address, jd_key, 1000, register_with=jd) as fleet:
            fleet.node_ids  # registered through the API before connecting

    `register_with`: a `JobDistributor`; each node is registered
    (`RegisterNode`, name `name_prefix` + index, `labels`) before it connects.
    `concurrency` bounds simultaneous handshakes and registrations.
    """

    def __init__(
        self,
        jd_node_address: str,
        jd_public_key_hex: str,
        count: int | None = None,
        *,
        keys: Sequence[NodeKeyLike] | None = None,
        register_with: JobDistributor | None = None,
        name_prefix: str = "sim-node-",
        labels: Sequence[Label] = (),
        concurrency: int = 64,
        **node_options: Any,
    ) -> None:
        if (count is None) == (keys is None):
            raise ConfigError("count", "give either count or keys")
        if count is not None and count < 0:
            raise ConfigError("count", f"{count} is negative")
        if concurrency < 1:
            raise ConfigError("concurrency", "must be at least 1")
        key_list: list[NodeKeyLike | None] = (
            list(keys) if keys is not None else [None] * (count or 0)
        )
        self.nodes = [
            SimulatedNode(
                jd_node_address,
                jd_public_key_hex,
                private_key=k,
                name=f"{name_prefix}{i}",
                **node_options,
            )
            for i, k in enumerate(key_list)
        ]
        self.name_prefix = name_prefix
        self.labels = list(labels)
        self._jd = register_with
        self._sem = asyncio.Semaphore(concurrency)
        #: node id -> node, for registered nodes
        self.by_id: dict[str, SimulatedNode] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def node_ids(self) -> list[str]:
        return list(self.by_id)

    async def register(self, jd: JobDistributor) -> list[str]:
        """Register every node through the API; returns their node ids in order."""
        from jdkit.pb import node as node_pb

        async def one(i: int, n: SimulatedNode) -> str:
            async with self._sem:
                resp = await jd.register_node(
                    node_pb.RegisterNodeRequest(
                        name=n.name, public_key=n.public_key, labels=self.labels
                    )
                )
            assert resp.node is not None
            return resp.node.id

        ids = await asyncio.gather(*(one(i, n) for i, n in enumerate(self.nodes)))
        self.by_id.update(zip(ids, self.nodes, strict=True))
        return list(ids)

    async def start(self) -> None:
        if self._jd is not None and not self.by_id:
            await self.register(self._jd)

        async def one(n: SimulatedNode) -> None:
            async with self._sem:
                await n.start()

        results = await asyncio.gather(*(one(n) for n in self.nodes), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.stop()
            raise errors[0]

    async def stop(self) -> None:
        await asyncio.gather(*(n.stop() for n in self.nodes), return_exceptions=True)

    @property
    def connected(self) -> int:
        return sum(1 for n in self.nodes if n.connected)

    async def wait_until(
        self, predicate: Callable[[SimulatedNode], bool], timeout: float = 30.0
    ) -> None:
        """Wait until `predicate(node)` holds for every node."""
        async with asyncio.timeout(timeout):
            await asyncio.gather(
                *(n.wait_until(lambda n=n: predicate(n), timeout) for n in self.nodes)  # type: ignore[misc]
            )
