"""wsrpc, the node-facing protocol of the Job Distributor (see NODE-PROTOCOL facts).

Two halves share this package. The transport is core, used by both ends
(the JD's node port, `jdkit._server._nodeport`, and the node side below):

- `_rpc`: the envelope and bidirectional calls, transport-agnostic
- `_ws`: WebSocket over a byte stream (websockets' sans-I/O protocol)
- `_tls`: TLS 1.3 with pinned ed25519 keys (stdlib client, pyOpenSSL server)
- `_strict`: the strict wire check of received messages
- `_keys`: ed25519 keys and certificates; `_errors`: the protocol's errors

The node client is the client side (the server never imports it):

- `_node`: `SimulatedNode`: `_connection` dials and reconnects, `_answers`
  serves the JD's calls and answers proposals; `_fleet`: many of them;
  `_lifecycle`: their `async with`; `_simulate`: `jdkit node simulate`; `_api`:
  what `jdkit` exports from here

Importing this package imports nothing heavy.
"""
