"""A custom provider: a JD run as a separate process (`jdkit serve`).

A provider owns a JD connection's whole lifecycle: `_start()` brings up
whatever is needed and returns a connected `JobDistributor`; `_stop()`
releases it all, and must cope with a start that failed half way. The base
class makes `initialize()` idempotent, gives `async with provider as jd:`,
shields teardown from cancellation, and offers dry-run on top for free.

This one starts `python -m jdkit serve --port 0 --db FILE` as a child process,
reads the address it prints, and stops it with SIGTERM (then SIGKILL). The
same shape fits a JD you start with systemd, kubectl port-forward, an SSH
tunnel, or a binary of your own.

    python examples/custom_provider.py
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import tempfile

import jdkit
from jdkit.pb import node


class SubprocessProvider(jdkit.Provider):
    """`jdkit serve` in a child process; state in a SQLite file that outlives it."""

    name = "subprocess"

    def __init__(self, db: str, *, ready_timeout: float = 30.0, dry_run: bool = False) -> None:
        super().__init__(dry_run=dry_run)
        self.db = db
        self.ready_timeout = ready_timeout
        self.process: asyncio.subprocess.Process | None = None
        self.address: str | None = None

    async def _start(self) -> jdkit.JobDistributor:
        self.process = await asyncio.create_subprocess_exec(
            # a throwaway database: the CSA key may be sealed with the public dev
            # secret; a real one would set CSA_KEY_ENCRYPTION_SECRET instead
            sys.executable, "-m", "jdkit", "serve", "--port", "0", "--db", self.db,
            "--insecure-dev-secret",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), self.ready_timeout)
        except TimeoutError:
            raise jdkit.JDError(f"jdkit serve did not start in {self.ready_timeout}s") from None
        m = re.fullmatch(r"listening on (\S+)", line.decode().strip())
        if m is None:
            raise jdkit.JDError(f"jdkit serve said {line!r} instead of where it listens")
        self.address = m[1]
        jd = jdkit.JobDistributor.connect(self.address)
        try:
            await jd.wait_ready(self.ready_timeout)
        except BaseException:
            await jd.aclose()
            raise
        return jd

    async def _stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "jd.sqlite")
        provider = SubprocessProvider(db)
        async with provider as jd:
            resp = await jd.register_node(
                node.RegisterNodeRequest(name="persistent", public_key=os.urandom(32).hex())
            )
            assert resp.node is not None
            pid = provider.process.pid if provider.process else None
            print(f"registered {resp.node.id} on the JD in process {pid}")
        assert provider.process is None  # stopped on exit

        # A second run on the same database finds the node again.
        async with SubprocessProvider(db) as jd:
            names = [n.name for n in (await jd.list_nodes()).nodes]
            print(f"after a restart the JD still knows: {names}")
            assert names == ["persistent"]

        # Dry-run comes with the base class.
        async with SubprocessProvider(db, dry_run=True) as jd:
            await jd.disable_node(node.DisableNodeRequest(id=resp.node.id))
            assert jd.journal is not None
            print(jd.journal.plan())


if __name__ == "__main__":
    asyncio.run(main())
