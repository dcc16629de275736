"""Hand-written protobuf encoding for the big list responses.

betterproto2 serializes in pure Python through generic metadata, which costs
most of a ListJobs answer's time once it carries tens of thousands of jobs.
These encoders write the same bytes directly (field order, defaults omitted,
optional fields present when set) for Job, Node, Proposal and their lists;
the tests compare them byte for byte with betterproto2's output. Anything
they do not know is left to betterproto2.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import Any

from jdkit._proto.api.job.v1 import (
    BatchProposeJobResponse,
    Job,
    ListJobsResponse,
    ListProposalsResponse,
    Proposal,
    ProposeJobResponse,
)
from jdkit._proto.api.label import Label
from jdkit._proto.api.node.v1 import ListNodesResponse, Node

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_U64 = (1 << 64) - 1


def _varint(n: int) -> bytes:
    n &= _U64
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _len(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def _tag(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


_T = {(n, w): _tag(n, w) for n in range(1, 16) for w in (0, 2)}


def _s(number: int, value: str) -> bytes:
    return _len(_T[number, 2], value.encode()) if value else b""


def _opt_s(number: int, value: str | None) -> bytes:
    return b"" if value is None else _len(_T[number, 2], value.encode())


def _i(number: int, value: int) -> bytes:
    return _T[number, 0] + _varint(value) if value else b""


def _ts(number: int, dt: _dt.datetime | None) -> bytes:
    if dt is None:
        return b""
    delta = dt - _EPOCH
    us = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    seconds, micros = divmod(us, 1_000_000)
    return _len(_T[number, 2], _i(1, seconds) + _i(2, micros * 1000))


def _label(lb: Label) -> bytes:
    return _s(1, lb.key) + _opt_s(2, lb.value)


def _labels(number: int, labels: list[Label]) -> bytes:
    tag = _T[number, 2]
    return b"".join(_len(tag, _label(lb)) for lb in labels)


def encode_job(j: Job) -> bytes:
    tag4 = _T[4, 2]
    return b"".join(
        (
            _s(1, j.id),
            _s(2, j.uuid),
            _s(3, j.node_id),
            b"".join(_len(tag4, p.encode()) for p in j.proposal_ids),
            _ts(5, j.created_at),
            _ts(6, j.updated_at),
            _ts(7, j.deleted_at),
            _labels(8, j.labels),
            b"" if j.rollback_policy_id is None else _T[9, 0] + _varint(j.rollback_policy_id),
        )
    )


def encode_node(n: Node) -> bytes:
    bundles = _T[10, 2]
    return b"".join(
        (
            _s(1, n.id),
            _s(2, n.name),
            _s(3, n.public_key),
            _i(4, int(n.is_enabled)),
            _i(5, int(n.is_connected)),
            _labels(6, n.labels),
            _ts(7, n.created_at),
            _ts(8, n.updated_at),
            _opt_s(9, n.workflow_key),
            b"".join(_len(bundles, bytes(b)) for b in n.p2p_key_bundles),
            _s(13, n.nop_friendly_name),
            _s(14, n.version),
        )
    )


def encode_proposal(p: Proposal) -> bytes:
    return b"".join(
        (
            _s(1, p.id),
            _i(2, p.revision),
            _i(3, int(p.status)),
            _i(4, int(p.delivery_status)),
            _s(5, p.spec),
            _s(6, p.job_id),
            _ts(7, p.created_at),
            _ts(8, p.updated_at),
            _ts(9, p.acked_at),
            _ts(10, p.response_received_at),
        )
    )


def _list(number: int, enc: Callable[[Any], bytes], items: list[Any]) -> bytes:
    tag = _T[number, 2]
    return b"".join(_len(tag, enc(x)) for x in items)


def _list_jobs(r: ListJobsResponse) -> bytes:
    return _list(1, encode_job, r.jobs)


def _list_nodes(r: ListNodesResponse) -> bytes:
    return _list(1, encode_node, r.nodes) + _i(2, r.total_count)


def _list_proposals(r: ListProposalsResponse) -> bytes:
    return _list(1, encode_proposal, r.proposals)


def _propose_response(r: ProposeJobResponse) -> bytes:
    return b"" if r.proposal is None else _len(_T[1, 2], encode_proposal(r.proposal))


def _entry(key: str, value: bytes) -> bytes:
    # map entries carry key and value even when empty (as betterproto2 writes them)
    return _len(_T[1, 2], key.encode()) + _len(_T[2, 2], value)


def _batch(r: BatchProposeJobResponse) -> bytes:
    ok, bad = _T[1, 2], _T[2, 2]
    return b"".join(
        [_len(ok, _entry(k, _propose_response(v))) for k, v in r.success_responses.items()]
        + [_len(bad, _entry(k, _s(1, v.error_message))) for k, v in r.failed_responses.items()]
    )


ENCODERS: dict[type[Any], Callable[[Any], bytes]] = {
    BatchProposeJobResponse: _batch,
    ProposeJobResponse: _propose_response,
    ListJobsResponse: _list_jobs,
    ListNodesResponse: _list_nodes,
    ListProposalsResponse: _list_proposals,
}
