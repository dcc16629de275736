"""Helpers for the embedded-server tests: a running server with a client,
raw gRPC calls for malformed bodies, and a throwaway Postgres."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from grpclib.const import Status

from jdkit import JobDistributor
from jdkit._server import EmbeddedJD
from jdkit.pb import job, label, node


def pubkey(i: int) -> str:
    """A distinct, valid 64-hex public key per integer."""
    return f"{i:064x}"


def spec(ext_id: str | None = None, extra: str = "") -> str:
    ext_id = ext_id or str(uuid.uuid4())
    return f'type = "offchainreporting2"\nexternalJobID = "{ext_id}"\n{extra}'


def lbl(key: str, value: str | None = None) -> label.Label:
    return label.Label(key=key, value=value)


@contextlib.asynccontextmanager
async def served(**kw: Any) -> AsyncIterator[tuple[EmbeddedJD, JobDistributor]]:
    """An embedded JD (in-memory unless `db=`) and a client connected to it."""
    async with EmbeddedJD.start(**kw) as srv:
        async with JobDistributor.connect(srv.address, timeout=10) as jd:
            yield srv, jd


async def add_node(
    jd: JobDistributor, i: int, name: str | None = None, labels: list[label.Label] | None = None
) -> node.Node:
    resp = await jd.register_node(
        node.RegisterNodeRequest(
            name=name or f"node-{i}", public_key=pubkey(i), labels=labels or []
        )
    )
    assert resp.node is not None
    return resp.node


async def propose(
    jd: JobDistributor,
    node_id: str,
    ext_id: str | None = None,
    labels: list[label.Label] | None = None,
) -> job.Proposal:
    resp = await jd.propose_job(
        job.ProposeJobRequest(node_id=node_id, spec=spec(ext_id), labels=labels or [])
    )
    assert resp.proposal is not None
    return resp.proposal


async def raw_call(
    port: int, path: str, body: bytes, metadata: dict[str, str] | None = None
) -> tuple[Status, str | None]:
    """Call `path` with exactly `body` as the one request message."""
    from urllib.parse import unquote

    status, message = await h2_call(port, path, frame(body), headers=metadata)
    assert status is not None, "no grpc-status in the answer"
    return Status(int(status)), unquote(message) if message is not None else None


async def h2_call(
    port: int, path: str, body: bytes, *, headers: dict[str, str] | None = None
) -> tuple[str | None, str | None]:
    """One request on a raw HTTP/2 connection: any headers, any bytes (gRPC framing
    included in `body`). Returns (grpc-status, grpc-message) as the server sent them."""
    import asyncio

    import h2.config
    import h2.connection
    import h2.events

    hdrs = {
        ":method": "POST",
        ":scheme": "http",
        ":path": path,
        ":authority": "localhost",
        "content-type": "application/grpc+proto",
        "te": "trailers",
        **(headers or {}),
    }
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=False
        )
    )
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(k, v) for k, v in hdrs.items() if v is not None], end_stream=not body)
    pending = body

    def pump() -> None:  # send what flow control allows
        nonlocal pending
        while pending:
            room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
            if room <= 0:
                return
            chunk, pending = pending[:room], pending[room:]
            conn.send_data(sid, chunk, end_stream=not pending)

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got: dict[str, str] = {}
    try:
        pump()
        writer.write(conn.data_to_send())
        done = False
        while not done:
            data = await asyncio.wait_for(reader.read(65536), 10)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    got.update({str(k): str(v) for k, v in ev.headers})
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded | h2.events.StreamReset):
                    done = True
            if not done:
                pump()
            writer.write(conn.data_to_send())
    finally:
        writer.close()
    return got.get("grpc-status"), got.get("grpc-message")


def frame(message: bytes) -> bytes:
    """gRPC length-prefixed framing of one uncompressed message."""
    import struct

    return struct.pack(">?I", False, len(message)) + message


# ------------------------------------------------------------ postgres


def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Postgres:
    """A throwaway Postgres cluster owned by the `postgres` OS user."""

    def __init__(self) -> None:
        bindir = _pg_bin()
        if bindir is None:
            if os.environ.get("CI"):
                pytest.fail("Postgres binaries missing in CI (/usr/lib/postgresql/*/bin)")
            pytest.skip("Postgres binaries not installed (apt-get install postgresql)")
        self.bindir = bindir
        self.root = tempfile.mkdtemp(prefix="jdkit-pg-")
        self.port = _free_port()
        self._n = 0
        as_root = os.geteuid() == 0
        self._prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
        if as_root:
            shutil.chown(self.root, "postgres")
        data = os.path.join(self.root, "data")
        self._run(
            "initdb",
            "-D",
            data,
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        self._run(
            "pg_ctl",
            "-D",
            data,
            "-l",
            os.path.join(self.root, "log"),
            "-w",
            "-o",
            f"-p {self.port} -k {self.root} -h 127.0.0.1 -F",
            "start",
        )
        self.data = data

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._prefix, os.path.join(self.bindir, tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        self._n += 1
        name = f"jd_test_{self._n}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Postgres]:
    pg = Postgres()
    try:
        yield pg
    finally:
        pg.stop()
