"""A custom interceptor: count calls, failures and latency per RPC.

Every JobDistributor call goes through the interceptor chain; subclass
`jdkit.Interceptor` and override `unary` (and `stream` for server-streaming
calls such as health watches) to see each call, its outcome and its timing.
User interceptors sit outside retries, so one logical call is measured once,
however many attempts it took.

    python examples/metrics_interceptor.py
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import jdkit
from jdkit import Call, Interceptor, Message, StreamNext, UnaryNext
from jdkit.pb import job, node


@dataclass
class Stats:
    calls: int = 0
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    seconds: list[float] = field(default_factory=list)

    @property
    def p50_ms(self) -> float:
        s = sorted(self.seconds)
        return s[len(s) // 2] * 1000 if s else 0.0

    @property
    def max_ms(self) -> float:
        return max(self.seconds, default=0.0) * 1000


class MetricsInterceptor(Interceptor):
    """Per-method call counts, error counts by status, and latencies."""

    def __init__(self) -> None:
        self.by_method: dict[str, Stats] = defaultdict(Stats)

    async def unary(self, call: Call, proceed: UnaryNext) -> Message:
        stats = self.by_method[call.method.name]
        stats.calls += 1
        started = time.perf_counter()
        try:
            return await proceed(call)
        except jdkit.RPCError as exc:
            stats.errors[exc.code.name] += 1
            raise
        finally:
            stats.seconds.append(time.perf_counter() - started)

    async def _timed_stream(self, call: Call, proceed: StreamNext) -> AsyncIterator[Message]:
        stats = self.by_method[call.method.name]
        stats.calls += 1
        started = time.perf_counter()
        try:
            async for message in proceed(call):
                yield message
        finally:
            stats.seconds.append(time.perf_counter() - started)

    def stream(self, call: Call, proceed: StreamNext) -> AsyncIterator[Message]:
        return self._timed_stream(call, proceed)

    def report(self) -> str:
        lines = [f"{'method':<22} {'calls':>5} {'errors':<24} {'p50 ms':>7} {'max ms':>7}"]
        for name, s in sorted(self.by_method.items()):
            errors = ", ".join(f"{k}={v}" for k, v in sorted(s.errors.items())) or "-"
            lines.append(f"{name:<22} {s.calls:>5} {errors:<24} {s.p50_ms:>7.2f} {s.max_ms:>7.2f}")
        return "\n".join(lines)


async def main() -> None:
    metrics = MetricsInterceptor()
    async with jdkit.EmbeddedProvider(interceptors=[metrics]) as jd:
        ids = []
        for i in range(5):
            resp = await jd.register_node(
                node.RegisterNodeRequest(name=f"n{i}", public_key=os.urandom(32).hex())
            )
            assert resp.node is not None
            ids.append(resp.node.id)
        await asyncio.gather(*(jd.get_node(node.GetNodeRequest(id=i)) for i in ids))
        await jd.list_nodes()
        for missing in ("node_nope", "node_gone"):
            try:
                await jd.get_node(node.GetNodeRequest(id=missing))
            except jdkit.NotFoundError:
                pass
        try:
            await jd.propose_job(job.ProposeJobRequest(node_id=ids[0], spec="not toml ["))
        except jdkit.InvalidArgumentError:
            pass

    print(metrics.report())
    assert metrics.by_method["RegisterNode"].calls == 5
    assert metrics.by_method["GetNode"].calls == 7
    assert metrics.by_method["GetNode"].errors == {"NOT_FOUND": 2}
    assert metrics.by_method["ProposeJob"].errors == {"INVALID_ARGUMENT": 1}


if __name__ == "__main__":
    asyncio.run(main())
