"""Every ClientOptions field read from text is a CLI flag and a JD_<FIELD> variable."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from jdkit import ClientOptions, ConfigError
from jdkit._cli import cli, main
from jdkit._cli._config import FIELD_FLAGS, client_options
from jdkit._options import TEXT_FIELDS
from jdkit.testing import ThreadedJD

URL = {"JD_GRPC_URL": "127.0.0.1:1"}
#: fields that make no sense from a shell (objects, or a run's mode with its own flag)
NOT_FROM_TEXT = {"tls", "auth", "interceptors", "dry_run"}


def test_the_text_fields_are_derived_from_the_dataclass() -> None:
    names = {f.name for f in dataclasses.fields(ClientOptions)}
    assert {tf.name for tf in TEXT_FIELDS} == names - NOT_FROM_TEXT
    root = {o for p in cli.params for o in getattr(p, "opts", ())}
    for tf in FIELD_FLAGS:
        assert tf.flag in root and tf.env == f"JD_{tf.name.upper()}"


def test_help_lists_every_field_flag_and_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for tf in FIELD_FLAGS:
        assert tf.flag in out and tf.env in " ".join(out.split())


def _flags(**given: Any) -> dict[str, Any]:
    flags: dict[str, Any] = {tf.name: () if tf.multiple else None for tf in FIELD_FLAGS}
    return flags | given


def test_flags_and_variables_reach_the_options() -> None:
    env = URL | {"JD_COMPRESSION": "deflate", "JD_MAX_RECEIVE_MESSAGE_SIZE": "none"}
    opts = client_options(_flags(), env)
    assert opts.compression == "deflate" and opts.max_receive_message_size is None
    flags = _flags(
        compression="gzip",
        metadata=({"x-team": "ops"}, {"x-env": "dev"}),
        max_receive_message_size=64 * 1024 * 1024,
        min_version="0.1.0",
    )
    opts = client_options(flags, env | {"JD_COMPRESSION": "zstd"})  # the flag wins, unread
    assert opts.compression == "gzip" and opts.min_version == "0.1.0"
    assert opts.metadata == {"x-team": "ops", "x-env": "dev"}
    assert opts.max_receive_message_size == 64 * 1024 * 1024


def test_a_bad_variable_is_blamed_on_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        client_options(_flags(), URL | {"JD_KEEPALIVE_TIMEOUT": "0"})
    assert info.value.field == "JD_KEEPALIVE_TIMEOUT"


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedJD]:
    srv = ThreadedJD.start()
    yield srv
    srv.stop()


@pytest.fixture
def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[[list[str], dict[str, str]], tuple[int, str]]:
    """`jdkit ARGS` in this process with exactly `env`'s JD_* variables."""

    def run(args: list[str], env: dict[str, str]) -> tuple[int, str]:
        for k in [k for k in os.environ if k.startswith(("JD_", "AWS_"))]:
            monkeypatch.delenv(k)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        rc = main(args)
        captured = capsys.readouterr()
        return rc, captured.out + captured.err

    return run


Run = Callable[[list[str], dict[str, str]], tuple[int, str]]


def test_a_small_receive_limit_from_the_cli_is_applied(server: ThreadedJD, run: Run) -> None:
    env = {"JD_GRPC_URL": server.address}
    assert run(["nodes", "list"], env)[0] == 0
    rc, out = run(["--max-receive-message-size", "1", "version"], env)
    assert rc == 1 and "max_receive_message_size" in out, out
    rc, out = run(["version"], env | {"JD_MAX_RECEIVE_MESSAGE_SIZE": "1"})
    assert rc == 1, out
    rc, out = run(["--min-version", "99.0", "version"], env)
    assert rc != 0 and "99.0" in out, out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--compression", "zstd", "nodes", "list"], "--compression"),
        (["--metadata", "Bad Key=x", "nodes", "list"], "--metadata"),
        (["--retry", "0", "nodes", "list"], "--retry"),
        (["--max-receive-message-size", "lots", "nodes", "list"], "--max-receive-message-size"),
    ],
)
def test_a_bad_flag_is_a_usage_error_naming_it(args: list[str], needle: str, run: Run) -> None:
    rc, out = run(args, URL)
    assert rc == 2 and needle in out and "Traceback" not in out, out


def test_commands_that_do_not_connect_refuse_the_field_flags(run: Run) -> None:
    rc, out = run(["--metadata", "a=b", "serve"], {})
    assert rc == 2 and "--metadata" in out, out
