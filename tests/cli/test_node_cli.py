"""`jdkit serve --node-port` and `jdkit node simulate`, end to end in subprocesses:
an embedded JD with its node port, a simulated node that answers over the real
protocol, and the operator's commands seeing what the node did."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from jdkit._wsrpc._keys import public_hex
from jdkit._wsrpc._simulate import key_from_file

from .test_cli import CLI, clean_env, ok, start_serve, stop

pytest.importorskip("websockets")
pytest.importorskip("OpenSSL")


def _spec() -> str:
    return f'type = "offchainreporting2"\nschemaVersion = 1\nexternalJobID = "{uuid.uuid4()}"\n'


def test_serve_with_a_node_port_and_node_simulate_approves(tmp_path: Path) -> None:
    proc, first = start_serve("--node-port", "0")
    try:
        assert proc.stdout is not None
        m = re.fullmatch(r"listening on (\S+:\d+)", first)
        assert m, first
        url = m[1]
        second = proc.stdout.readline().strip()
        n = re.fullmatch(r"node port on (\S+:\d+)", second)
        assert n, second
        jd_key = json.loads(ok("--json", "keys", "public", url=url))["publicKey"]
        key_file = tmp_path / "node.key"
        pub = public_hex(key_from_file(key_file))
        registered = json.loads(
            ok("--json", "nodes", "register", "--name", "sim", "--public-key", pub, url=url)
        )
        node_id = registered["node"]["id"]
        sim = subprocess.Popen(
            [
                *CLI,
                "node",
                "simulate",
                "--jd",
                n[1],
                "--jd-key",
                jd_key,
                "--key-file",
                str(key_file),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        try:
            assert sim.stdout is not None
            assert sim.stdout.readline().strip() == f"node public key: {pub}"
            assert "connected to" in sim.stdout.readline()
            spec_file = tmp_path / "job.toml"
            spec_file.write_text(_spec())
            ok("jobs", "propose", "--node", node_id, "-f", str(spec_file), url=url)
            deadline = time.monotonic() + 20
            while True:
                items = json.loads(ok("--json", "proposals", "list", url=url)).get("proposals", [])
                if items and items[0].get("status") == "PROPOSAL_STATUS_APPROVED":
                    break
                assert time.monotonic() < deadline, items
                time.sleep(0.2)
            assert items[0]["deliveryStatus"] == "PROPOSAL_DELIVERY_STATUS_ACKNOWLEDGED"
            assert ": approve" in sim.stdout.readline()
        finally:
            sim.send_signal(signal.SIGINT)
            assert sim.wait(20) == 0
    finally:
        assert stop(proc) == 0


def test_node_simulate_with_an_unknown_key_exits_1(tmp_path: Path) -> None:
    proc, first = start_serve("--node-port", "0")
    try:
        assert proc.stdout is not None
        url = first.split()[-1]
        node_addr = proc.stdout.readline().split()[-1]
        jd_key = json.loads(ok("--json", "keys", "public", url=url))["publicKey"]
        r = subprocess.run(
            [*CLI, "node", "simulate", "--jd", node_addr, "--jd-key", jd_key],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )
        assert r.returncode == 1
        assert "does not know this node's key" in r.stdout + r.stderr
    finally:
        assert stop(proc) == 0
