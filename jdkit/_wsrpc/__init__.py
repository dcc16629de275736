"""wsrpc, the node-facing protocol of the Job Distributor (see NODE-PROTOCOL facts).

- `_rpc`: the envelope and bidirectional calls, transport-agnostic
- `_ws`: WebSocket over a byte stream (websockets' sans-I/O protocol)
- `_tls`: TLS 1.3 with pinned ed25519 keys (stdlib client, pyOpenSSL server)
- `_keys`: ed25519 keys and certificates
- `_node`: `SimulatedNode` (the node side): `_connection` dials and reconnects,
  `_answers` serves the JD's calls and answers proposals; `_fleet`: many of them;
  `_lifecycle`: their `async with`

Importing this package imports nothing heavy; the JD side (`jdkit._server.
_nodeport`) uses `_rpc`, `_ws`, `_tls` and `_keys` only.
"""
