"""Differential test: a dry run answers exactly as the embedded JD does.

Hypothesis drives random sequences of write and read RPCs (nasty values
included: NUL bytes, another node's key, missing `policy`, deeply nested TOML,
odd selectors) against two embedded JDs seeded with the same starting state.
Side A sends every call for real; side B sends the same calls through a dry
run, so its writes only exist in the dry run's overlay and its reads must merge
that overlay in. Every call must give the same status code, and OK answers
the same message once ids and timestamps are normalised: lists in the same
order (the dry run's merge must give the server's order), rollback policy
ids exactly (they are JD's numbers, which UpdateJob then names; the rule
uses the ids CreateRollbackPolicy answered). Calls go one at a time;
concurrent writes are compared in `test_concurrent.py`.

`JDKIT_DIFF_COLLECT=1` switches from "fail on the first divergence" to
"collect every kind of divergence over all examples and print them", which is
how we checked that the test finds the known divergences of an older dry run.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from jdkit import JDError, JobDistributor, RPCError
from jdkit.pb import job, label, node, probation, protobuf
from jdkit.server import EmbeddedJD

COLLECT = os.environ.get("JDKIT_DIFF_COLLECT") == "1"
#: Bounded for CI: ~1 s per 10 examples on a loaded 2-core machine.
MAX_EXAMPLES = int(os.environ.get("JDKIT_DIFF_EXAMPLES", "300"))

EXT = [str(uuid.UUID(int=i + 1)) for i in range(3)]

# ----------------------------------------------------------- value pools

NUL_IDS = [
    "",
    "\x00",
    "node\x00x",
    "node_unknown",
    "dryrun_node_999",
    "job_unknown",
    "prop_x",
    "x" * 257,  # over the id cap
    "\ud800",  # a lone surrogate: the request cannot be encoded
]
NAMES = st.sampled_from(["n", "node-a", "", "a\x00b", "ümlaut", "n" * 257, "a\ud800"])
LABEL_KEYS = st.sampled_from(["env", "tier", "region", "", "k\x00", "\x00"])
LABEL_VALUES = st.sampled_from([None, "", "prod", "eu", "dev", "v\x00", "v" * 4097, "\udfff"])
LABELS = st.lists(st.builds(label.Label, key=LABEL_KEYS, value=LABEL_VALUES), max_size=3)
SELECTORS = st.lists(
    st.builds(
        label.Selector,
        key=st.sampled_from(["env", "tier", "region", "", "k\x00"]),
        op=st.sampled_from(list(label.SelectorOp)),
        value=st.sampled_from([None, "", "prod", "eu", "prod, eu", "v\x00", "\ud800"]),
    ),
    max_size=2,
)


def _spec(ext: str) -> str:
    return f'type = "offchainreporting2"\nexternalJobID = "{ext}"\n'


NASTY_SPECS = [
    "",
    "   ",
    "not toml [",
    'type = "x"\n',  # no externalJobID
    "externalJobID = 7\n",
    'externalJobID = "not-a-uuid"\n',
    f'externalJobID = "{EXT[0]}"\nname = "a\x00b"\n',
    f'externalJobID = "{EXT[0]}"\nname = "a\ud800"\n',  # cannot be encoded
    # hypothesis raises the recursion limit while it runs, so go deeper than 400
    f'externalJobID = "{EXT[0]}"\nx = ' + "{a = " * 400 + "1" + "}" * 400 + "\n",
    f'externalJobID = "{EXT[0]}"\nx = ' + "{a = " * 5000 + "1" + "}" * 5000 + "\n",
    f'externalJobID = "{EXT[0]}"\nx = ' + "[" * 5000 + "]" * 5000 + "\n",
    f'externalJobID = "{EXT[0]}"\nx = ' + "[" * 400 + "]" * 400 + "\n",
    "[" * 400 + "a" + "]" * 400 + "\n",
]
SPECS = st.one_of(
    st.sampled_from(EXT).map(_spec),
    st.sampled_from(EXT).map(lambda e: _spec(e.upper())),
    st.sampled_from(NASTY_SPECS),
)
POLICIES = st.sampled_from(
    [
        None,
        protobuf.Struct(),
        protobuf.Struct.from_dict({"max": 1}),
        protobuf.Struct.from_dict({"a": "b"}),
        protobuf.Struct.from_dict({"a": "\udfff"}),
    ]
)

_ID_KEYS = {"id", "nodeId", "jobId", "proposalIds"}
_ID_MAPS = {"successResponses", "failedResponses"}
_TS_KEYS = {"createdAt", "updatedAt", "deletedAt", "ackedAt", "responseReceivedAt"}


class Outcome:
    """A call's result: the status (or the exception type) and the message."""

    def __init__(self, status: str, message: Any = None, detail: str = "") -> None:
        self.status, self.message, self.detail = status, message, detail


async def _outcome(call: Awaitable[Any]) -> Outcome:
    try:
        msg = await call
    except RPCError as exc:
        return Outcome(exc.code.name, detail=exc.message[:200])
    except JDError as exc:
        return Outcome(type(exc).__name__, detail=str(exc)[:200])
    except Exception as exc:  # what a caller must never see: not a JDError
        return Outcome(f"raw {type(exc).__name__}", detail=str(exc)[:200])
    return Outcome("OK", msg.to_dict())


class Sides:
    """Two embedded JDs on one event loop; side A real, side B a dry run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.srv: list[EmbeddedJD] = []
        self.clients: list[JobDistributor] = []
        self.run(self._start())

    def run(self, coro: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(coro)

    async def _start(self) -> None:
        for _ in range(2):
            srv = await EmbeddedJD.start()
            self.srv.append(srv)
            self.clients.append(JobDistributor.connect(srv.address, timeout=20))

    async def _stop(self) -> None:
        for c in self.clients:
            await c.aclose()
        for s in self.srv:
            await s.stop(grace=0)

    def close(self) -> None:
        self.run(self._stop())
        self.loop.close()


@pytest.fixture(scope="module")
def sides() -> Iterator[Sides]:
    s = Sides()
    yield s
    s.close()


FOUND: dict[tuple[str, str, str], tuple[int, str]] = {}


class DryRunMatchesJD(RuleBasedStateMachine):
    sides: Sides
    example = 0

    def __init__(self) -> None:
        super().__init__()
        type(self).example += 1
        self.diverged = False
        #: canonical name -> (id on side A, id on side B), per kind
        self.maps: list[dict[str, str]] = [{}, {}]
        self.nodes: list[str] = []
        self.jobs: list[str] = []
        self.props: list[str] = []
        self.policies: list[str] = []
        self.keys: list[str] = []
        self.next_key = 100

    # ------------------------------------------------------- plumbing

    def canon(self, side: int, value: str) -> str | None:
        for name, ident in self.maps[side].items():
            if ident == value:
                return name
        return None

    def real(self, side: int, value: str) -> str:
        """The side's id for a canonical name; literals pass through."""
        return self.maps[side].get(value, value)

    def _pair(self, a: Any, b: Any, key: str = "") -> None:
        """Give ids first seen in two matching answers one canonical name."""
        if isinstance(a, dict) and isinstance(b, dict):
            for k in a.keys() & b.keys():
                if k in _ID_MAPS and isinstance(a[k], dict) and isinstance(b[k], dict):
                    for ka, kb in zip(
                        sorted(a[k], key=lambda x: self._order(0, x)),
                        sorted(b[k], key=lambda x: self._order(1, x)),
                        strict=False,
                    ):
                        self._pair_id(ka, kb, "node")
                        self._pair(a[k][ka], b[k][kb])
                else:
                    self._pair(a[k], b[k], k)
        elif isinstance(a, list) and isinstance(b, list):
            for x, y in zip(a, b, strict=False):
                self._pair(x, y, key)
        elif isinstance(a, str) and isinstance(b, str) and key in _ID_KEYS:
            self._pair_id(a, b, key)

    def _order(self, side: int, ident: str) -> str:
        return self.canon(side, ident) or ident

    def _pair_id(self, a: str, b: str, kind: str) -> None:
        if a == b or self.canon(0, a) is not None or self.canon(1, b) is not None:
            return
        if a.isdigit() and b.isdigit():
            return  # rollback policy ids: the dry run must predict JD's exactly
        name = f"@{len(self.maps[0])}"
        self.maps[0][name], self.maps[1][name] = a, b

    def norm(self, side: int, value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                if k in _TS_KEYS:
                    out[k] = "<ts>"
                elif k in _ID_MAPS and isinstance(v, dict):
                    out[k] = {self._order(side, kk): self.norm(side, vv) for kk, vv in v.items()}
                else:
                    out[k] = self.norm(side, v, k)
            return out
        if isinstance(value, list):
            return [self.norm(side, v, key) for v in value]
        if isinstance(value, str) and key in _ID_KEYS:
            return self.canon(side, value) or value
        if isinstance(value, str) and key == "errorMessage":
            for name, ident in self.maps[side].items():
                if len(ident) > 2:
                    value = value.replace(ident, name)
        return value

    def both(
        self, what: str, make: Callable[[int, JobDistributor], Awaitable[Any]]
    ) -> Outcome | None:
        """Run one call on both sides; compare; return side A's outcome."""
        if self.diverged:
            return None
        clients = [self.sides.clients[0], self.dry]
        a: Outcome = self.sides.run(_outcome(make(0, clients[0])))
        b: Outcome = self.sides.run(_outcome(make(1, clients[1])))
        if a.status == "OK" and b.status == "OK":
            self._pair(a.message, b.message)
            na, nb = self.norm(0, a.message), self.norm(1, b.message)
            same = na == nb
        else:
            same = a.status == b.status
            na = nb = None
        if not same:
            self.diverged = True
            kind = (what, a.status, b.status if a.status != b.status else "shape")
            FOUND.setdefault(
                kind, (type(self).example, f"A: {a.detail or na}\nB: {b.detail or nb}")
            )
            if not COLLECT:
                raise AssertionError(
                    f"{what}: real JD answered {a.status}, dry run {b.status}\n"
                    f"real: {a.detail or na}\ndry:  {b.detail or nb}"
                )
        return a

    def learn(self, out: Outcome | None, pool: list[str], path: list[str]) -> None:
        """Remember the canonical id at `path` of an OK answer."""
        if out is None or out.status != "OK" or self.diverged:
            return
        value: Any = out.message
        for p in path:
            value = value.get(p) if isinstance(value, dict) else None
        if isinstance(value, str):
            name = self.canon(0, value)
            if name is None and self.canon(1, value) is None:
                name = value  # the same id on both sides (a rollback policy's)
            if name is not None and name not in pool:
                pool.append(name)

    # ----------------------------------------------------------- setup

    @initialize()
    def seed(self) -> None:
        """The same starting state on both servers, then a dry run on side B."""
        for srv in self.sides.srv:
            self.sides.run(srv.reset())
        self.dry = self.sides.clients[1].with_dry_run()
        ids: list[list[str]] = [[], []]
        for i, c in enumerate(self.sides.clients):
            ids[i] = self.sides.run(self._seed(self.sides.srv[i], c))
        for n, (a, b) in enumerate(zip(*ids, strict=True)):
            name = f"s{n}"
            self.maps[0][name], self.maps[1][name] = a, b
            pools = {"node": self.nodes, "job": self.jobs, "prop": self.props}
            pools.get(a.split("_")[0], self.policies).append(name)
        self.base_writes = self.sides.srv[1].write_calls
        self.keys = [f"{i:064x}" for i in (1, 2, 3)]

    @staticmethod
    async def _seed(srv: EmbeddedJD, jd: JobDistributor) -> list[str]:
        out: list[str] = []
        nodes = []
        for i, labels in enumerate([{"env": "prod"}, {"env": "dev", "tier": "1"}, {}], 1):
            r = await jd.register_node(
                node.RegisterNodeRequest(
                    name=f"seed{i}",
                    public_key=f"{i:064x}",
                    labels=[label.Label(key=k, value=v) for k, v in labels.items()],
                )
            )
            assert r.node is not None
            nodes.append(r.node.id)
            out.append(r.node.id)
        await jd.disable_node(node.DisableNodeRequest(id=nodes[2]))
        await srv.set_node_connected(nodes[1], True)
        props = []
        for n, ext in [(0, EXT[0]), (0, EXT[0]), (1, EXT[1]), (1, EXT[0])]:
            r2 = await jd.propose_job(
                job.ProposeJobRequest(
                    node_id=nodes[n], spec=_spec(ext), labels=[label.Label(key="env", value="prod")]
                )
            )
            assert r2.proposal is not None
            props.append(r2.proposal)
        await srv.approve_proposal(props[2].id)
        await jd.delete_job(job.DeleteJobRequest(id=props[3].job_id))
        for jid in dict.fromkeys(p.job_id for p in props):
            out.append(jid)
        out.extend(p.id for p in props)
        for pol in ({"max": 3}, {}):
            r3 = await jd.create_rollback_policy(
                probation.CreateRollbackPolicyRequest(policy=protobuf.Struct.from_dict(pol))
            )
            assert r3.rollback_policy is not None
            out.append(r3.rollback_policy.id)
        return out

    # ---------------------------------------------------------- values

    def _ref(self, pool: list[str], data: st.DataObject) -> str:
        if pool and data.draw(st.integers(0, 4)) > 0:
            return data.draw(st.sampled_from(pool))
        return data.draw(st.sampled_from(NUL_IDS))

    def _key(self, data: st.DataObject) -> str:
        choice = data.draw(st.integers(0, 5))
        if choice <= 1 or not self.keys:
            self.next_key += 1
            return f"{self.next_key:064x}"
        if choice == 2:
            return data.draw(st.sampled_from(self.keys))
        if choice == 3:
            return data.draw(st.sampled_from(self.keys)).upper()
        return data.draw(st.sampled_from(["", "zz", "0" * 63, "0" * 63 + "\x00"]))

    # ---------------------------------------------------------- writes

    @rule(name=NAMES, labels=LABELS, data=st.data())
    def register_node(self, name: str, labels: list[label.Label], data: st.DataObject) -> None:
        key = self._key(data)
        out = self.both(
            "RegisterNode",
            lambda i, c: c.register_node(
                node.RegisterNodeRequest(name=name, public_key=key, labels=labels)
            ),
        )
        self.learn(out, self.nodes, ["node", "id"])
        if out is not None and out.status == "OK":
            self.keys.append(key.lower())

    @rule(name=NAMES, labels=LABELS, data=st.data())
    def update_node(self, name: str, labels: list[label.Label], data: st.DataObject) -> None:
        ref = self._ref(self.nodes, data)
        key = self._key(data) if data.draw(st.booleans()) else ""
        out = self.both(
            "UpdateNode",
            lambda i, c: c.update_node(
                node.UpdateNodeRequest(
                    id=self.real(i, ref), name=name, public_key=key, labels=labels
                )
            ),
        )
        if out is not None and out.status == "OK" and key:
            self.keys.append(key.lower())

    @rule(enable=st.booleans(), data=st.data())
    def enable_disable(self, enable: bool, data: st.DataObject) -> None:
        ref = self._ref(self.nodes, data)
        if enable:
            self.both(
                "EnableNode",
                lambda i, c: c.enable_node(node.EnableNodeRequest(id=self.real(i, ref))),
            )
        else:
            self.both(
                "DisableNode",
                lambda i, c: c.disable_node(node.DisableNodeRequest(id=self.real(i, ref))),
            )

    @rule(spec=SPECS, labels=LABELS, data=st.data())
    def propose(self, spec: str, labels: list[label.Label], data: st.DataObject) -> None:
        ref = self._ref(self.nodes, data)
        out = self.both(
            "ProposeJob",
            lambda i, c: c.propose_job(
                job.ProposeJobRequest(node_id=self.real(i, ref), spec=spec, labels=labels)
            ),
        )
        self.learn(out, self.props, ["proposal", "id"])
        self.learn(out, self.jobs, ["proposal", "jobId"])

    @rule(spec=SPECS, labels=LABELS, data=st.data())
    def batch_propose(self, spec: str, labels: list[label.Label], data: st.DataObject) -> None:
        refs = [self._ref(self.nodes, data) for _ in range(data.draw(st.integers(0, 4)))]
        out = self.both(
            "BatchProposeJob",
            lambda i, c: c.batch_propose_job(
                job.BatchProposeJobRequest(
                    node_ids=[self.real(i, r) for r in refs], spec=spec, labels=labels
                )
            ),
        )
        if out is not None and out.status == "OK":
            for resp in out.message.get("successResponses", {}).values():
                self.learn(Outcome("OK", resp), self.props, ["proposal", "id"])
                self.learn(Outcome("OK", resp), self.jobs, ["proposal", "jobId"])

    @rule(labels=LABELS, data=st.data())
    def update_job(self, labels: list[label.Label], data: st.DataObject) -> None:
        ref = self._ref(self.jobs, data)
        # the ids CreateRollbackPolicy answered (the dry run's own planned ones too)
        pol = data.draw(st.sampled_from([None, "99", *self.policies]))

        def policy_id(i: int) -> int | None:
            return None if pol is None else int(self.real(i, pol))

        self.both(
            "UpdateJob",
            lambda i, c: c.update_job(
                job.UpdateJobRequest(
                    id=self.real(i, ref), labels=labels, rollback_policy_id=policy_id(i)
                )
            ),
        )

    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        ref = self._ref(self.jobs + self.props, data)
        self.both(
            "RevokeJob", lambda i, c: c.revoke_job(job.RevokeJobRequest(id=self.real(i, ref)))
        )

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        ref = self._ref(self.jobs, data)
        self.both(
            "DeleteJob", lambda i, c: c.delete_job(job.DeleteJobRequest(id=self.real(i, ref)))
        )

    @rule(policy=POLICIES)
    def create_policy(self, policy: protobuf.Struct | None) -> None:
        out = self.both(
            "CreateRollbackPolicy",
            lambda i, c: c.create_rollback_policy(
                probation.CreateRollbackPolicyRequest(policy=policy)
            ),
        )
        self.learn(out, self.policies, ["rollbackPolicy", "id"])

    @rule(policy=POLICIES, data=st.data())
    def update_policy(self, policy: protobuf.Struct | None, data: st.DataObject) -> None:
        ref = self._ref(self.policies, data) if data.draw(st.booleans()) else "abc"
        self.both(
            "UpdateRollbackPolicy",
            lambda i, c: c.update_rollback_policy(
                probation.UpdateRollbackPolicyRequest(id=self.real(i, ref), policy=policy)
            ),
        )

    # ----------------------------------------------------------- reads

    @rule(
        selectors=SELECTORS,
        enabled=st.sampled_from(list(node.EnableState)),
        page_size=st.integers(0, 3),
        page=st.integers(0, 2),
        data=st.data(),
    )
    def list_nodes(
        self,
        selectors: list[label.Selector],
        enabled: node.EnableState,
        page_size: int,
        page: int,
        data: st.DataObject,
    ) -> None:
        ids = [self._ref(self.nodes, data) for _ in range(data.draw(st.integers(0, 2)))]
        keys = [self._key(data) for _ in range(data.draw(st.integers(0, 1)))]
        self.both(
            "ListNodes",
            lambda i, c: c.list_nodes(
                node.ListNodesRequest(
                    filter=node.ListNodesRequestFilter(
                        ids=[self.real(i, r) for r in ids],
                        public_keys=keys,
                        selectors=selectors,
                        enabled=enabled,
                    ),
                    page_size=page_size,
                    page=page,
                )
            ),
        )

    @rule(data=st.data())
    def get_node(self, data: st.DataObject) -> None:
        ref = self._ref(self.nodes, data) if data.draw(st.booleans()) else ""
        key = self._key(data) if data.draw(st.booleans()) else ""
        self.both(
            "GetNode",
            lambda i, c: c.get_node(node.GetNodeRequest(id=self.real(i, ref), public_key=key)),
        )

    @rule(selectors=SELECTORS, include_deleted=st.booleans(), data=st.data())
    def list_jobs(
        self, selectors: list[label.Selector], include_deleted: bool, data: st.DataObject
    ) -> None:
        ids = [self._ref(self.jobs, data) for _ in range(data.draw(st.integers(0, 1)))]
        nids = [self._ref(self.nodes, data) for _ in range(data.draw(st.integers(0, 1)))]
        uuids = data.draw(st.lists(st.sampled_from([*EXT, EXT[0].upper(), "x"]), max_size=1))
        self.both(
            "ListJobs",
            lambda i, c: c.list_jobs(
                job.ListJobsRequest(
                    filter=job.ListJobsRequestFilter(
                        ids=[self.real(i, r) for r in ids],
                        node_ids=[self.real(i, r) for r in nids],
                        uuids=uuids,
                        selectors=selectors,
                        include_deleted=include_deleted,
                    )
                )
            ),
        )

    @rule(data=st.data())
    def get_job(self, data: st.DataObject) -> None:
        ref = self._ref(self.jobs, data)
        self.both("GetJob", lambda i, c: c.get_job(job.GetJobRequest(id=self.real(i, ref))))

    @rule(data=st.data())
    def get_proposal(self, data: st.DataObject) -> None:
        ref = self._ref(self.props, data)
        self.both(
            "GetProposal",
            lambda i, c: c.get_proposal(job.GetProposalRequest(id=self.real(i, ref))),
        )

    @rule(data=st.data())
    def list_proposals(self, data: st.DataObject) -> None:
        ids = [self._ref(self.props, data) for _ in range(data.draw(st.integers(0, 1)))]
        jids = [self._ref(self.jobs, data) for _ in range(data.draw(st.integers(0, 1)))]
        self.both(
            "ListProposals",
            lambda i, c: c.list_proposals(
                job.ListProposalsRequest(
                    filter=job.ListProposalsRequestFilter(
                        ids=[self.real(i, r) for r in ids], job_ids=[self.real(i, r) for r in jids]
                    )
                )
            ),
        )

    @rule(data=st.data())
    def policies_read(self, data: st.DataObject) -> None:
        ref = self._ref(self.policies, data)
        by_id = data.draw(st.booleans())
        if data.draw(st.booleans()):
            self.both(
                "GetRollbackPolicy",
                lambda i, c: c.get_rollback_policy(
                    probation.GetRollbackPolicyRequest(id=self.real(i, ref))
                ),
            )
        else:
            self.both(
                "ListRollbackPolicies",
                lambda i, c: c.list_rollback_policies(
                    probation.ListRollbackPoliciesRequest(
                        filter=probation.ListRollbackPoliciesRequestFilter(
                            ids=[self.real(i, ref)] if by_id else []
                        )
                    )
                ),
            )

    @invariant()
    def nothing_sent(self) -> None:
        """The dry run's server never receives a write."""
        if hasattr(self, "base_writes"):
            assert self.sides.srv[1].write_calls == self.base_writes


def test_dry_run_answers_like_the_embedded_jd(sides: Sides) -> None:
    class Machine(DryRunMatchesJD):
        pass

    Machine.sides = sides
    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=12,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )
    if COLLECT:
        for (what, a, b), (example, detail) in sorted(FOUND.items(), key=lambda kv: kv[1][0]):
            print(f"\n[example {example}] {what}: real {a} / dry {b}\n{detail}")
        print(f"\n{len(FOUND)} kinds of divergence in {Machine.example} examples")
