"""JD's rules, shared by the embedded JD (`jdkit._server`) and the dry run.

Layering: client → core ← server. This package imports only the standard
library, `jdkit._exceptions` and the generated messages, so the client can
validate a dry-run write without loading the server, and the server can
enforce JD's rules without loading the client.

- `validate`: what a request value must look like (ids, keys, labels, NUL,
  specs and their externalJobID, policies).
- `match`: label selectors and list filters evaluated in Python.
- `rules`: write preconditions over a read-only `StateView`, answering with
  a plan the caller carries out (the server in SQL, the dry run in its overlay).
- `wire`: the strict protobuf wire check received bytes pass before they are
  parsed (the JD's gRPC requests, both ends of the node protocol).
"""
