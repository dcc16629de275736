"""One method per JD v1 RPC, service by service.

Each takes the generated request (`jdkit.pb`; list/get calls also take
keyword forms, built by `jdkit._tasks._requests`) and `CallOptions`, and
returns the generated response.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Unpack

from jdkit._client._calls import CallBase, CallOptions
from jdkit._exceptions import NotFoundError, ProtocolError
from jdkit._tasks import _requests
from jdkit._tasks._requests import SelectorLike
from jdkit.pb import app, csa, job, node, probation


class RPCMethods(CallBase):
    """The RPC methods of `JobDistributor`."""

    # -- conveniences upstream's Go client has

    async def propose_job(
        self, request: job.ProposeJobRequest, **opts: Unpack[CallOptions]
    ) -> job.ProposeJobResponse:
        """ProposeJob; a response without a proposal is an error (as upstream treats it)."""
        response = await self._unary(
            "/api.job.v1.JobService/ProposeJob", request, job.ProposeJobResponse, opts
        )
        if response.proposal is None:
            raise ProtocolError(f"ProposeJob to node {request.node_id!r} returned no proposal")
        return response

    async def get_csa_public_key(self, **opts: Unpack[CallOptions]) -> str:
        """The public key of JD's first CSA keypair; NotFoundError when JD has none."""
        keypairs = (await self.list_keypairs(**opts)).keypairs
        if not keypairs:
            raise NotFoundError(
                "JD has no CSA keypair", method="/api.csa.v1.CSAService/ListKeypairs"
            )
        return keypairs[0].public_key

    # -- one method per RPC

    # -- AppService

    async def version(
        self, request: app.VersionRequest | None = None, **opts: Unpack[CallOptions]
    ) -> app.VersionResponse:
        """The JD server's version string (AppService/Version)."""
        return await self._unary(
            "/api.app.v1.AppService/Version",
            request or app.VersionRequest(),
            app.VersionResponse,
            opts,
        )

    # -- CSAService

    async def get_keypair(
        self, request: csa.GetKeypairRequest | None = None, **opts: Unpack[CallOptions]
    ) -> csa.GetKeypairResponse:
        """JD's active CSA keypair (public half only); `NotFoundError` when JD has none."""
        return await self._unary(
            "/api.csa.v1.CSAService/GetKeypair",
            request or csa.GetKeypairRequest(),
            csa.GetKeypairResponse,
            opts,
        )

    async def list_keypairs(
        self, request: csa.ListKeypairsRequest | None = None, **opts: Unpack[CallOptions]
    ) -> csa.ListKeypairsResponse:
        """All of JD's CSA keypairs; `get_csa_public_key()` is the usual shortcut."""
        return await self._unary(
            "/api.csa.v1.CSAService/ListKeypairs",
            request or csa.ListKeypairsRequest(),
            csa.ListKeypairsResponse,
            opts,
        )

    # -- NodeService

    async def register_node(
        self, request: node.RegisterNodeRequest, **opts: Unpack[CallOptions]
    ) -> node.RegisterNodeResponse:
        """Register a node by name and CSA public key (hex); an enabled, not connected node.

        A key registered already is `AlreadyExistsError`; `ensure_node` makes
        this idempotent. `.node` is always set by JD (typed Optional by proto3).
        """
        return await self._unary(
            "/api.node.v1.NodeService/RegisterNode", request, node.RegisterNodeResponse, opts
        )

    async def get_node(
        self,
        request: node.GetNodeRequest | None = None,
        *,
        id: str | None = None,
        public_key: str | None = None,
        **opts: Unpack[CallOptions],
    ) -> node.GetNodeResponse:
        """One node by `id=` or `public_key=` (or a request); `NotFoundError` when absent.

        `.node` is always set by JD; `ensure_node` returns a plain `Node`.
        """
        return await self._unary(
            "/api.node.v1.NodeService/GetNode",
            _requests.get_node(request, id=id, public_key=public_key),
            node.GetNodeResponse,
            opts,
        )

    async def list_nodes(
        self,
        request: node.ListNodesRequest | None = None,
        *,
        selector: SelectorLike | None = None,
        enabled: bool | None = None,
        ids: Sequence[str] | None = None,
        public_keys: Sequence[str] | None = None,
        page_size: int | None = None,
        page: int | None = None,
        **opts: Unpack[CallOptions],
    ) -> node.ListNodesResponse:
        """One ListNodes call; filters as keywords or a request, not both.

        `selector` is selector text (`"env=dev, !canary"`) or `Selector`s, all
        of which must match. Without `page_size` JD returns every match; to
        walk all pages whatever the server does, use `iter_nodes`.
        """
        return await self._unary(
            "/api.node.v1.NodeService/ListNodes",
            _requests.list_nodes(
                request,
                selector=selector,
                enabled=enabled,
                ids=ids,
                public_keys=public_keys,
                page_size=page_size,
                page=page,
            ),
            node.ListNodesResponse,
            opts,
        )

    async def update_node(
        self, request: node.UpdateNodeRequest, **opts: Unpack[CallOptions]
    ) -> node.UpdateNodeResponse:
        """Change a node's name, public key or labels.

        Empty strings and an empty label list mean "leave unchanged"; a
        non-empty label list replaces all labels.
        """
        return await self._unary(
            "/api.node.v1.NodeService/UpdateNode", request, node.UpdateNodeResponse, opts
        )

    async def enable_node(
        self, request: node.EnableNodeRequest, **opts: Unpack[CallOptions]
    ) -> node.EnableNodeResponse:
        """Enable a node again (`NotFoundError` when absent)."""
        return await self._unary(
            "/api.node.v1.NodeService/EnableNode", request, node.EnableNodeResponse, opts
        )

    async def disable_node(
        self, request: node.DisableNodeRequest, **opts: Unpack[CallOptions]
    ) -> node.DisableNodeResponse:
        """Disable a node: JD refuses new proposals to it until it is enabled."""
        return await self._unary(
            "/api.node.v1.NodeService/DisableNode", request, node.DisableNodeResponse, opts
        )

    async def list_node_chain_configs(
        self,
        request: node.ListNodeChainConfigsRequest | None = None,
        *,
        node_ids: Sequence[str] | None = None,
        **opts: Unpack[CallOptions],
    ) -> node.ListNodeChainConfigsResponse:
        """The chain configs nodes reported, all or for `node_ids=`."""
        return await self._unary(
            "/api.node.v1.NodeService/ListNodeChainConfigs",
            _requests.list_node_chain_configs(request, node_ids=node_ids),
            node.ListNodeChainConfigsResponse,
            opts,
        )

    # -- JobService

    async def batch_propose_job(
        self, request: job.BatchProposeJobRequest, **opts: Unpack[CallOptions]
    ) -> job.BatchProposeJobResponse:
        """Propose one spec to many node ids; each node succeeds or fails on its own.

        Results are keyed by node id in `success_responses` / `failed_responses`.
        `propose` adds selectors, chunking and a `Rollout` on top.
        """
        return await self._unary(
            "/api.job.v1.JobService/BatchProposeJob", request, job.BatchProposeJobResponse, opts
        )

    async def get_job(
        self,
        request: job.GetJobRequest | None = None,
        *,
        id: str | None = None,
        **opts: Unpack[CallOptions],
    ) -> job.GetJobResponse:
        """One job by `id=` (a job id, not the externalJobID); `NotFoundError` when absent."""
        return await self._unary(
            "/api.job.v1.JobService/GetJob",
            _requests.get_job(request, id=id),
            job.GetJobResponse,
            opts,
        )

    async def list_jobs(
        self,
        request: job.ListJobsRequest | None = None,
        *,
        selector: SelectorLike | None = None,
        ids: Sequence[str] | None = None,
        node_ids: Sequence[str] | None = None,
        uuids: Sequence[str] | None = None,
        include_deleted: bool | None = None,
        **opts: Unpack[CallOptions],
    ) -> job.ListJobsResponse:
        """Jobs matching every filter given (keywords or a request, not both).

        `uuids` are externalJobIDs: one per node that was proposed the spec.
        `selector` matches the job's labels. Deleted jobs only with
        `include_deleted=True`.
        """
        return await self._unary(
            "/api.job.v1.JobService/ListJobs",
            _requests.list_jobs(
                request,
                selector=selector,
                ids=ids,
                node_ids=node_ids,
                uuids=uuids,
                include_deleted=include_deleted,
            ),
            job.ListJobsResponse,
            opts,
        )

    async def update_job(
        self, request: job.UpdateJobRequest, **opts: Unpack[CallOptions]
    ) -> job.UpdateJobResponse:
        """Replace a job's labels (when non-empty) and/or set its rollback policy id."""
        return await self._unary(
            "/api.job.v1.JobService/UpdateJob", request, job.UpdateJobResponse, opts
        )

    async def revoke_job(
        self, request: job.RevokeJobRequest, **opts: Unpack[CallOptions]
    ) -> job.RevokeJobResponse:
        """Revoke the job's latest proposal (only while PROPOSED or CANCELLED).

        `id` may be the job id or the proposal id: JD's API calls it a
        proposal id, upstream's in-memory JD looks it up as a job id.
        """
        return await self._unary(
            "/api.job.v1.JobService/RevokeJob", request, job.RevokeJobResponse, opts
        )

    async def delete_job(
        self, request: job.DeleteJobRequest, **opts: Unpack[CallOptions]
    ) -> job.DeleteJobResponse:
        """Soft-delete a job (sets `deleted_at`); ListJobs then hides it unless asked."""
        return await self._unary(
            "/api.job.v1.JobService/DeleteJob", request, job.DeleteJobResponse, opts
        )

    async def get_proposal(
        self,
        request: job.GetProposalRequest | None = None,
        *,
        id: str | None = None,
        **opts: Unpack[CallOptions],
    ) -> job.GetProposalResponse:
        """One proposal (with its spec) by `id=`; `NotFoundError` when absent."""
        return await self._unary(
            "/api.job.v1.JobService/GetProposal",
            _requests.get_proposal(request, id=id),
            job.GetProposalResponse,
            opts,
        )

    async def list_proposals(
        self,
        request: job.ListProposalsRequest | None = None,
        *,
        ids: Sequence[str] | None = None,
        job_ids: Sequence[str] | None = None,
        **opts: Unpack[CallOptions],
    ) -> job.ListProposalsResponse:
        """Proposals by `ids=` and/or `job_ids=` (keywords or a request, not both).

        JD cannot filter by status or node: `rollout_status` and
        `wait_for_proposals` do that join for you.
        """
        return await self._unary(
            "/api.job.v1.JobService/ListProposals",
            _requests.list_proposals(request, ids=ids, job_ids=job_ids),
            job.ListProposalsResponse,
            opts,
        )

    # -- RollbackPolicyService

    async def create_rollback_policy(
        self, request: probation.CreateRollbackPolicyRequest, **opts: Unpack[CallOptions]
    ) -> probation.CreateRollbackPolicyResponse:
        """Create a rollback policy (a free-form `google.protobuf.Struct`)."""
        return await self._unary(
            "/api.probation.v1.RollbackPolicyService/CreateRollbackPolicy",
            request,
            probation.CreateRollbackPolicyResponse,
            opts,
        )

    async def get_rollback_policy(
        self, request: probation.GetRollbackPolicyRequest, **opts: Unpack[CallOptions]
    ) -> probation.GetRollbackPolicyResponse:
        """One rollback policy by id; `NotFoundError` when absent."""
        return await self._unary(
            "/api.probation.v1.RollbackPolicyService/GetRollbackPolicy",
            request,
            probation.GetRollbackPolicyResponse,
            opts,
        )

    async def list_rollback_policies(
        self,
        request: probation.ListRollbackPoliciesRequest | None = None,
        **opts: Unpack[CallOptions],
    ) -> probation.ListRollbackPoliciesResponse:
        """Rollback policies, all or by ids."""
        return await self._unary(
            "/api.probation.v1.RollbackPolicyService/ListRollbackPolicies",
            request or probation.ListRollbackPoliciesRequest(),
            probation.ListRollbackPoliciesResponse,
            opts,
        )

    async def update_rollback_policy(
        self, request: probation.UpdateRollbackPolicyRequest, **opts: Unpack[CallOptions]
    ) -> probation.UpdateRollbackPolicyResponse:
        """Replace a rollback policy's document."""
        return await self._unary(
            "/api.probation.v1.RollbackPolicyService/UpdateRollbackPolicy",
            request,
            probation.UpdateRollbackPolicyResponse,
            opts,
        )
