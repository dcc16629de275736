"""`jd.with_dry_run(journal, *, options=None, **keywords)`: like every entry
point it takes a `ClientOptions` and its fields as keywords (deriving from the
client's); the fields that make the shared channel cannot change."""

from __future__ import annotations

import pytest

from jdkit import (
    ClientOptions,
    ConfigError,
    EmbeddedProvider,
    JobDistributor,
    Journal,
    VersionError,
)
from jdkit._interceptors import Call, Interceptor, Message, UnaryNext
from jdkit._version import VERSION_PATH
from jdkit.pb import node
from jdkit.server import EmbeddedJD

pytestmark = pytest.mark.asyncio


class Recorder(Interceptor):
    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None]] = []

    async def unary(self, call: Call, proceed: UnaryNext) -> Message:
        self.calls.append((call.method.name, call.time_remaining()))
        return await proceed(call)


async def test_keywords_and_options_derive_from_the_client() -> None:
    async with EmbeddedProvider(timeout=4, metadata={"x-team": "ops"}) as jd:
        rec = Recorder()
        view = jd.with_dry_run(timeout=9, interceptors=[rec])
        assert view.options.timeout == 9 and view.options.metadata == {"x-team": "ops"}
        assert jd.options.timeout == 4 and jd.journal is None  # the client is unchanged
        await view.register_node(node.RegisterNodeRequest(name="n", public_key="ab" * 32))
        await view.list_nodes()
        assert [name for name, _ in rec.calls] == ["RegisterNode", "ListNodes"]
        remaining = rec.calls[0][1]
        assert remaining is not None and 4 < remaining <= 9  # the view's own deadline
        assert view.journal is not None and view.journal.methods() == ["RegisterNode"]
        assert (await jd.list_nodes()).nodes == []  # nothing sent

        # an options object, with keywords over it; without a target it means this client's
        other = jd.with_dry_run(options=ClientOptions(timeout=3), metadata={"x-b": "c"})
        assert other.options.timeout == 3 and other.options.metadata == {"x-b": "c"}
        assert other.target == jd.target and other.journal is not view.journal
        assert (await other.list_nodes()).nodes == []
        same = jd.with_dry_run(options=jd.options.replace(timeout=2))
        assert same.options.timeout == 2 and same.options.allow_insecure_auth is True


async def test_the_journal_can_come_from_options_or_keywords() -> None:
    async with EmbeddedProvider() as jd:
        journal = Journal()
        assert jd.with_dry_run(journal).journal is journal
        assert jd.with_dry_run(dry_run=journal).journal is journal
        assert jd.with_dry_run(options=jd.options.replace(dry_run=journal)).journal is journal
        assert jd.with_dry_run(journal, dry_run=True).journal is journal
        assert isinstance(jd.with_dry_run(dry_run=True).journal, Journal)
        with pytest.raises(ConfigError) as info:
            jd.with_dry_run(dry_run=False)
        assert info.value.field == "dry_run"
        with pytest.raises(ConfigError, match="two journals"):
            jd.with_dry_run(journal, dry_run=Journal())


async def test_channel_fields_cannot_change() -> None:
    async with EmbeddedProvider() as jd:
        jd.with_dry_run(target=str(jd.target), keepalive_time=jd.options.keepalive_time)  # same: ok
        for change in (
            {"target": "127.0.0.1:1"},
            {"tls": True},
            {"keepalive_time": 5.0},
            {"keepalive_timeout": 1.0},
        ):
            with pytest.raises(ConfigError) as info:
                jd.with_dry_run(**change)
            field = next(iter(change))
            assert info.value.field == field and "shares this client's channel" in str(info.value)
        with pytest.raises(ConfigError) as info:
            jd.with_dry_run(options=ClientOptions(target="127.0.0.1:1"))
        assert info.value.field == "target"


async def test_bad_options_are_refused_like_everywhere() -> None:
    async with EmbeddedProvider() as jd:
        with pytest.raises(TypeError, match="'bogus'"):
            jd.with_dry_run(bogus=1)
        with pytest.raises(ConfigError) as info:
            jd.with_dry_run(timeout=-1)
        assert info.value.field == "timeout"
        with pytest.raises(ConfigError) as info:
            jd.with_dry_run(options="timeout=5")  # type: ignore[arg-type]
        assert info.value.field == "options"


async def test_views_go_by_the_clients_version_check() -> None:
    """A view shares its client's channel: one Version call answers the client and its views."""
    async with (
        EmbeddedJD.start() as srv,
        JobDistributor.connect(srv.address, min_version="0.0.1") as jd,
    ):

        def version_calls() -> int:
            return srv.calls.get(VERSION_PATH, 0)

        first = jd.with_dry_run()
        await first.list_nodes()  # a view's first call asks for the client
        await jd.list_nodes()
        for _ in range(3):
            await jd.with_dry_run().list_nodes()
        await first.with_dry_run().list_nodes()  # a view of a view
        await jd.with_dry_run(min_version="0.0.2").list_nodes()  # its own minimum, same answer
        assert version_calls() == 1
        with pytest.raises(VersionError, match=r"99\.0"):
            await jd.with_dry_run(min_version="99.0").list_nodes()
        assert version_calls() == 1
