"""The one table of JD RPCs: path, message types, and whether a call writes.

Retries (`_retry.py`) and dry-run (`_dryrun/`) both decide from `Method.write`:
a read may be replayed freely; a write may only be replayed when the failure
proves the request never reached the server, and dry-run never sends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import betterproto2

from jdkit.pb import app, csa, health, job, node, probation


@dataclass(frozen=True, slots=True)
class Method:
    """One RPC: its path, message types, and whether it writes (what retries and dry-run go by)."""

    path: str
    request: type[betterproto2.Message]
    response: type[betterproto2.Message]
    write: bool
    streaming: bool = False

    @property
    def service(self) -> str:
        return self.path.split("/")[1]

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[1]

    def __repr__(self) -> str:
        return f"<Method {self.path} {'write' if self.write else 'read'}>"


def _m(service: str, name: str, module: Any, write: bool, streaming: bool = False) -> Method:
    return Method(
        f"/{service}/{name}",
        getattr(module, f"{name}Request"),
        getattr(module, f"{name}Response"),
        write,
        streaming,
    )


_N, _J, _C = "api.node.v1.NodeService", "api.job.v1.JobService", "api.csa.v1.CSAService"
_P, _A = "api.probation.v1.RollbackPolicyService", "api.app.v1.AppService"

METHODS: dict[str, Method] = {
    m.path: m
    for m in [
        _m(_A, "Version", app, write=False),
        _m(_C, "GetKeypair", csa, write=False),
        _m(_C, "ListKeypairs", csa, write=False),
        _m(_N, "GetNode", node, write=False),
        _m(_N, "ListNodes", node, write=False),
        _m(_N, "ListNodeChainConfigs", node, write=False),
        _m(_N, "RegisterNode", node, write=True),
        _m(_N, "UpdateNode", node, write=True),
        _m(_N, "EnableNode", node, write=True),
        _m(_N, "DisableNode", node, write=True),
        _m(_J, "GetJob", job, write=False),
        _m(_J, "GetProposal", job, write=False),
        _m(_J, "ListJobs", job, write=False),
        _m(_J, "ListProposals", job, write=False),
        _m(_J, "ProposeJob", job, write=True),
        _m(_J, "BatchProposeJob", job, write=True),
        _m(_J, "RevokeJob", job, write=True),
        _m(_J, "DeleteJob", job, write=True),
        _m(_J, "UpdateJob", job, write=True),
        _m(_P, "GetRollbackPolicy", probation, write=False),
        _m(_P, "ListRollbackPolicies", probation, write=False),
        _m(_P, "CreateRollbackPolicy", probation, write=True),
        _m(_P, "UpdateRollbackPolicy", probation, write=True),
        Method(
            "/grpc.health.v1.Health/Check",
            health.HealthCheckRequest,
            health.HealthCheckResponse,
            write=False,
        ),
        Method(
            "/grpc.health.v1.Health/Watch",
            health.HealthCheckRequest,
            health.HealthCheckResponse,
            write=False,
            streaming=True,
        ),
    ]
}

WRITES = frozenset(p for p, m in METHODS.items() if m.write)


def method(service: str, name: str) -> Method:
    return METHODS[f"/{service}/{name}"]
