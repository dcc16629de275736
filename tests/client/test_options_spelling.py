"""ClientOptions taken one way everywhere: `options=`, given fields win, refusals named."""

from __future__ import annotations

import copy
import dataclasses
import gc
import pickle
import warnings
from typing import Any

import pytest

import jdkit
from jdkit import ClientOptions, ConfigError, DockerConfig, DockerProvider, EmbeddedProvider
from jdkit.testing import (
    jd_client_factory,
    jd_docker_factory,
    jd_remote_factory,
    jd_server_factory,
)

OPTS = ClientOptions(timeout=5)

# -- one spelling: options= (and positional where it comes first)

OPTIONS_KEYWORD = [
    ("JobDistributor.connect", lambda: jdkit.JobDistributor.connect),
    ("EmbeddedProvider", lambda: EmbeddedProvider(options=OPTS)),
    ("RemoteProvider", lambda: jdkit.RemoteProvider(options=OPTS.replace(target="h:1"))),
    ("DockerProvider", lambda: DockerProvider(options=OPTS)),
    ("DockerProvider positional", lambda: DockerProvider(OPTS)),
    ("DockerProvider beside config", lambda: DockerProvider(DockerConfig(), options=OPTS)),
    ("jdkit.connect", lambda: jdkit.connect(options=OPTS)),
]


@pytest.mark.parametrize(
    "make", [m for _, m in OPTIONS_KEYWORD[1:]], ids=[n for n, _ in OPTIONS_KEYWORD[1:]]
)
def test_every_provider_takes_options_by_keyword(make: Any) -> None:
    assert make().options.timeout == 5


def test_factories_take_options_by_keyword() -> None:
    jd_client_factory(options=OPTS)
    jd_remote_factory(options=OPTS)
    jd_docker_factory(options=OPTS)


def test_remote_provider_from_env_takes_options_by_keyword() -> None:
    env = {"JD_GRPC_URL": "127.0.0.1:1", "JD_TIMEOUT": "4"}
    p = jdkit.RemoteProvider.from_env(env, options=ClientOptions(timeout=30.0), compression="gzip")
    assert (p.options.timeout, p.options.compression) == (30.0, "gzip")
    assert jdkit.RemoteProvider.from_env(env, options=OPTS).options.timeout == 5


def test_server_factory_refuses_an_unknown_option_when_defined() -> None:
    with pytest.raises(TypeError, match=r"'bogus'.*EmbeddedJD takes .*csa_secret"):
        jd_server_factory(bogus=1)
    jd_server_factory(db=":memory:", node_port=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: DockerProvider(bogus=1),
        lambda: DockerProvider(DockerConfig(), bogus=1),
        lambda: jd_docker_factory(bogus=1),
        lambda: jd_remote_factory(options=OPTS, bogus=1),
        lambda: EmbeddedProvider(options=OPTS, bogus=1),
    ],
)
def test_an_unknown_keyword_names_client_options_and_itself(make: Any) -> None:
    with pytest.raises(TypeError, match="'bogus'") as info:
        make()
    assert "ClientOptions" in str(info.value)


def test_docker_provider_refuses_other_first_arguments_and_options_twice() -> None:
    with pytest.raises(TypeError, match="DockerConfig"):
        DockerProvider({"timeout": 5})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="twice"):
        DockerProvider(OPTS, options=OPTS)


def test_a_bad_docker_option_fails_when_the_fixture_is_defined() -> None:
    with pytest.raises(ConfigError) as info:
        jd_docker_factory(ready_timeout=-1)
    assert info.value.field == "ready_timeout"


# -- DockerConfig.call_timeout: a deprecated second spelling of timeout


def test_call_timeout_is_deprecated_and_never_silently_dropped() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert DockerProvider().options.timeout == 30.0  # no warning without it
        assert DockerProvider(timeout=3).options.timeout == 3
    with pytest.warns(DeprecationWarning, match="call_timeout"):
        cfg = DockerConfig(call_timeout=5)
    # options that leave timeout unset keep it; a different timeout is a conflict
    assert DockerProvider(cfg, options=ClientOptions()).options.timeout == 5
    assert DockerProvider(cfg, timeout=5).options.timeout == 5
    with pytest.raises(ConfigError) as info:
        DockerProvider(cfg, options=ClientOptions(timeout=30.0))
    assert info.value.field == "call_timeout"


# -- what the caller gives wins over the environment, even the default value


@pytest.fixture
def remote_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("JD_GRPC_URL", "127.0.0.1:1")
    monkeypatch.setenv("JD_TIMEOUT", "4")
    return monkeypatch


def test_an_option_given_equal_to_its_default_still_wins(remote_env: Any) -> None:
    assert jdkit.connect(options=ClientOptions(timeout=30.0)).options.timeout == 30.0
    assert jdkit.connect(timeout=30.0).options.timeout == 30.0
    assert jdkit.connect(options=ClientOptions(metadata={"a": "b"})).options.timeout == 4


def test_a_given_option_makes_its_variable_irrelevant(remote_env: Any) -> None:
    remote_env.setenv("JD_TIMEOUT", "abc")
    assert jdkit.connect(timeout=5).options.timeout == 5
    assert ClientOptions.from_env(timeout=None).timeout is None
    with pytest.raises(ConfigError) as info:
        jdkit.connect()
    assert info.value.field == "JD_TIMEOUT"
    remote_env.setenv("JD_TOKEN", "tok")
    assert jdkit.connect(auth=None, timeout=1).options.auth is None


def test_given_tracks_constructor_replace_and_keywords() -> None:
    assert ClientOptions().given() == {}
    assert ClientOptions(timeout=30.0).given() == {"timeout": 30.0}
    opts = ClientOptions.of(ClientOptions(timeout=1), compression="gzip")
    assert set(opts.given()) == {"timeout", "compression"}
    assert set(jdkit.RemoteConfig("h:1", timeout=2).given()) == {"target", "timeout"}


def test_dataclasses_replace_is_refused_as_it_cannot_say_what_it_changed(
    remote_env: Any,
) -> None:
    remote_env.setenv("JD_TOKEN", "tok")
    for opts in (ClientOptions(), jdkit.RemoteConfig("h:1")):
        with pytest.raises(TypeError, match=r"options\.replace\("):
            dataclasses.replace(opts, compression="gzip")
    opts = ClientOptions(timeout=1).replace(compression="gzip")
    assert set(opts.given()) == {"timeout", "compression"}
    assert jdkit.connect(options=opts).options.auth is not None  # JD_TOKEN still read


def test_options_given_differently_are_not_equal() -> None:
    assert ClientOptions(timeout=30.0) != ClientOptions()  # under JD_TIMEOUT they differ
    assert ClientOptions(timeout=30.0) == ClientOptions().replace(timeout=30.0)
    assert ClientOptions(timeout=1) != ClientOptions(timeout=2)
    assert hash(ClientOptions(timeout=30.0)) == hash(ClientOptions())  # hash: the values
    assert copy.deepcopy(OPTS) == OPTS and pickle.loads(pickle.dumps(OPTS)) == OPTS


def test_remote_factory_options_win_over_the_environment() -> None:
    env = {"JD_GRPC_URL": "127.0.0.1:1", "JD_TIMEOUT": "abc"}
    jd_remote_factory(env=env, options=ClientOptions(timeout=30.0))  # no JD_TIMEOUT error
    assert ClientOptions.from_env(env, **ClientOptions(timeout=30.0).given()).timeout == 30.0


# -- every JD_<FIELD> variable


def test_fields_read_from_their_variables() -> None:
    opts = ClientOptions.from_env(
        {
            "JD_MAX_RECEIVE_MESSAGE_SIZE": "16MiB",
            "JD_COMPRESSION": "gzip",
            "JD_MIN_VERSION": "0.1.0",
            "JD_METADATA": "x-team=ops, k-bin=AAE",
            "JD_KEEPALIVE_TIME": "0",
            "JD_RETRY": "off",
        }
    )
    assert opts.max_receive_message_size == 16 * 1024 * 1024 and opts.compression == "gzip"
    assert opts.min_version == "0.1.0" and opts.keepalive_time is None
    assert opts.metadata == {"x-team": "ops", "k-bin": b"\x00\x01"}
    assert opts.retry is not None and opts.retry.max_attempts == 1
    for var, raw in [("JD_COMPRESSION", "zstd"), ("JD_METADATA", "Bad=x"), ("JD_RETRY", "x")]:
        with pytest.raises(ConfigError) as info:
            ClientOptions.from_env({var: raw})
        assert info.value.field == var
    assert ClientOptions.from_env({"JD_DRY_RUN": "1"}).dry_run is False  # never from env


# -- the embedded JD refuses what it cannot serve


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"target": "h:1"}, "target"), ({"tls": True}, "tls"), ({"tls": jdkit.TLSConfig()}, "tls")],
)
def test_embedded_refuses_target_and_tls(
    changes: dict[str, Any], field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JD_GRPC_URL", raising=False)
    with pytest.raises(ConfigError) as info:
        EmbeddedProvider(**changes)
    assert info.value.field == field
    if field == "tls":
        with pytest.raises(ConfigError):
            jdkit.connect(**changes)


# -- metadata: read-only, hashable, checked as gRPC will


def test_metadata_is_read_only_and_options_hashable() -> None:
    opts = ClientOptions(metadata={"a": "b"})
    with pytest.raises(TypeError):
        opts.metadata["x"] = "y"  # type: ignore[index]
    assert hash(opts) == hash(ClientOptions(metadata={"a": "b"}))
    hash(ClientOptions(dry_run=jdkit.Journal(), interceptors=[jdkit.Interceptor()]))
    assert opts.metadata == {"a": "b"} and dict(opts.metadata) == {"a": "b"}
    assert "s3cret" not in repr(ClientOptions(metadata={"authorization": "s3cret"}).metadata)


@pytest.mark.parametrize(
    ("metadata", "key"),
    [
        ({"bad key": "x"}, "bad key"),
        ({"k": "x\ny"}, "k"),
        ({"k": "x\r"}, "k"),
        ({"k": ""}, "k"),
        ({"k": "é"}, "k"),
        ({"grpc-timeout": "1S"}, "grpc-timeout"),
        ({":authority": "h"}, ":authority"),
        ({"content-type": "x"}, "content-type"),
        ({"te": "trailers"}, "te"),
        ({"user-agent": "x"}, "user-agent"),
        ({"k-bin": "text"}, "k-bin"),
        ({"k": b"bytes"}, "k"),
    ],
)
@pytest.mark.asyncio
async def test_metadata_gRPC_refuses_is_a_config_error_naming_the_key(
    metadata: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        ClientOptions(metadata=metadata)
    assert info.value.field == "metadata" and repr(key) in str(info.value)
    for value in metadata.values():
        if isinstance(value, str) and len(value) > 1:
            assert value not in info.value.problem  # values are never echoed
    async with EmbeddedProvider() as jd:  # per-call metadata is checked the same way
        with pytest.raises(ConfigError):
            await jd.list_nodes(metadata=metadata)


@pytest.mark.asyncio
async def test_binary_metadata_reaches_the_server() -> None:
    async with EmbeddedProvider(metadata={"x-trace-bin": b"\x00\xff"}) as jd:
        await jd.list_nodes()


# -- a provider that fails at start closes its channel


@pytest.mark.asyncio
async def test_a_provider_failing_at_start_leaves_no_channel_open() -> None:
    provider = EmbeddedProvider(min_version="9.0.0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(jdkit.VersionError):
            await provider.initialize()
        assert provider._real is None and provider._client is None
        gc.collect()
    assert not [w for w in caught if "Unclosed" in str(w.message)]
