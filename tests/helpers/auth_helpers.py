"""Real local endpoints for the auth tests: an OAuth2 token endpoint, a JWKS
endpoint and moto's Cognito server, each on 127.0.0.1 with a free port."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeClock:
    """A clock tests move by hand (epoch seconds, starts at a realistic time)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Handler = Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]


@contextlib.contextmanager
def http_server(handle: Handler) -> Iterator[str]:
    """Serve `handle(method, path, headers, body) -> (status, headers, body)` on loopback."""

    class _H(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, headers, out = handle(self.command, self.path, dict(self.headers), body)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _json(status: int, obj: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(obj).encode()


@dataclass
class OAuth2Endpoint:
    """A client-credentials token endpoint (RFC 6749 4.4) with one registered client."""

    client_id: str
    client_secret: str
    expires_in: int | None = 3600
    token_type: str = "Bearer"
    #: Put the presented secret into error_description (some servers do).
    echo_secret: bool = False
    #: Answer every request with this instead (status, content type, body).
    override: tuple[int, str, bytes] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        form = dict(urllib.parse.parse_qsl(body.decode()))
        cid, secret = form.get("client_id"), form.get("client_secret")
        auth = headers.get("Authorization", "")
        if auth.startswith("Basic "):
            pair = base64.b64decode(auth[6:]).decode()
            u, _, p = pair.partition(":")
            cid, secret = urllib.parse.unquote_plus(u), urllib.parse.unquote_plus(p)
        with self.lock:
            self.requests.append({"method": method, "path": path, "form": form, "auth": auth})
        if self.override is not None:
            status, ctype, out = self.override
            return status, {"Content-Type": ctype}, out
        if method != "POST" or form.get("grant_type") != "client_credentials":
            return _json(400, {"error": "unsupported_grant_type"})
        if cid != self.client_id or secret != self.client_secret:
            desc = "Client authentication failed"
            if self.echo_secret:
                desc += f" for secret {secret}"
            return _json(401, {"error": "invalid_client", "error_description": desc})
        with self.lock:
            token = f"access-{len(self.issued) + 1}-{cid}"
            self.issued.append(token)
        answer: dict[str, Any] = {"access_token": token, "token_type": self.token_type}
        if self.expires_in is not None:
            answer["expires_in"] = self.expires_in
        if form.get("scope"):
            answer["scope"] = form["scope"]
        return _json(200, answer)


@dataclass
class JWKSEndpoint:
    """Serves whatever key set `jwks` holds (tests may swap it) and counts fetches."""

    jwks: dict[str, Any]
    fetches: int = 0
    status: int = 200

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        self.fetches += 1
        if self.status != 200:
            return self.status, {"Content-Type": "text/plain"}, b"down"
        return _json(200, self.jwks)


@contextlib.contextmanager
def moto_cognito() -> Iterator[str]:
    """moto's standalone server on loopback; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def cognito_admin(endpoint: str, region: str = "us-east-1") -> Any:
    """A boto3 admin client for moto: admin calls are signed, so dummy keys."""
    import boto3  # type: ignore[import-untyped]

    return boto3.client(
        "cognito-idp",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
