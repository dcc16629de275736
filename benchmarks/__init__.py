"""jdkit benchmarks: `python -m benchmarks` (or `nox -s bench`).

Measures the embedded JD's start time, round trips through the jdkit client
and through Google's grpcio client against the same server, BatchProposeJob
to many nodes, ListJobs with a label selector over a large job table, and the
per-call cost of jdkit's interceptor chain against the bare generated stub.
Prints a markdown table and writes it to docs/benchmarks.md.

Everything runs on loopback. `--quick` is a smoke run with tiny sizes.
"""
