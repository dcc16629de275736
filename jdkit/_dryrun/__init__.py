"""Dry-run: reads go through, writes are recorded and never sent.

Which RPC is a write comes from the one table in `_methods.py`. Each write is
decided by the same rulebook the embedded JD uses (`jdkit._core.rules`), over
a view of the server's state (read through the rest of the chain) merged with
this dry run's own planned writes; the answer is recorded in a `Journal` that
renders as a plan a deployment script can print before doing it for real.
Reads see the planned writes too (read-your-writes), so a script that
registers a node and then proposes to it by selector can be planned end to end.

- `_journal`: `Journal`, `JournalEntry`, the plan's text;
- `_overlay`: the planned state and its merge with the server's (`_View`);
- `_interceptor`: `DryRunInterceptor`, one answer per write RPC;
- `_reads`: the reads planned writes change, merged and paged as the server does.
"""

from jdkit import _exports
from jdkit._dryrun._interceptor import DryRunInterceptor
from jdkit._dryrun._journal import Journal, JournalEntry

__all__ = ["DryRunInterceptor", "Journal", "JournalEntry"]

_exports.publish_lazy(globals())  # what jdkit imports from here on first use
