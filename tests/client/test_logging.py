"""Per-attempt DEBUG logging on `jdkit.client`, never INFO; retried errors count attempts."""

from __future__ import annotations

import logging
import socket

import pytest

from jdkit import JobDistributor, RetryPolicy, UnavailableError
from jdkit.pb import node
from tests.helpers.server_fixtures import add_node, pubkey, served

pytestmark = pytest.mark.asyncio


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_refused_connection_logs_each_attempt_and_error_counts_them(caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG, logger="jdkit.client")
    policy = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.02)
    async with JobDistributor.connect(f"127.0.0.1:{_closed_port()}", retry=policy) as jd:
        with pytest.raises(UnavailableError) as err:
            await jd.list_nodes()
    assert err.value.attempts == 4
    assert "(after 4 attempts)" in str(err.value)
    recs = [r for r in caplog.records if r.name == "jdkit.client"]
    assert [r.levelno for r in recs] == [logging.DEBUG] * 4
    assert [r.jd_attempt for r in recs] == [1, 2, 3, 4]  # type: ignore[attr-defined]
    assert all(r.jd_outcome == "UNAVAILABLE" for r in recs)  # type: ignore[attr-defined]
    assert all(r.jd_method == "/api.node.v1.NodeService/ListNodes" for r in recs)  # type: ignore[attr-defined]
    assert [r.jd_backoff_s is None for r in recs] == [False, False, False, True]  # type: ignore[attr-defined]
    first = recs[0].getMessage()
    assert first.startswith("ListNodes attempt 1: UNAVAILABLE") and "retrying in" in first
    assert " ms" in first


async def test_success_is_one_debug_line_and_nothing_at_info(caplog) -> None:  # type: ignore[no-untyped-def]
    async with served() as (_, jd):
        caplog.set_level(logging.INFO, logger="jdkit")
        await add_node(jd, 1)
        await jd.list_nodes()
        assert [r for r in caplog.records if r.name.startswith("jdkit.client")] == []
        caplog.set_level(logging.DEBUG, logger="jdkit.client")
        await jd.get_node(node.GetNodeRequest(public_key=pubkey(1)))
        recs = [r for r in caplog.records if r.name == "jdkit.client"]
        assert len(recs) == 1 and recs[0].jd_outcome == "OK"  # type: ignore[attr-defined]
        assert recs[0].jd_duration_ms > 0  # type: ignore[attr-defined]


async def test_a_failure_not_retried_says_nothing_about_attempts() -> None:
    async with served() as (_, jd):
        from jdkit import NotFoundError

        with pytest.raises(NotFoundError) as err:
            await jd.get_node(id="node_nope")
        assert err.value.attempts == 1 and "attempts" not in str(err.value)
