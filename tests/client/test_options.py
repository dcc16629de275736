"""One ClientOptions, taken the same way by every path to a client."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import jdkit
from jdkit import (
    ClientOptions,
    ConfigError,
    EmbeddedProvider,
    JobDistributor,
    Journal,
    RemoteConfig,
    RemoteProvider,
    RetryPolicy,
    TLSConfig,
    UnauthenticatedError,
)
from jdkit.auth import StaticToken
from jdkit.server import StaticTokenVerifier
from jdkit.testing import any_loop_client, jd_client_factory, jd_remote_factory


class Seen(jdkit.Interceptor):
    """Records the metadata of each call as the chain hands it on (after the user's)."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []

    async def unary(self, call: jdkit.Call, proceed: jdkit.UnaryNext) -> jdkit.Message:
        self.metadata.append(dict(call.metadata))
        return await proceed(call)


# -- construction and validation, in one place


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"target": "no-port"}, "target"),
        ({"target": "grpcs://h", "tls": False}, "tls"),
        ({"tls": "yes"}, "tls"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"retry": 3}, "retry"),
        ({"auth": "token"}, "auth"),
        ({"allow_insecure_auth": "yes"}, "allow_insecure_auth"),
        ({"interceptors": [object()]}, "interceptors"),
        ({"interceptors": Seen()}, "interceptors"),
        ({"metadata": {"X-Upper": "v"}}, "metadata"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"dry_run": "yes"}, "dry_run"),
    ],
)
async def test_bad_values_are_config_errors_naming_the_field(
    changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        ClientOptions(**changes)
    assert info.value.field == field
    # the same check wherever the options come in
    with pytest.raises(ConfigError) as info:
        JobDistributor.connect(**({"target": "127.0.0.1:1"} | changes))
    assert info.value.field == field
    with pytest.raises(ConfigError):
        EmbeddedProvider(**changes)


def test_options_are_frozen_and_interceptors_a_tuple() -> None:
    opts = ClientOptions(interceptors=[Seen()], metadata={"a": "b"})
    assert isinstance(opts.interceptors, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.timeout = 1  # type: ignore[misc]


def test_keywords_override_fields_and_unknown_ones_name_themselves() -> None:
    base = ClientOptions(target="h:1", timeout=3)
    assert ClientOptions.of(base, timeout=5).timeout == 5
    assert ClientOptions.of(base).timeout == 3
    with pytest.raises(TypeError, match="'timeuot'"):
        base.replace(timeuot=5)


def test_the_option_names_are_the_fields() -> None:
    assert ClientOptions.names() == tuple(f.name for f in dataclasses.fields(ClientOptions))


UNKNOWN_EVERYWHERE = [
    ("JobDistributor.connect", lambda: JobDistributor.connect("h:1", bogus=1)),
    ("jdkit.connect (embedded)", lambda: jdkit.connect(bogus=1)),
    ("jdkit.connect (url)", lambda: jdkit.connect("h:1", bogus=1)),
    ("EmbeddedProvider", lambda: EmbeddedProvider(bogus=1)),
    ("RemoteProvider", lambda: RemoteProvider("h:1", bogus=1)),
    ("any_loop_client", lambda: any_loop_client("h:1", bogus=1)),
    ("jd_client_factory", lambda: jd_client_factory(bogus=1)),
    ("jd_remote_factory", lambda: jd_remote_factory(bogus=1)),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "make", [m for _, m in UNKNOWN_EVERYWHERE], ids=[n for n, _ in UNKNOWN_EVERYWHERE]
)
async def test_an_unknown_option_is_a_type_error_everywhere(make: Any) -> None:
    with pytest.raises(TypeError, match="'bogus'"):
        make()


@pytest.mark.asyncio
async def test_an_unknown_option_is_a_type_error_whatever_connect_picks(monkeypatch) -> None:
    monkeypatch.setenv("JD_GRPC_URL", "127.0.0.1:1")
    with pytest.raises(TypeError, match="'bogus'"):
        jdkit.connect(bogus=1)


def test_docker_provider_takes_client_options_beside_its_config() -> None:
    pytest.importorskip("aiodocker")
    provider = jdkit.DockerProvider(timeout=7, ready_timeout=5, metadata={"a": "b"})
    assert provider.options.timeout == 7 and provider.config.ready_timeout == 5
    assert provider.options.metadata == {"a": "b"}
    # the deprecated DockerConfig.call_timeout still sets the deadline, with a warning
    with pytest.warns(DeprecationWarning, match="call_timeout"):
        assert jdkit.DockerProvider(call_timeout=9).options.timeout == 9
    with pytest.raises(TypeError):
        jdkit.DockerProvider(bogus=1)


# -- every option accepted the same way by every path


def _all_defaults() -> dict[str, Any]:
    return {f.name: getattr(ClientOptions(), f.name) for f in dataclasses.fields(ClientOptions)}


@pytest.mark.asyncio
async def test_every_option_is_accepted_by_every_path(monkeypatch) -> None:
    """Adding a field to ClientOptions makes it work everywhere: no path lists them."""
    every = {k: v for k, v in _all_defaults().items() if k != "target"}
    monkeypatch.delenv("JD_GRPC_URL", raising=False)
    assert isinstance(jdkit.connect(**every), EmbeddedProvider)
    assert isinstance(jdkit.connect("h:1", **every), RemoteProvider)
    EmbeddedProvider(**every)
    RemoteProvider("h:1", **every)
    jd_client_factory(**every)
    jd_remote_factory(**every)
    any_loop_client("h:1", **every)[1].close()
    async with JobDistributor.connect("h:1", **every) as jd:
        assert jd.options == ClientOptions(target="h:1", **every)
    monkeypatch.setenv("JD_GRPC_URL", "127.0.0.1:1")
    assert isinstance(jdkit.connect(**every), RemoteProvider)


@pytest.mark.asyncio
async def test_connect_with_options_and_keywords() -> None:
    opts = ClientOptions(timeout=9, metadata={"team": "a"}, retry=RetryPolicy.disabled())
    async with JobDistributor.connect("127.0.0.1:1", options=opts, timeout=5) as jd:
        assert jd.options.timeout == 5 and jd.options.metadata == {"team": "a"}
        assert jd.options.target == "127.0.0.1:1" and jd.retry_policy.max_attempts == 1


@pytest.mark.asyncio
async def test_environment_gives_way_to_what_the_caller_sets(monkeypatch) -> None:
    monkeypatch.setenv("JD_GRPC_URL", "127.0.0.1:1")
    monkeypatch.setenv("JD_TIMEOUT", "7")
    provider = jdkit.connect(metadata={"a": "b"})
    assert isinstance(provider, RemoteProvider)
    assert provider.options.timeout == 7 and provider.options.metadata == {"a": "b"}
    provider = jdkit.connect(options=ClientOptions(timeout=3))
    assert provider.options.timeout == 3 and provider.options.target == "127.0.0.1:1"


def test_from_env_gives_client_options_and_remote_config_is_one() -> None:
    opts = RemoteConfig.from_env({"JD_GRPC_URL": "grpcs://jd.example", "JD_TIMEOUT": "none"})
    assert type(opts) is ClientOptions and opts.timeout is None
    assert opts.resolved_tls() == TLSConfig()
    cfg = RemoteConfig(url="h:1", timeout=2)
    assert isinstance(cfg, ClientOptions) and cfg.url == cfg.target == "h:1"
    assert cfg.replace(timeout=4).timeout == 4
    with pytest.raises(ConfigError) as info:
        RemoteConfig()
    assert info.value.field == "target"


# -- the options reach the wire, through the embedded provider too


@pytest.mark.asyncio
async def test_embedded_provider_takes_metadata_auth_and_allow_insecure_auth() -> None:
    seen = Seen()
    provider = EmbeddedProvider(
        ClientOptions(metadata={"x-team": "ops"}, interceptors=[seen]),
        auth=StaticToken("s3cret-token"),
        server_options={"auth": StaticTokenVerifier(["s3cret-token"])},
    )
    async with provider as jd:
        await jd.list_nodes(metadata={"x-call": "1"})
        sent = dict(seen.metadata[-1])
        sent.pop("x-request-id")
        assert sent == {"x-team": "ops", "x-call": "1"}
        assert jd.options.allow_insecure_auth is True  # the provider's default on loopback
    # a caller's explicit False is kept: plaintext tokens refused
    with pytest.raises(ConfigError) as info:
        async with EmbeddedProvider(auth=StaticToken("s3cret-token"), allow_insecure_auth=False):
            pass
    assert info.value.field == "allow_insecure_auth"


@pytest.mark.asyncio
async def test_embedded_server_refuses_a_wrong_token_through_the_provider() -> None:
    provider = EmbeddedProvider(
        auth=StaticToken("wrong-token"),
        server_options={"auth": StaticTokenVerifier(["s3cret-token"])},
    )
    async with provider as jd:
        with pytest.raises(UnauthenticatedError):
            await jd.list_nodes()


@pytest.mark.asyncio
async def test_dry_run_views_keep_the_options() -> None:
    journal = Journal()
    async with EmbeddedProvider(timeout=4, metadata={"a": "b"}, dry_run=journal) as jd:
        assert jd.journal is journal
        assert jd.options.timeout == 4 and jd.options.metadata == {"a": "b"}
        view = jd.with_dry_run()
        assert view.options.timeout == 4 and view.journal is not journal
