"""Listening sockets of the embedded JD (gRPC, node port) and how their addresses print.

The server binds its own sockets rather than letting grpclib or asyncio do
it, so the real port is known when port 0 was asked for, and so the socket
options that matter for latency (TCP_NODELAY via IPPROTO_TCP) are set.
"""

from __future__ import annotations

import socket

from jdkit._exceptions import ConfigError


def host_port(host: str, port: int) -> str:
    """`host:port` for a client (IPv6 hosts in brackets)."""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}"


def bind(host: str, port: int, field: str = "port", backlog: int = 128) -> socket.socket:
    """Our own listening socket, so the real port is known when port=0."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, addr = infos[0]
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted
        # sockets whose proto says TCP, and without it every unary answer
        # waits ~40 ms for Nagle and the client's delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPV6_V6ONLY"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(addr)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock
    except OSError as exc:
        raise ConfigError(field, f"cannot listen on {host}:{port}: {exc}") from exc
