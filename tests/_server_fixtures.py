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
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError

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


async def add_node(jd: JobDistributor, i: int, name: str | None = None,
                   labels: list[label.Label] | None = None) -> node.Node:
    resp = await jd.register_node(node.RegisterNodeRequest(
        name=name or f"node-{i}", public_key=pubkey(i), labels=labels or []))
    assert resp.node is not None
    return resp.node


async def propose(jd: JobDistributor, node_id: str, ext_id: str | None = None,
                  labels: list[label.Label] | None = None) -> job.Proposal:
    resp = await jd.propose_job(job.ProposeJobRequest(
        node_id=node_id, spec=spec(ext_id), labels=labels or []))
    assert resp.proposal is not None
    return resp.proposal


class RawCodec(CodecBase):
    """Sends and receives bytes as they are, to put garbage on the wire."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        return data


async def raw_call(port: int, path: str, body: bytes | None,
                   metadata: dict[str, str] | None = None) -> tuple[Status, str | None]:
    """Call `path` with exactly `body` (None: send no message at all)."""
    ch = Channel("127.0.0.1", port, codec=RawCodec())
    try:
        async with ch.request(path, Cardinality.UNARY_UNARY, bytes, bytes,
                              metadata=metadata, timeout=10) as stream:
            if body is None:
                await stream.send_request(end=True)
            else:
                await stream.send_message(body, end=True)
            try:
                await stream.recv_message()
                await stream.recv_trailing_metadata()
            except GRPCError as exc:
                return exc.status, exc.message
            return Status.OK, None
    finally:
        ch.close()


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
        self._run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync",
                  "-E", "UTF8", "--locale=C")
        self._run("pg_ctl", "-D", data, "-l", os.path.join(self.root, "log"), "-w", "-o",
                  f"-p {self.port} -k {self.root} -h 127.0.0.1 -F", "start")
        self.data = data

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._prefix, os.path.join(self.bindir, tool), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

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
