"""`jdkit` end to end: `python -m jdkit serve --port 0` in a subprocess, every command
as another subprocess against it, checked the way a user reads the output."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from jdkit.pb import node

CLI = [sys.executable, "-m", "jdkit"]
#: environment variables of the caller that would change what the CLI does
_JD_VARS = [k for k in os.environ if k.startswith(("JD_", "AWS_", "JDKIT_"))]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _JD_VARS}
    env.pop("CSA_KEY_ENCRYPTION_SECRET", None)
    env.update(extra)
    return env


@dataclass
class Served:
    proc: subprocess.Popen[str]
    address: str
    db: Path


def start_serve(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or clean_env(),
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # blocks until the server printed where it listens
    if not first:
        proc.wait(10)
        assert proc.stderr is not None
        raise AssertionError(f"jdkit serve exited: {proc.stderr.read()}")
    return proc, first.strip()


def stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    db = tmp_path_factory.mktemp("cli") / "jd.sqlite"
    proc, first = start_serve("--db", str(db), "--insecure-dev-secret")
    m = re.fullmatch(r"listening on (\S+:\d+)", first)
    assert m, first
    yield Served(proc, m[1], db)
    assert stop(proc) == 0


def jdkit(
    *args: str,
    url: str | None = None,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    base = env if env is not None else clean_env()
    if url is not None:
        base = {**base, "JD_GRPC_URL": url}
    return subprocess.run(
        [*CLI, *args], input=input, capture_output=True, text=True, env=base, timeout=timeout
    )


def ok(*args: str, **kw: object) -> str:
    r = jdkit(*args, **kw)  # type: ignore[arg-type]
    assert r.returncode == 0, f"{args}: rc={r.returncode}\nstdout={r.stdout}\nstderr={r.stderr}"
    return r.stdout


def as_json(*args: str, **kw: object) -> object:
    return json.loads(ok("--json", *args, **kw))


def new_key() -> str:
    return os.urandom(32).hex()


def spec(ext: str | None = None, name: str = "feed") -> str:
    return (
        f'type = "offchainreporting2"\nschemaVersion = 1\nname = "{name}"\n'
        f'externalJobID = "{ext or uuid.uuid4()}"\n'
    )


def assert_one_line_error(r: subprocess.CompletedProcess[str], rc: int, *needles: str) -> None:
    assert r.returncode == rc, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    for needle in needles:
        assert needle in r.stderr, (needle, r.stderr)


def register(url: str, name: str, *labels: str) -> dict[str, object]:
    args = ["nodes", "register", "--name", name, "--public-key", new_key()]
    for lb in labels:
        args += ["--label", lb]
    out = as_json(*args, url=url)
    assert isinstance(out, dict)
    n = out["node"]
    assert isinstance(n, dict)
    return n


# ------------------------------------------------------------------ serve, health, version


def test_serve_prints_address_health_and_version(served: Served) -> None:
    assert ok("health", url=served.address).strip() == "SERVING"
    assert as_json("health", url=served.address) == {"status": "SERVING"}
    out = ok("version", url=served.address)
    assert "jdkit 0.2.0" in out and "server 0.2.0" in out
    data = as_json("version", url=served.address)
    assert data == {"jdkit": "0.2.0", "server": "0.2.0"}


def test_version_without_url_prints_only_jdkit() -> None:
    assert ok("version").strip() == "jdkit 0.2.0"


def test_serve_json_and_sigint_stop_cleanly(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*CLI, "--json", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    assert re.fullmatch(r"127\.0\.0\.1:\d+", info["listening"])
    assert ok("health", url=info["listening"]).strip() == "SERVING"
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0
    assert time.monotonic() - started < 15
    r = jdkit("--timeout", "2", "health", url=info["listening"])
    assert_one_line_error(r, 1, "UNAVAILABLE")


def test_serve_on_a_busy_port_is_one_line(served: Served) -> None:
    port = served.address.rsplit(":", 1)[1]
    r = jdkit("serve", "--port", port, timeout=30)
    assert_one_line_error(r, 2, "port", port)


# ------------------------------------------------------------------ nodes


def test_node_lifecycle(served: Served) -> None:
    url = served.address
    n = register(url, "cli-life", "env=dev", "team=feeds", "canary")
    node_id = str(n["id"])
    assert n["isEnabled"] is True

    text = ok("nodes", "list", "--id", node_id, url=url)
    header, row = text.strip().splitlines()[:2]
    assert header.split()[:3] == ["ID", "NAME", "PUBLIC"]
    assert node_id in row and "cli-life" in row and "env=dev, team=feeds, canary" in row

    got = ok("nodes", "get", node_id, url=url)
    assert str(n["publicKey"]) in got  # detail shows the whole key
    by_key = as_json("nodes", "get", "--public-key", str(n["publicKey"]), url=url)
    assert isinstance(by_key, dict) and by_key["node"]["id"] == node_id

    upd = as_json("nodes", "update", node_id, "--label", "env=prod", "--name", "renamed", url=url)
    assert isinstance(upd, dict)
    assert upd["node"]["name"] == "renamed"
    assert upd["node"]["labels"] == [{"key": "env", "value": "prod"}]

    ok("nodes", "disable", node_id, url=url)
    disabled = as_json("nodes", "list", "--disabled", url=url)
    assert isinstance(disabled, dict)
    assert node_id in [x["id"] for x in disabled["nodes"]]
    ok("nodes", "enable", node_id, url=url)
    enabled = as_json("nodes", "list", "--enabled", "--id", node_id, url=url)
    assert isinstance(enabled, dict) and enabled["totalCount"] == 1


def test_node_selectors(served: Served) -> None:
    url = served.address
    tag = uuid.uuid4().hex[:8]
    a = register(url, "sel-a", f"run={tag}", "region=eu", "canary")
    b = register(url, "sel-b", f"run={tag}", "region=us")
    c = register(url, "sel-c", f"run={tag}", "region=ap")

    def ids(*selector: str) -> set[str]:
        args = ["nodes", "list"]
        for s in selector:
            args += ["-l", s]
        data = as_json(*args, url=url)
        assert isinstance(data, dict)
        return {x["id"] for x in data["nodes"]}

    assert ids(f"run={tag}") == {a["id"], b["id"], c["id"]}
    assert ids(f"run={tag}, region in (eu, us)") == {a["id"], b["id"]}
    assert ids(f"run={tag},region notin (eu,us)") == {c["id"]}
    assert ids(f"run={tag}", "region!=eu") == {b["id"], c["id"]}
    assert ids(f"run={tag}", "canary") == {a["id"]}
    assert ids(f"run={tag}", "!canary") == {b["id"], c["id"]}


def test_nodes_list_pages_through_everything(
    served: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # (servers that ignore paging: tests/client/test_pagers.py, against grpcio servers)
    from jdkit import _cli
    from jdkit._cli import _nodes

    tag = uuid.uuid4().hex[:8]
    made = {register(served.address, f"page-{i}", f"page={tag}")["id"] for i in range(5)}
    monkeypatch.setattr(_nodes, "LIST_PAGE", 2)
    monkeypatch.setenv("JD_GRPC_URL", served.address)
    assert _cli.main(["--json", "nodes", "list", "-l", f"page={tag}"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {x["id"] for x in data["nodes"]} == made and data["totalCount"] == 5
    # an explicit page is one page
    assert _cli.main(["nodes", "list", "-l", f"page={tag}", "--page-size", "2", "--page", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 of 5 nodes") and len(out.strip().splitlines()) == 3


def test_chain_configs(served: Served) -> None:
    from jdkit._server import DEV_CSA_SECRET, EmbeddedJD

    n = register(served.address, "chains")

    async def seed() -> None:  # the node reports a chain config (node side, same database)
        async with EmbeddedJD.start(db=str(served.db), csa_secret=DEV_CSA_SECRET) as srv:
            await srv.add_chain_config(
                str(n["id"]),
                node.ChainConfig(
                    chain=node.Chain(id="11155111", type=node.ChainType.EVM),
                    account_address="0x" + "ab" * 20,
                    admin_address="0x" + "cd" * 20,
                    ocr2_config=node.Ocr2Config(
                        enabled=True,
                        p2p_key_bundle=node.Ocr2ConfigP2PKeyBundle(peer_id="12D3KooWpeer"),
                    ),
                ),
            )

    asyncio.run(seed())
    text = ok("nodes", "chain-configs", "--node", str(n["id"]), url=served.address)
    row = text.strip().splitlines()[1]
    assert "11155111" in row and "EVM" in row and "yes" in row and "0xabab" in row
    wide = ok("nodes", "chain-configs", "--node", str(n["id"]), "--wide", url=served.address)
    assert "0x" + "ab" * 20 in wide
    data = as_json("nodes", "chain-configs", "--node", str(n["id"]), url=served.address)
    assert isinstance(data, dict)
    assert data["chainConfigs"][0]["chain"] == {"id": "11155111", "type": "CHAIN_TYPE_EVM"}


# ------------------------------------------------------------------ jobs and proposals


def test_propose_approve_revoke_delete(served: Served, tmp_path: Path) -> None:
    url = served.address
    n = register(url, "jobs-node")
    spec_file = tmp_path / "job.toml"
    ext = str(uuid.uuid4())
    spec_file.write_text(spec(ext))

    prop = as_json(
        "jobs",
        "propose",
        "--node",
        str(n["id"]),
        "--spec",
        str(spec_file),
        "--label",
        "v=1",
        url=url,
    )
    # one JSON shape for every propose: the BatchProposeJobResponse JD would send
    assert isinstance(prop, dict) and set(prop) == {"successResponses"}
    p1 = prop["successResponses"][n["id"]]["proposal"]
    assert p1["revision"] == "1"  # proto JSON: int64 as a string, enums by full name
    assert p1["status"] == "PROPOSAL_STATUS_PROPOSED"
    # the same spec again from stdin: a second revision of the same job
    r2 = as_json("jobs", "propose", "--node", str(n["id"]), "-f", "-", input=spec(ext), url=url)
    assert isinstance(r2, dict)
    p2 = r2["successResponses"][n["id"]]
    assert int(p2["proposal"]["revision"]) == 2
    job_id = p1["jobId"]
    assert p2["proposal"]["jobId"] == job_id

    jobs = ok("jobs", "list", "--node", str(n["id"]), url=url)
    assert job_id in jobs and ext in jobs
    got = as_json("jobs", "get", job_id, url=url)
    assert isinstance(got, dict) and got["job"]["uuid"] == ext

    props = ok("proposals", "list", "--job", job_id, url=url)
    assert props.count("PROPOSED") == 2
    detail = ok("proposals", "get", p2["proposal"]["id"], url=url)
    assert f'externalJobID = "{ext}"' in detail  # the spec is shown

    # the node's side, on the served database
    approved = as_json("proposals", "approve", p2["proposal"]["id"], "--db", str(served.db))
    assert (
        isinstance(approved, dict) and approved["proposal"]["status"] == "PROPOSAL_STATUS_APPROVED"
    )
    again = jdkit("proposals", "approve", p2["proposal"]["id"], "--db", str(served.db))
    assert_one_line_error(again, 1, "FAILED_PRECONDITION")
    status = as_json("proposals", "get", p2["proposal"]["id"], url=url)
    assert isinstance(status, dict) and status["proposal"]["status"] == "PROPOSAL_STATUS_APPROVED"

    # an approved latest proposal cannot be revoked; a new revision can
    r = jdkit("jobs", "revoke", job_id, url=url)
    assert_one_line_error(r, 1, "FAILED_PRECONDITION")
    r3 = as_json("jobs", "propose", "--node", str(n["id"]), "-f", str(spec_file), url=url)
    assert isinstance(r3, dict)
    p3 = r3["successResponses"][n["id"]]
    revoked = as_json("jobs", "revoke", job_id, url=url)
    assert isinstance(revoked, dict)
    assert revoked["proposal"]["id"] == p3["proposal"]["id"]
    assert revoked["proposal"]["status"] == "PROPOSAL_STATUS_REVOKED"

    upd = as_json("jobs", "update", job_id, "--label", "v=2", url=url)
    assert isinstance(upd, dict) and upd["job"]["labels"] == [{"key": "v", "value": "2"}]
    deleted = as_json("jobs", "delete", job_id, url=url)
    assert isinstance(deleted, dict) and deleted["job"]["deletedAt"]
    assert job_id not in ok("jobs", "list", "--node", str(n["id"]), url=url)
    assert job_id in ok("jobs", "list", "--node", str(n["id"]), "--include-deleted", url=url)


def test_reject_and_cancel(served: Served) -> None:
    url, db = served.address, str(served.db)
    n = register(url, "answers")
    a = as_json("jobs", "propose", "--node", str(n["id"]), "-f", "-", input=spec(), url=url)
    b = as_json("jobs", "propose", "--node", str(n["id"]), "-f", "-", input=spec(), url=url)
    assert isinstance(a, dict) and isinstance(b, dict)
    a, b = a["successResponses"][n["id"]], b["successResponses"][n["id"]]
    out = ok("proposals", "reject", a["proposal"]["id"], "--db", db)
    assert out.startswith("rejected") and "REJECTED" in out
    env = clean_env(JDKIT_DB=db)  # the database from the environment
    cancelled = as_json("proposals", "cancel", b["proposal"]["id"], env=env)
    assert (
        isinstance(cancelled, dict)
        and cancelled["proposal"]["status"] == "PROPOSAL_STATUS_CANCELLED"
    )


def test_node_side_needs_the_database(served: Served, tmp_path: Path) -> None:
    r = jdkit("proposals", "approve", "prop_x", url=served.address)
    assert_one_line_error(r, 2, "--db", "jdkit serve --db")
    r = jdkit("proposals", "approve", "prop_x", "--db", str(tmp_path / "nope.sqlite"))
    assert_one_line_error(r, 2, "no such file")
    r = jdkit("proposals", "approve", "prop_x", "--db", str(served.db))
    assert_one_line_error(r, 1, "NOT_FOUND", "prop_x")


def test_batch_propose_by_selector_and_ids_with_a_failure(served: Served) -> None:
    url = served.address
    tag = uuid.uuid4().hex[:8]
    nodes = [register(url, f"batch-{i}", f"batch={tag}")["id"] for i in range(3)]
    r = jdkit(
        "jobs",
        "batch-propose",
        "-l",
        f"batch={tag}",
        "--node",
        "node_missing",
        "--chunk-size",
        "2",
        "-f",
        "-",
        input=spec(),
        url=url,
    )
    assert r.returncode == 1, r.stderr
    assert "3 proposed, 1 failed" in r.stdout
    lines = {line.split()[0]: line for line in r.stdout.strip().splitlines()[2:]}
    assert set(lines) == {*nodes, "node_missing"}
    assert all(" ok " in lines[str(i)] for i in nodes)
    assert "failed" in lines["node_missing"]
    assert r.stderr.strip().startswith("error: 1 of 4 nodes failed (first: node_missing")

    r = jdkit(
        "--json",
        "jobs",
        "batch-propose",
        "--node",
        str(nodes[0]),
        "-f",
        "-",
        input=spec(),
        url=url,
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)  # the BatchProposeJobResponse shape; nothing failed: no key
    assert list(data) == ["successResponses"] and list(data["successResponses"]) == [nodes[0]]

    r = jdkit("jobs", "propose", "-l", "nobody=here", "-f", "-", input=spec(), url=url)
    assert_one_line_error(r, 2, "-l", "no enabled node matches 'nobody=here'")


# ------------------------------------------------------------------ dry run


def test_dry_run_prints_the_plan_and_writes_nothing(served: Served) -> None:
    url = served.address
    key = new_key()
    r = jdkit(
        "--dry-run",
        "nodes",
        "register",
        "--name",
        "dry",
        "--public-key",
        key,
        "--label",
        "env=dev",
        url=url,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Dry-run plan: 1 write (none sent)")
    assert "RegisterNode" in r.stdout and "'dry'" in r.stdout
    missing = jdkit("nodes", "get", "--public-key", key, url=url)
    assert_one_line_error(missing, 1, "NOT_FOUND")

    n = register(url, "dry-target")
    plan = as_json(
        "jobs", "propose", "--node", str(n["id"]), "-f", "-", "--dry-run", input=spec(), url=url
    )
    assert isinstance(plan, dict) and plan["dryRun"] is True
    (entry,) = plan["writes"]
    assert entry["method"] == "/api.job.v1.JobService/BatchProposeJob"
    # proto JSON leaves unset fields out, but a list command keeps its list
    assert json.loads(ok("--json", "jobs", "list", "--node", str(n["id"]), url=url)) == {"jobs": []}
    other = register(url, "dry-target-2")
    r = jdkit(
        "--dry-run", "jobs", "batch-propose", "--node", str(n["id"]), "--node", str(other["id"]),
        "-f", "-", input=spec(), url=url,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Dry-run plan: 1 write (none sent)") and "to 2 nodes" in r.stdout
    assert json.loads(ok("--json", "jobs", "list", "--node", str(other["id"]), url=url)) == {
        "jobs": []
    }
    # reads still go through in a dry run: an unknown node still fails, as JD would say
    r = jdkit("--dry-run", "jobs", "propose", "--node", "node_zz", "-f", "-", input=spec(), url=url)
    assert_one_line_error(r, 1, "1 of 1 nodes failed", "node_zz", "not found")
    # the node's side has a plan too and touches nothing
    out = ok("--dry-run", "proposals", "approve", "prop_x", "--db", str(served.db))
    assert "approve prop_x" in out


# ------------------------------------------------------------------ keys


def test_keys(served: Served) -> None:
    key = ok("keys", "public", url=served.address).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert key in ok("keys", "list", url=served.address)
    assert as_json("keys", "public", url=served.address) == {"publicKey": key}


# ------------------------------------------------------------------ options and mistakes


def test_connection_options_go_first_and_json_anywhere(served: Served) -> None:
    out = ok("--url", served.address, "nodes", "list", "--json")
    assert "nodes" in json.loads(out)
    out = ok("--url", served.address, "--timeout", "5", "keys", "public")
    assert re.fullmatch(r"[0-9a-f]{64}", out.strip())
    r = jdkit("nodes", "list", "--url", served.address)
    assert_one_line_error(r, 2, "--url", "before the command", "jdkit --url")


def test_user_mistakes_are_one_line(served: Served, tmp_path: Path) -> None:
    url = served.address
    assert_one_line_error(jdkit("nodes", "list"), 2, "--url", "JD_GRPC_URL", "jdkit serve")
    assert_one_line_error(jdkit("nodes", "get", "node_x", url=url), 1, "NOT_FOUND", "node_x")
    assert_one_line_error(
        jdkit("--timeout", "3", "nodes", "list", url="127.0.0.1:1"), 1, "UNAVAILABLE"
    )
    assert_one_line_error(jdkit("nodes", "list", url="no-port-here"), 2, "JD_GRPC_URL: no port")
    assert_one_line_error(jdkit("--url", "no-port", "nodes", "list"), 2, "--url: no port")
    assert_one_line_error(jdkit("nodes", "list", "-l", "env in prod", url=url), 2, "selector")
    assert_one_line_error(jdkit("nodes", "list", "-l", "a,,b", url=url), 2, "stray comma")
    assert_one_line_error(
        jdkit("nodes", "register", "--name", "x", "--public-key", "k", "--label", "=v", url=url),
        2,
        "label",
    )
    assert_one_line_error(
        jdkit("nodes", "register", "--name", "x", "--public-key", "zz", url=url),
        1,
        "INVALID_ARGUMENT",
    )
    assert_one_line_error(
        jdkit("jobs", "propose", "--node", "n", "-f", str(tmp_path / "missing.toml"), url=url),
        2,
        "no such file",
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [\n")
    assert_one_line_error(
        jdkit("jobs", "propose", "--node", "n", "-f", str(bad), url=url), 2, "not valid TOML"
    )
    bad.write_text('name = "no id"\n')
    assert_one_line_error(
        jdkit("jobs", "propose", "--node", "n", "-f", str(bad), url=url), 2, "externalJobID"
    )
    assert_one_line_error(
        jdkit("jobs", "propose", "--node", "n", "-f", "-", input="", url=url), 2, "stdin is empty"
    )
    assert_one_line_error(
        jdkit("--tls-ca", str(tmp_path / "none.pem"), "nodes", "list", url=url), 2, "file not found"
    )
    # the mistake is blamed on what was written: the flag, or the variable
    r = jdkit("--timeout", "soon", "nodes", "list", url=url)
    assert_one_line_error(r, 2, "--timeout", "'soon'")
    assert "JD_TIMEOUT" not in r.stderr
    r = jdkit("--timeout", "5", "nodes", "list", url=url, env=clean_env(JD_TIMEOUT="soon"))
    assert r.returncode == 0, r.stderr  # the flag wins over a bad variable
    r = jdkit("nodes", "list", url=url, env=clean_env(JD_TIMEOUT="soon"))
    assert_one_line_error(r, 2, "JD_TIMEOUT")
    assert_one_line_error(jdkit("nodes", "update", "node_x", url=url), 2, "nothing to change")
    assert_one_line_error(jdkit("nodes", "get", url=url), 2, "--public-key")
    # the parser's own mistakes: one line, exit status 2, no traceback
    r = jdkit("nodes", "frobnicate")
    assert_one_line_error(r, 2, "No such command 'frobnicate'", "jdkit nodes --help")


def test_token_flags(served: Served) -> None:
    # tokens on a plaintext channel must be allowed explicitly
    # the error names the flag given (--token), not one the user never typed
    r = jdkit("--token", "abcd", "nodes", "list", url=served.address)
    assert_one_line_error(r, 2, "--token: ", "plaintext", "TLS", "pass --allow-insecure-auth")
    assert "allow_insecure_auth" not in r.stderr  # hints speak the CLI, not Python
    r = jdkit("nodes", "list", url=served.address, env=clean_env(JD_TOKEN="abcd"))
    assert_one_line_error(r, 2, "JD_TOKEN: ", "plaintext")
    # allowed: this server takes no tokens, so any token passes
    ok("--token", "abc", "--allow-insecure-auth", "nodes", "list", url=served.address)
    # a half-configured Cognito login names what is missing
    r = jdkit("--cognito-client-id", "cid", "nodes", "list", url=served.address)
    assert_one_line_error(r, 2, "JD_COGNITO_")


def test_console_script_is_installed() -> None:
    exe = shutil.which("jdkit", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("the jdkit console script is not installed in this environment")
    r = subprocess.run([exe, "version"], capture_output=True, text=True, env=clean_env())
    assert r.returncode == 0 and r.stdout.startswith("jdkit ")


def test_tls_and_mutual_tls(tmp_path: Path) -> None:
    import ssl

    trustme = pytest.importorskip("trustme")
    from jdkit.testing import ThreadedJD

    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: clients need a cert from the CA
    ca.configure_trust(server_ctx)
    client_cert = ca.issue_cert("jdkit-cli")
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    client_cert.cert_chain_pems[0].write_to_path(str(cert_file))
    client_cert.private_key_pem.write_to_path(str(key_file))

    srv = ThreadedJD.start(ssl=server_ctx)
    try:
        url = srv.address
        tls = ["--tls-ca", str(ca_file), "--tls-cert", str(cert_file), "--tls-key", str(key_file)]
        assert ok(*tls, "health", url=url).strip() == "SERVING"
        # the same from the environment, with a grpcs:// URL
        env = clean_env(
            JD_TLS_CA_FILE=str(ca_file),
            JD_TLS_CERT_FILE=str(cert_file),
            JD_TLS_KEY_FILE=str(key_file),
        )
        assert ok("keys", "public", url=f"grpcs://{url}", env=env).strip()
        # not trusting the CA, or no client certificate: one line, no traceback
        r = jdkit("--tls", "--timeout", "5", "health", url=url)
        assert_one_line_error(r, 1, "UNAVAILABLE")
        r = jdkit("--tls-ca", str(ca_file), "--timeout", "5", "health", url=url)
        assert_one_line_error(r, 1)
        # plaintext to a TLS port fails cleanly too
        r = jdkit("--timeout", "3", "health", url=url)
        assert_one_line_error(r, 1)
    finally:
        srv.stop()


def test_errors_are_json_under_json(served: Served) -> None:
    r = jdkit("--json", "nodes", "get", "node_nope", url=served.address)
    assert r.returncode == 1 and r.stdout == ""
    err = json.loads(r.stderr)["error"]
    assert err["code"] == "NOT_FOUND" and "node_nope" in err["message"]
    assert err["method"] == "/api.node.v1.NodeService/GetNode"
    r = jdkit("--json", "--url", "no-port", "nodes", "list")
    assert r.returncode == 2
    assert json.loads(r.stderr)["error"] == {
        "code": "CONFIG",
        "field": "--url",
        "message": "no port in 'no-port'; expected host:port",
    }
