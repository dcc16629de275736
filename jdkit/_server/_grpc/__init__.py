"""The gRPC face of the embedded JD: services, codec, guards, health.

Each service subclasses its generated base and overrides the snake_case
methods. The generated `__rpc_*` glue is replaced by `_guarded`, which keeps
the generated paths and message types but adds what a caller-facing server
needs: an absent or truncated request body is the caller's mistake
(INVALID_ARGUMENT, not an assert turned UNKNOWN), a jdkit error becomes its
status, and only a genuine server bug is INTERNAL.

`_guarded` also reads and writes the gRPC messages itself instead of through
grpclib, which has neither a message size limit nor compression: the length
prefix is checked against `max_receive_message_size` before one byte of the
body is buffered, gzip/deflate requests are decompressed within that limit,
replies are compressed when the caller accepts it, and large decodes, encodes
and compressions run in a worker thread so one big call does not stall the
event loop (and everyone else's calls, health checks included).

The HTTP/2 side (`_Protocol`) adds what grpclib lacks for a server facing
untrusted peers: handshake, idle and keepalive timeouts, a configurable
stream cap, and a per-connection cap on calls in progress (see `_limits`).

Where each part is:

- `_transport`: the grpclib server, the HTTP/2 protocol with its stream cap
  and timeouts, the per-connection handler that checks headers;
- `_calls`: `_guarded`, one call from admission (slots, backpressure, handler
  turns; the counters are in `jdkit._server._limits`) to its log line;
- `_messages`: reading the request and writing the reply (size limits,
  compression, the codec, work off the event loop);
- `_errors`: exceptions to gRPC statuses;
- `_runtime`: what the handlers share (call counts, health status, auth hook);
- `_services`: the App, CSA, Job, Node, RollbackPolicy and health handlers.
"""

from jdkit._server._grpc._messages import Codec
from jdkit._server._grpc._runtime import Runtime, ServingStatus
from jdkit._server._grpc._services import services
from jdkit._server._grpc._transport import Server

__all__ = ["Codec", "Runtime", "Server", "ServingStatus", "services"]
