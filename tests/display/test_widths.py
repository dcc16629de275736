"""Tables fit terminals by leaving out unimportant columns, never by squeezing
IDs, statuses or revisions; anything that is not a terminal gets every column."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from rich.console import Console

from jdkit import NodeRollout, Rollout, RolloutStatus, show, table
from jdkit.display import Table
from jdkit.pb import job, label, node

T = dt.datetime(2026, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
S = job.ProposalStatus
D = job.ProposalDeliveryStatus


def proposals(n: int = 5) -> list[job.Proposal]:
    return [
        job.Proposal(
            id=f"prop_01J9ZK{i:06d}ABCDEF",
            job_id=f"job_01J9ZK{i:06d}ABCDEF",
            revision=i + 1,
            status=S.APPROVED,
            delivery_status=D.ACKNOWLEDGED,
            updated_at=T,
        )
        for i in range(n)
    ]


def nodes(n: int = 3) -> list[node.Node]:
    return [
        node.Node(
            id=f"node_01J9ZK{i:06d}ABCDEF",
            name=f"chainlink-node-{i}",
            public_key="ab" * 32,
            is_enabled=True,
            labels=[
                label.Label(key="env", value="dev"),
                label.Label(key="region", value="eu-west-1"),
                label.Label(key="tier", value="gold"),
            ],
            created_at=T,
        )
        for i in range(n)
    ]


def render(view: object, width: int) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, legacy_windows=False).print(view)
    return out.getvalue()


@pytest.mark.parametrize("width", [60, 80, 100, 120])
def test_proposals_keep_id_rev_and_status_whole(width: int) -> None:
    out = render(table(proposals()), width)
    assert all(len(line) <= width for line in out.splitlines())
    for p in proposals():
        assert p.id in out
    assert out.count("APPROVED") == 5 and "APPROV…" not in out
    assert "Rev" in out and "Status" in out
    if width >= 120:
        assert "ACKNOWLEDGED" in out and "Updated" in out and "not shown" not in out


def test_narrow_terminal_leaves_out_timestamps_and_delivery_first_and_says_so() -> None:
    t = table(proposals())
    assert isinstance(t, Table)
    keep, _ = t.fit(70)
    kept = [t.columns[i].header for i in keep]
    assert kept[:4] == ["ID", "Job", "Rev", "Status"] or {"ID", "Rev", "Status"} <= set(kept)
    assert "Updated" not in kept and "Delivery" not in kept
    out = render(t, 70)
    assert "not shown at this width: Delivery, Updated" in out


@pytest.mark.parametrize("width", [80, 100, 140])
def test_wide_never_folds_a_column_to_one_character(width: int) -> None:
    t = table(nodes(), wide=True)
    assert isinstance(t, Table)
    keep, floors = t.fit(width)
    for i in keep:
        assert floors[i] >= min(len(t.columns[i].header), 4)
        if t.columns[i].long:
            assert floors[i] >= 20
    out = render(t, width)
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) <= 3 + 3 * 5  # header, rule, caption; at most a few lines per row
    assert "chainlink-node-0" in out


def test_plain_text_outside_a_terminal_has_every_column() -> None:
    buf = io.StringIO()
    show(proposals(), file=buf)
    text = buf.getvalue()
    header = text.splitlines()[0].split()
    assert header == ["ID", "JOB", "REV", "STATUS", "DELIVERY", "UPDATED"]
    assert "ACKNOWLEDGED" in text and "2026-05-06 07:08:09Z" in text
    assert "…" not in text


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_show_to_a_terminal_file_uses_rich() -> None:
    out = _TTY()
    show(nodes(), file=out)
    assert "Public key" in out.getvalue()  # rich's headers, not the plain upper-case ones


def test_rollout_and_rollout_status_tables() -> None:
    p = proposals(2)
    r = Rollout("ext-1", {"node_a": p[0], "node_b": p[1]}, {"node_c": "node is disabled"})
    text = table(r).to_text()  # type: ignore[union-attr]
    assert text.splitlines()[0] == "2 proposed, 1 failed"
    assert "node is disabled" in text and p[1].id in text
    dry = Rollout("ext-1", {"node_a": p[0]}, dry_run=True)
    assert "dry run" in table(dry).to_text()  # type: ignore[union-attr]
    st = RolloutStatus(
        (
            NodeRollout("node_a", "a", "job_a", "ext-1", "prop_a", 2, S.APPROVED, D.DELIVERED, T),
            NodeRollout("node_b", "b", "", "ext-1", "", 0, S.UNSPECIFIED, D.UNSPECIFIED, None),
        )
    )
    text = table(st).to_text()  # type: ignore[union-attr]
    lines = text.splitlines()
    assert lines[0] == "rollout of ext-1: APPROVED 1, not proposed 1"
    assert lines[1].split() == [
        "NODE",
        "NAME",
        "REV",
        "STATUS",
        "DELIVERY",
        "UPDATED",
        "JOB",
        "PROPOSAL",
    ]
    assert "not proposed" in lines[3]
    out = render(table(st), 60)
    assert "node_a" in out and "APPROVED" in out and "not proposed" in out
