"""The hand-written list encoders write exactly betterproto2's bytes."""

from __future__ import annotations

import datetime as dt
import random

from jdkit._server._fastpb import ENCODERS, encode_job, encode_node, encode_proposal
from jdkit.pb import job, label, node

UTC = dt.UTC


def test_fast_encoders_match_betterproto2_byte_for_byte() -> None:
    r = random.Random(7)

    def when() -> dt.datetime | None:
        return r.choice(
            [
                None,
                dt.datetime(1970, 1, 1, tzinfo=UTC),
                dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                dt.datetime.now(UTC),
                dt.datetime(9999, 12, 31, tzinfo=UTC),
                dt.datetime(2020, 1, 1, 0, 0, 5, tzinfo=UTC),
            ]
        )

    def text() -> str:
        return r.choice(["", "a", "ü" * 3, "x" * 200])

    def labels() -> list[label.Label]:
        return [
            label.Label(key=text() or "k", value=r.choice([None, "", "v", "ü"]))
            for _ in range(r.randint(0, 3))
        ]

    for _ in range(1500):
        j = job.Job(
            id=text(),
            uuid=text(),
            node_id=text(),
            proposal_ids=[text() for _ in range(r.randint(0, 3))],
            created_at=when(),
            updated_at=when(),
            deleted_at=when(),
            labels=labels(),
            rollback_policy_id=r.choice([None, 0, 1, -1, 2**63 - 1, -(2**63)]),
        )
        n = node.Node(
            id=text(),
            name=text(),
            public_key=text(),
            is_enabled=r.random() < 0.5,
            is_connected=r.random() < 0.5,
            labels=labels(),
            created_at=when(),
            updated_at=when(),
            workflow_key=r.choice([None, "", "w"]),
            p2p_key_bundles=[node.P2PKeyBundle(peer_id="p", public_key="k")] * r.randint(0, 2),
            nop_friendly_name=text(),
            version=text(),
        )
        p = job.Proposal(
            id=text(),
            revision=r.choice([0, 1, 5, 2**40, -3]),
            status=job.ProposalStatus(r.randint(0, 7)),
            delivery_status=job.ProposalDeliveryStatus(r.randint(0, 4)),
            spec=text(),
            job_id=text(),
            created_at=when(),
            updated_at=when(),
            acked_at=when(),
            response_received_at=when(),
        )
        assert encode_job(j) == bytes(j)
        assert encode_node(n) == bytes(n)
        assert encode_proposal(p) == bytes(p)
        for msg in (
            job.ListJobsResponse(jobs=[j, j]),
            job.ListProposalsResponse(proposals=[p]),
            node.ListNodesResponse(nodes=[n], total_count=r.choice([0, 5, -1])),
        ):
            assert ENCODERS[type(msg)](msg) == bytes(msg)
        batch = job.BatchProposeJobResponse(
            success_responses={
                text(): job.ProposeJobResponse(proposal=r.choice([None, p]))
                for _ in range(r.randint(0, 3))
            },
            failed_responses={
                text(): job.ProposeJobFailure(error_message=text()) for _ in range(r.randint(0, 3))
            },
        )
        assert ENCODERS[job.BatchProposeJobResponse](batch) == bytes(batch)
        single = job.ProposeJobResponse(proposal=r.choice([None, p]))
        assert ENCODERS[job.ProposeJobResponse](single) == bytes(single)
