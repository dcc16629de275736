"""DockerConfig: validation on construction, image precedence, secrets kept out
of repr and of error text. No Docker engine needed."""

from __future__ import annotations

import math
from typing import Any

import pytest

from jdkit import ConfigError
from jdkit._providers._docker import (
    ENV_JD_IMAGE,
    DockerConfig,
    DockerProvider,
)
from jdkit._providers._docker._sweep import _pid_alive, _process_start


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("jd_image", ""),
        ("jd_image", "has space:tag"),
        ("postgres_image", "-bad"),
        ("postgres_fallback", ""),
        ("postgres_user", "1user"),
        ("postgres_user", "robert'); drop table"),
        ("postgres_db", ""),
        ("postgres_db", "x" * 64),
        ("postgres_password", ""),
        ("postgres_password", "line\nbreak"),
        ("csa_secret", ""),
        ("ready_timeout", 0),
        ("ready_timeout", -1.0),
        ("ready_timeout", math.inf),
        ("ready_timeout", "10"),
        ("ready_timeout", True),
        ("pull_timeout", math.nan),
        ("call_timeout", 0),
        ("reuse", "yes"),
        ("build_images", 1),
        ("docker_host", "/var/run/docker.sock"),
        ("docker_host", "localhost:2375"),
        ("grpc_port", 0),
        ("node_rpc_port", 70000),
        ("healthz_port", "8081"),
        ("jd_command", "python -m jdkit._server"),
        ("jd_command", []),
        ("jd_command", ["ok", 3]),
        ("jd_env", {"BAD-NAME": "x"}),
        ("jd_env", {"OK": 1}),
        ("jd_env", [("A", "b")]),
        ("log_tail", -1),
    ],
)
def test_bad_values_raise_config_error_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        DockerConfig(**{field: value})
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_ports_must_differ() -> None:
    with pytest.raises(ConfigError, match="must differ"):
        DockerConfig(grpc_port=8080, node_rpc_port=8080)


def test_provider_checks_its_config_too() -> None:
    with pytest.raises(ConfigError) as caught:
        DockerProvider(ready_timeout=-5)
    assert caught.value.field == "ready_timeout"
    with pytest.raises(ConfigError):
        DockerProvider(DockerConfig(), postgres_user="")


def test_jd_image_config_wins_then_env_then_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_JD_IMAGE, raising=False)
    assert DockerConfig().jd_image == "jdkit/jd:dev"
    monkeypatch.setenv(ENV_JD_IMAGE, "registry.example/jd:1.2")
    assert DockerConfig().jd_image == "registry.example/jd:1.2"
    assert DockerConfig(jd_image="mine:dev").jd_image == "mine:dev"
    monkeypatch.setenv(ENV_JD_IMAGE, "not valid")
    with pytest.raises(ConfigError, match=ENV_JD_IMAGE) as caught:
        DockerConfig()
    assert caught.value.field == "jd_image"


def test_defaults_postgres_16_with_local_fallback() -> None:
    cfg = DockerConfig()
    assert cfg.postgres_image == "postgres:16"
    assert cfg.postgres_fallback == "jdkit/postgres:15"


def test_secrets_are_random_per_config_and_never_in_repr() -> None:
    a, b = DockerConfig(), DockerConfig()
    assert a.postgres_password != b.postgres_password and a.csa_secret != b.csa_secret
    assert len(a.csa_secret) == 64 and int(a.csa_secret, 16) >= 0
    cfg = DockerConfig(
        postgres_password="pw-SENTINEL",
        csa_secret="csa-SENTINEL",
        jd_env={"EXTRA_TOKEN": "tok-SENTINEL"},
    )
    for text in (repr(cfg), str(cfg), repr(DockerProvider(cfg))):
        assert "SENTINEL" not in text
    assert "postgres_password=[redacted]" in repr(cfg)


def test_redact_masks_every_spelling_of_the_secrets() -> None:
    cfg = DockerConfig(postgres_password="p@ss/w:rd", csa_secret="c" * 64)
    url = cfg.database_url()
    assert url == "postgresql://jd:p%40ss%2Fw%3Ard@postgres:5432/jd"
    text = cfg.redact(f"url={url} raw=p@ss/w:rd secret={'c' * 64}")
    assert "p@ss" not in text and "p%40ss" not in text and "c" * 64 not in text
    assert text.count("[redacted]") == 3


def test_config_is_frozen_and_copies_its_inputs() -> None:
    env = {"A": "1"}
    cmd = ["python", "-m", "jdkit._server"]
    cfg = DockerConfig(jd_env=env, jd_command=cmd)
    env["A"] = "2"
    cmd.append("--oops")
    assert cfg.jd_env == {"A": "1"} and cfg.jd_command == ("python", "-m", "jdkit._server")
    with pytest.raises(AttributeError):
        cfg.reuse = True  # type: ignore[misc]


def test_reuse_key_ignores_secrets_but_not_images() -> None:
    assert DockerConfig()._reuse_key() == DockerConfig()._reuse_key()
    assert DockerConfig()._reuse_key() != DockerConfig(postgres_db="other")._reuse_key()


def test_pid_liveness_detects_dead_and_reused_pids() -> None:
    import os
    import subprocess
    import sys

    me = os.getpid()
    assert _pid_alive(me, _process_start(me))
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not _pid_alive(child.pid, None)  # reaped: gone
    assert not _pid_alive(-1, None)
    if _process_start(me) is not None:  # Linux: a live pid with another start time
        assert not _pid_alive(me, "1")


@pytest.mark.asyncio
async def test_no_engine_is_a_provider_error_not_a_hang(tmp_path: Any) -> None:
    from jdkit._providers._docker import DockerProviderError

    provider = DockerProvider(docker_host=f"unix://{tmp_path}/missing.sock")
    with pytest.raises(DockerProviderError, match="no Docker engine answers"):
        await provider.initialize()
    await provider.aclose()  # nothing to clean, and no error


def test_jd_env_secrets_are_the_keys_metadata_calls_secret() -> None:
    from jdkit._redact import REDACTED, is_sensitive_key

    env = {
        "X_COOKIE": "cookie-SENTINEL",
        "DB_PASSWD": "passwd-SENTINEL",
        "SOME_API_KEY": "apikey-SENTINEL",
        "DATABASE_URL": "postgresql://jd:url-SENTINEL@db/jd",
        "SIGNING_KEY": "signing-SENTINEL",
        "LOG_LEVEL": "debug-VISIBLE",
    }
    cfg = DockerConfig(jd_env=env)
    text = cfg.redact(" ".join(env.values()))
    assert "SENTINEL" not in text and "debug-VISIBLE" in text
    assert text.count(REDACTED) == 5  # one placeholder, the one log records get
    assert [k for k in env if is_sensitive_key(k)] == list(env)[:5]
    assert is_sensitive_key("x-cookie") and not is_sensitive_key("x-request-id")
