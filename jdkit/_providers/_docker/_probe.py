"""Readiness: when a JD container counts as up, and how a dead one is described."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio

# Readiness polls back off exponentially from 50 ms up to these caps: start-up
# takes seconds, so a higher cap would mostly add idle waiting.
PG_POLL_MAX = 0.25
JD_POLL_MAX = 0.5


def exited(role: str, state: Mapping[str, Any]) -> str:
    status = state.get("Status") or "gone"
    what = f"exited (code {state.get('ExitCode')})" if status == "exited" else status
    oom = ", killed for lack of memory" if state.get("OOMKilled") else ""
    error = f": {state['Error']}" if state.get("Error") else ""
    return f"the {role} container {what}{oom}{error}"


class HealthProbe:
    """One readiness check: gRPC health SERVING, then GET /healthz -> 200."""

    def __init__(self, grpc_port: int, healthz_port: int, check_healthz: bool) -> None:
        self.grpc_port = grpc_port
        self.healthz_port = healthz_port
        self.check_healthz = check_healthz

    async def __aenter__(self) -> HealthProbe:
        from grpclib.client import Channel

        from jdkit.pb import health

        self._channel = Channel("127.0.0.1", self.grpc_port)
        self._stub = health.HealthStub(self._channel)
        self._http: Any = None
        if self.check_healthz:
            import aiohttp

            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._channel.close()
        if self._http is not None:
            # Shielded: a cleanup await hit by the pending cancellation would
            # hide the timeout that cancelled us.
            with anyio.CancelScope(shield=True):
                await self._http.close()

    async def check(self) -> tuple[bool, str]:
        from jdkit.pb import health

        serving = health.HealthCheckResponseServingStatus.SERVING
        outcome: list[health.HealthCheckResponse | str] = []

        async def grpc_check() -> None:
            try:
                with anyio.fail_after(2):
                    outcome.append(await self._stub.check(health.HealthCheckRequest(service="")))
            except TimeoutError:
                outcome.append("gRPC health check: no answer within 2s")
            except Exception as exc:
                outcome.append(f"gRPC health check: {type(exc).__name__}: {exc}")

        # In a task of its own: when a connection drops (docker-proxy accepts
        # before JD listens, then closes), grpclib cancels the awaiting task
        # and raises its own error instead, leaving a cancellation request
        # counted on that task (Task.cancelling()). In our task, that would
        # make the enclosing anyio.fail_after take its own timeout for an
        # outside cancellation and let CancelledError escape.
        async with anyio.create_task_group() as tg:
            tg.start_soon(grpc_check)
        reply = outcome[0]
        if isinstance(reply, str):
            return False, reply
        if reply.status != serving:
            return False, f"gRPC health: {reply.status.name}"
        if self._http is None:
            return True, "SERVING"
        try:
            url = f"http://127.0.0.1:{self.healthz_port}/healthz"
            async with self._http.get(url) as resp:
                if resp.status == 200:
                    return True, "SERVING, /healthz 200"
                return False, f"/healthz answered {resp.status}"
        except Exception as exc:
            return False, f"/healthz: {type(exc).__name__}: {exc}"
