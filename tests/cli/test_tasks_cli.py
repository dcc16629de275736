"""The CLI's conventions (help, version, completion, one JSON shape) and its task
commands (propose by selector, proposals list filters, jobs status, wait, serve
--token), end to end against `jdkit serve` in a subprocess."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from .test_cli import (
    CLI,
    Served,
    as_json,
    assert_one_line_error,
    clean_env,
    jdkit,
    ok,
    register,
    served,
    spec,
    start_serve,
    stop,
)

__all__ = ["served"]  # the module fixture, shared by import


def test_help_shows_connection_options_once_and_only_where_they_apply() -> None:
    top = ok("--help")
    assert "--url" in top and "--cognito-client-id" in top and "completion" in top
    for cmd in (["nodes", "list"], ["jobs", "propose"], ["wait"]):
        sub = ok(*cmd, "--help")
        assert "--url" not in sub and "--cognito" not in sub and "--tls-ca" not in sub
        assert len(sub.splitlines()) < 40, sub
    assert "--dry-run" in ok("jobs", "propose", "--help")  # a write
    assert "--dry-run" not in ok("nodes", "list", "--help")  # a read
    serve = ok("serve", "--help")
    assert "--token-file" in serve and "CSA_KEY_ENCRYPTION_SECRET" in serve
    assert "--dry-run" not in serve and "--cognito" not in serve and "--url" not in serve


def test_version_and_completion() -> None:
    from jdkit import __version__

    assert ok("--version").strip() == f"jdkit {__version__}"
    for shell, marker in (("bash", "complete -o"), ("zsh", "compdef"), ("fish", "complete")):
        script = ok("completion", shell)
        assert "_JDKIT_COMPLETE" in script and marker in script
    assert_one_line_error(jdkit("completion", "tcsh"), 2, "tcsh")
    # the script's callback: the shell sets the variable and asks for candidates
    env = clean_env(_JDKIT_COMPLETE="bash_complete", COMP_WORDS="jdkit jobs st", COMP_CWORD="2")
    r = subprocess.run(CLI, capture_output=True, text=True, env=env, timeout=60)
    assert r.stdout.split() == ["plain,status"]
    assert_one_line_error(jdkit("--url", "h:1", "serve"), 2, "serve does not connect", "--url")


def test_rollout_from_the_shell(served: Served, tmp_path: Path) -> None:
    url, db = served.address, str(served.db)
    tag = uuid.uuid4().hex[:8]
    nodes = [
        register(url, f"ro-{i}", f"ro={tag}", f"tier={'a' if i < 2 else 'b'}") for i in range(3)
    ]
    ids = [str(n["id"]) for n in nodes]
    ext = str(uuid.uuid4())
    (tmp_path / "job.toml").write_text(spec(ext))

    out = ok("jobs", "propose", "-l", f"ro={tag}", "-f", str(tmp_path / "job.toml"), url=url)
    assert out.startswith("3 proposed, 0 failed")
    listed = as_json("nodes", "list", "-l", f"ro={tag}", url=url)
    assert isinstance(listed, dict) and len(listed["nodes"]) == 3

    def no_nulls(value: object) -> bool:  # proto JSON leaves unset fields out
        if isinstance(value, dict):
            return all(v is not None and no_nulls(v) for v in value.values())
        if isinstance(value, list):
            return all(no_nulls(v) for v in value)
        return True

    assert no_nulls(listed) and "workflowKey" not in json.dumps(listed)
    props = as_json("proposals", "list", "-l", f"ro={tag}", "--status", "proposed", url=url)
    assert isinstance(props, dict) and len(props["proposals"]) == 3
    first = props["proposals"][0]["id"]
    ok("proposals", "approve", first, "--db", db)

    table = ok("proposals", "list", "--node", ids[0], "--node", ids[1], url=url)
    header = table.splitlines()[0].split()
    assert header[:2] == ["ID", "NODE"]  # the node each proposal went to
    assert {line.split()[1] for line in table.splitlines()[1:]} <= set(ids[:2])
    pending = as_json("proposals", "list", "-l", f"ro={tag}", "--status", "PROPOSED", url=url)
    assert isinstance(pending, dict) and len(pending["proposals"]) == 2

    status = ok("jobs", "status", ext, "-l", f"ro={tag}", url=url)
    lines = status.splitlines()
    assert lines[0] == f"rollout of {ext}: APPROVED 1, PROPOSED 2"
    assert lines[1].split()[:4] == ["NODE", "NAME", "REV", "STATUS"]
    data = as_json("jobs", "status", ext, url=url)
    assert isinstance(data, dict)
    rows = {r["nodeId"]: r for r in data["rows"]}
    assert set(rows) == set(ids)
    assert {r["status"] for r in rows.values()} == {
        "PROPOSAL_STATUS_APPROVED",
        "PROPOSAL_STATUS_PROPOSED",
    }
    assert all(r["revision"] == 1 and r["externalJobId"] == ext for r in rows.values())

    # waiting: the two still PROPOSED are named when the time is up
    r = jdkit("wait", ext, "--timeout", "1", url=url)
    assert r.returncode == 1, r.stderr
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("error: 1 of 3 proposals reached APPROVED; 2 still PROPOSED after 1 s: ")
    pending_ids = {p["id"] for p in pending["proposals"]}
    for p in pending_ids:
        ok("proposals", "approve", p, "--db", db)
    done = as_json("wait", ext, "--timeout", "30", url=url)
    assert isinstance(done, dict) and len(done["proposals"]) == 3
    assert {p["status"] for p in done["proposals"]} == {"PROPOSAL_STATUS_APPROVED"}
    assert ok("wait", "--proposal", first, url=url).splitlines()[0] == "1 APPROVED"

    # revision 2 to one tier only; status by node selector shows who is behind
    ok("jobs", "propose", "-l", f"ro={tag}, tier=a", "-f", "-", input=spec(ext, "v2"), url=url)
    st = as_json("jobs", "status", ext, "-l", f"ro={tag}", url=url)
    assert isinstance(st, dict)
    revs = sorted((r["revision"], r["status"]) for r in st["rows"])
    assert revs == [
        (1, "PROPOSAL_STATUS_APPROVED"),
        (2, "PROPOSAL_STATUS_PROPOSED"),
        (2, "PROPOSAL_STATUS_PROPOSED"),
    ]
    r = jdkit("--json", "wait", ext, "-l", f"ro={tag}, tier=a", "--timeout", "0.5", url=url)
    assert r.returncode == 1
    body = json.loads(r.stderr)["error"]
    assert body["code"] == "NOT_REACHED" and body["counts"] == {"PROPOSED": 2}


def test_serve_requires_a_token_when_given_one(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# deploy tokens\ns3cret-one\n\ns3cret-two\n")
    proc, first = start_serve("--token-file", str(tokens))
    try:
        url = first.split()[-1]
        r = jdkit("nodes", "list", url=url)
        assert_one_line_error(r, 1, "UNAUTHENTICATED")
        r = jdkit("--token", "wrong", "--allow-insecure-auth", "nodes", "list", url=url)
        assert_one_line_error(r, 1, "UNAUTHENTICATED")
        ok("--token", "s3cret-two", "--allow-insecure-auth", "nodes", "list", url=url)
        env = clean_env(JD_TOKEN="s3cret-one", JD_ALLOW_INSECURE_AUTH="1")
        ok("nodes", "list", url=url, env=env)
    finally:
        assert stop(proc) == 0
    proc, first = start_serve("--token", "t1")
    try:
        ok("--token", "t1", "--allow-insecure-auth", "keys", "public", url=first.split()[-1])
    finally:
        assert stop(proc) == 0
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    r = jdkit("serve", "--port", "0", "--token-file", str(empty))
    assert_one_line_error(r, 2, "--token-file", "holds no token")


def test_serve_warning_names_the_secret_variable(tmp_path: Path) -> None:
    proc, _ = start_serve("--db", str(tmp_path / "dev.sqlite"), "--insecure-dev-secret")
    assert stop(proc) == 0
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert "CSA_KEY_ENCRYPTION_SECRET" in err and "dev secret" in err


def _interrupt(args: list[str], url: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**clean_env(), "JD_GRPC_URL": url},
    )
    time.sleep(2.5)  # started, and blocked in its call
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_ctrl_c_says_may_have_been_applied_only_for_writes() -> None:
    # a listener that accepts and never answers: every call blocks until Ctrl-C
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)
    url = f"127.0.0.1:{hole.getsockname()[1]}"
    try:
        read = _interrupt(["nodes", "list"], url)
        assert read.returncode == 130 and read.stderr.strip().splitlines()[-1] == "interrupted"
        write = _interrupt(["nodes", "register", "--name", "x", "--public-key", "ab" * 32], url)
        assert write.returncode == 130
        assert "may have been applied" in write.stderr
    finally:
        hole.close()


def test_register_ensure_is_idempotent(served: Served) -> None:
    url = served.address
    key = "cd" * 32
    args = ["nodes", "register", "--ensure", "--public-key", key]
    first = as_json(*args, "--name", "ens-1", "--label", "env=dev", url=url)
    again = as_json(*args, "--name", "ens-1", "--label", "env=dev", url=url)
    renamed = as_json(*args, "--name", "ens-2", url=url)
    assert isinstance(first, dict) and isinstance(again, dict) and isinstance(renamed, dict)
    assert first["node"]["id"] == again["node"]["id"] == renamed["node"]["id"]
    assert renamed["node"]["name"] == "ens-2"
    assert renamed["node"]["labels"] == [{"key": "env", "value": "dev"}]  # kept without --label
    r = jdkit("nodes", "register", "--public-key", key, "--name", "ens-3", url=url)
    assert_one_line_error(r, 1, "ALREADY_EXISTS")  # without --ensure: JD's answer


def test_status_and_wait_of_an_unknown_job_fail_naming_it(served: Served) -> None:
    unknown = str(uuid.uuid4())
    for cmd in (["jobs", "status", unknown], ["wait", unknown, "--timeout", "1"]):
        r = jdkit(*cmd, url=served.address)
        assert_one_line_error(r, 2, f"no job with externalJobID '{unknown}'")
    r = jdkit("jobs", "status", "--job", "job_nope", url=served.address)
    assert_one_line_error(r, 2, "'job_nope'")


def test_json_of_an_empty_list_keeps_the_list_field(tmp_path: Path) -> None:
    proc, first = start_serve("--db", str(tmp_path / "empty.sqlite"), "--insecure-dev-secret")
    try:
        url = first.split()[-1]
        assert json.loads(ok("--json", "nodes", "list", url=url)) == {"nodes": []}
        assert json.loads(ok("--json", "proposals", "list", url=url)) == {"proposals": []}
        # other shapes are untouched: unset fields stay out
        assert json.loads(ok("--json", "health", url=url)) == {"status": "SERVING"}
    finally:
        stop(proc)


def test_serve_log_level_info_logs_each_call_with_its_request_id(tmp_path: Path) -> None:
    proc, first = start_serve("--log-level", "info")
    try:
        ok("nodes", "list", url=first.split()[-1])
    finally:
        stop(proc)
    assert proc.stderr is not None
    err = proc.stderr.read()
    line = next(ln for ln in err.splitlines() if "/api.node.v1.NodeService/ListNodes" in ln)
    assert " INFO jdkit.server: " in line and " OK " in line and "x-request-id" in line, err
    # the default stays quiet: no line per call
    proc, first = start_serve()
    try:
        ok("nodes", "list", url=first.split()[-1])
    finally:
        stop(proc)
    assert proc.stderr is not None
    assert "ListNodes" not in proc.stderr.read()
