"""Task-level helpers on top of the one-method-per-RPC client.

The RPC methods of `JobDistributor` mirror JD's wire contract; a deployment
engineer's tasks (list everything matching a selector, propose a spec to the
nodes a selector picks, wait until they approve, see where a rollout stands,
register a node idempotently) are joins and loops over several of them. They
live here, one module per concern, and `JobDistributor` exposes each as a thin
method so users find them with `help(jd)`:

- `_requests`: keyword forms of the list/get calls (request builders);
- `_pagers`: `iter_nodes` / `iter_jobs` / `iter_proposals`;
- `_rollout`: `propose` -> `Rollout`, `ensure_node`;
- `_waiters`: `wait_for_proposals`, `ProposalWaitError`;
- `_status`: `rollout_status` -> `RolloutStatus`.

Everything here goes through the client's public methods, so the interceptor
chain (deadlines, retries, auth, dry-run) applies to each call they make.
"""

from jdkit import _exports
from jdkit._tasks._rollout import Rollout
from jdkit._tasks._status import NodeRollout, RolloutStatus
from jdkit._tasks._waiters import ProposalWaitError

__all__ = ["NodeRollout", "ProposalWaitError", "Rollout", "RolloutStatus"]

_exports.publish_lazy(globals())  # what jdkit imports from here on first use
