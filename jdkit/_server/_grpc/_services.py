"""The embedded JD's services: each RPC of App, CSA, Job, Node and
RollbackPolicy as a call into `JDState`, and grpc.health.v1."""

from __future__ import annotations

from collections.abc import AsyncIterator

from jdkit._core.rules import job_ident
from jdkit._exceptions import NotFoundError
from jdkit._proto.api.app.v1 import AppServiceBase, VersionRequest, VersionResponse
from jdkit._proto.api.csa.v1 import (
    CsaServiceBase,
    GetKeypairRequest,
    GetKeypairResponse,
    ListKeypairsRequest,
    ListKeypairsResponse,
)
from jdkit._proto.api.job.v1 import (
    BatchProposeJobRequest,
    BatchProposeJobResponse,
    DeleteJobRequest,
    DeleteJobResponse,
    GetJobRequest,
    GetJobResponse,
    GetProposalRequest,
    GetProposalResponse,
    JobServiceBase,
    ListJobsRequest,
    ListJobsResponse,
    ListProposalsRequest,
    ListProposalsResponse,
    ProposeJobFailure,
    ProposeJobRequest,
    ProposeJobResponse,
    RevokeJobRequest,
    RevokeJobResponse,
    UpdateJobRequest,
    UpdateJobResponse,
)
from jdkit._proto.api.node.v1 import (
    DisableNodeRequest,
    DisableNodeResponse,
    EnableNodeRequest,
    EnableNodeResponse,
    GetNodeRequest,
    GetNodeResponse,
    ListNodeChainConfigsRequest,
    ListNodeChainConfigsResponse,
    ListNodesRequest,
    ListNodesResponse,
    NodeServiceBase,
    RegisterNodeRequest,
    RegisterNodeResponse,
    UpdateNodeRequest,
    UpdateNodeResponse,
)
from jdkit._proto.api.probation.v1 import (
    CreateRollbackPolicyRequest,
    CreateRollbackPolicyResponse,
    GetRollbackPolicyRequest,
    GetRollbackPolicyResponse,
    ListRollbackPoliciesRequest,
    ListRollbackPoliciesResponse,
    RollbackPolicyServiceBase,
    UpdateRollbackPolicyRequest,
    UpdateRollbackPolicyResponse,
)
from jdkit._proto.grpc.health.v1 import HealthBase, HealthCheckRequest, HealthCheckResponse
from jdkit._server._grpc._calls import Servable
from jdkit._server._grpc._runtime import Runtime, ServingStatus
from jdkit._server._state import JDState


def _job_ident(req: GetJobRequest | RevokeJobRequest | DeleteJobRequest | UpdateJobRequest) -> str:
    return job_ident(req.id, req.uuid)


class NodeService(NodeServiceBase):
    def __init__(self, state: JDState) -> None:
        self.s = state

    async def register_node(self, message: RegisterNodeRequest) -> RegisterNodeResponse:
        node = await self.s.register_node(message.name, message.public_key, message.labels)
        return RegisterNodeResponse(node=node)

    async def get_node(self, message: GetNodeRequest) -> GetNodeResponse:
        return GetNodeResponse(node=await self.s.get_node(message.id, message.public_key))

    async def list_nodes(self, message: ListNodesRequest) -> ListNodesResponse:
        nodes, total = await self.s.list_nodes(message.filter, message.page_size, message.page)
        return ListNodesResponse(nodes=nodes, total_count=min(total, 2**31 - 1))

    async def update_node(self, message: UpdateNodeRequest) -> UpdateNodeResponse:
        node = await self.s.update_node(
            message.id, message.name, message.public_key, message.labels
        )
        return UpdateNodeResponse(node=node)

    async def enable_node(self, message: EnableNodeRequest) -> EnableNodeResponse:
        return EnableNodeResponse(node=await self.s.set_node_enabled(message.id, True))

    async def disable_node(self, message: DisableNodeRequest) -> DisableNodeResponse:
        return DisableNodeResponse(node=await self.s.set_node_enabled(message.id, False))

    async def list_node_chain_configs(
        self, message: ListNodeChainConfigsRequest
    ) -> ListNodeChainConfigsResponse:
        ids = message.filter.node_ids if message.filter else []
        return ListNodeChainConfigsResponse(chain_configs=await self.s.list_chain_configs(ids))


class JobService(JobServiceBase):
    def __init__(self, state: JDState) -> None:
        self.s = state

    async def get_job(self, message: GetJobRequest) -> GetJobResponse:
        return GetJobResponse(job=await self.s.get_job(_job_ident(message)))

    async def get_proposal(self, message: GetProposalRequest) -> GetProposalResponse:
        return GetProposalResponse(proposal=await self.s.get_proposal(message.id))

    async def list_jobs(self, message: ListJobsRequest) -> ListJobsResponse:
        return ListJobsResponse(jobs=await self.s.list_jobs(message.filter))

    async def list_proposals(self, message: ListProposalsRequest) -> ListProposalsResponse:
        f = message.filter
        props = await self.s.list_proposals(f.ids if f else [], f.job_ids if f else [])
        return ListProposalsResponse(proposals=props)

    async def propose_job(self, message: ProposeJobRequest) -> ProposeJobResponse:
        proposal = await self.s.propose_job(message.node_id, message.spec, message.labels)
        return ProposeJobResponse(proposal=proposal)

    async def batch_propose_job(self, message: BatchProposeJobRequest) -> BatchProposeJobResponse:
        ok, failed = await self.s.batch_propose_job(message.node_ids, message.spec, message.labels)
        return BatchProposeJobResponse(
            success_responses={n: ProposeJobResponse(proposal=p) for n, p in ok.items()},
            failed_responses={n: ProposeJobFailure(error_message=m) for n, m in failed.items()},
        )

    async def revoke_job(self, message: RevokeJobRequest) -> RevokeJobResponse:
        return RevokeJobResponse(proposal=await self.s.revoke_job(_job_ident(message)))

    async def delete_job(self, message: DeleteJobRequest) -> DeleteJobResponse:
        return DeleteJobResponse(job=await self.s.delete_job(_job_ident(message)))

    async def update_job(self, message: UpdateJobRequest) -> UpdateJobResponse:
        job = await self.s.update_job(
            _job_ident(message), message.labels, message.rollback_policy_id
        )
        return UpdateJobResponse(job=job)


class CsaService(CsaServiceBase):
    def __init__(self, state: JDState) -> None:
        self.s = state

    async def get_keypair(self, message: GetKeypairRequest) -> GetKeypairResponse:
        return GetKeypairResponse(keypair=await self.s.get_keypair())

    async def list_keypairs(self, message: ListKeypairsRequest) -> ListKeypairsResponse:
        return ListKeypairsResponse(keypairs=await self.s.list_keypairs())


class RollbackPolicyService(RollbackPolicyServiceBase):
    def __init__(self, state: JDState) -> None:
        self.s = state

    async def get_rollback_policy(
        self, message: GetRollbackPolicyRequest
    ) -> GetRollbackPolicyResponse:
        return GetRollbackPolicyResponse(rollback_policy=await self.s.get_policy(message.id))

    async def create_rollback_policy(
        self, message: CreateRollbackPolicyRequest
    ) -> CreateRollbackPolicyResponse:
        policy = await self.s.create_policy(message.policy)
        return CreateRollbackPolicyResponse(rollback_policy=policy)

    async def list_rollback_policies(
        self, message: ListRollbackPoliciesRequest
    ) -> ListRollbackPoliciesResponse:
        ids = message.filter.ids if message.filter else []
        return ListRollbackPoliciesResponse(rollback_policies=await self.s.list_policies(ids))

    async def update_rollback_policy(
        self, message: UpdateRollbackPolicyRequest
    ) -> UpdateRollbackPolicyResponse:
        policy = await self.s.update_policy(message.id, message.policy)
        return UpdateRollbackPolicyResponse(rollback_policy=policy)


class AppService(AppServiceBase):
    async def version(self, message: VersionRequest) -> VersionResponse:
        import jdkit

        return VersionResponse(version=jdkit.__version__)


#: Services a health check may name; "" is the server as a whole.
SERVICE_NAMES = frozenset(
    {
        "",
        "api.app.v1.AppService",
        "api.csa.v1.CSAService",
        "api.job.v1.JobService",
        "api.node.v1.NodeService",
        "api.probation.v1.RollbackPolicyService",
        "grpc.health.v1.Health",
    }
)


class HealthService(HealthBase):
    """grpc.health.v1: Check answers now; Watch streams the status as it changes."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def check(self, message: HealthCheckRequest) -> HealthCheckResponse:
        if message.service not in SERVICE_NAMES:
            raise NotFoundError(f"unknown service {message.service!r}")
        return HealthCheckResponse(status=self.rt.status)

    async def watch(self, message: HealthCheckRequest) -> AsyncIterator[HealthCheckResponse]:
        if message.service not in SERVICE_NAMES:
            # per the health protocol: say so, and keep the stream open
            yield HealthCheckResponse(status=ServingStatus.SERVICE_UNKNOWN)
            while not self.rt.draining:
                await self.rt.wait_status_change()
            return
        last: ServingStatus | None = None
        while True:
            status = self.rt.status
            if status != last:
                yield HealthCheckResponse(status=status)
                last = status
            if self.rt.draining:
                return
            await self.rt.wait_status_change()


def services(state: JDState, rt: Runtime) -> list[Servable]:
    return [
        Servable(s, rt)
        for s in (
            NodeService(state),
            JobService(state),
            CsaService(state),
            RollbackPolicyService(state),
            AppService(),
            HealthService(rt),
        )
    ]
