"""D8: a token endpoint that echoes the request cannot put the client secret,
in any form jdkit builds, into an AuthError."""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from jdkit import AuthError
from jdkit.auth import OAuth2ClientCredentials
from tests.helpers.auth_helpers import http_server

CLIENT_ID = "deploy-bot"
# characters that form-encoding, base64 and JSON each treat specially
SECRET = 's3cr+t/=&:"é-V3ry-L0ng-Client-Secret'


def _forms() -> dict[str, str]:
    quote = urllib.parse.quote_plus
    pair = f"{quote(CLIENT_ID)}:{quote(SECRET)}"
    raw_pair = f"{CLIENT_ID}:{SECRET}"
    b64 = base64.b64encode(pair.encode()).decode()
    return {
        "raw secret": SECRET,
        "url-encoded secret": quote(SECRET),
        "percent-encoded secret": urllib.parse.quote(SECRET, safe=""),
        "json-escaped secret": json.dumps(SECRET)[1:-1],
        "encoded pair": pair,
        "raw pair": raw_pair,
        "basic header": f"Basic {b64}",
        "base64 pair": b64,
        "base64 pair, unpadded": b64.rstrip("="),
        "base64 raw pair": base64.b64encode(raw_pair.encode()).decode().rstrip("="),
    }


def _echoing(method: str, path: str, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
    """A 400 whose description repeats the whole request, as some servers do."""
    auth = headers.get("Authorization", "")
    decoded = base64.b64decode(auth[6:]).decode() if auth.startswith("Basic ") else ""
    echo = (
        f"bad request: Authorization: {auth}; decoded {decoded}; "
        f"body {body.decode()}; unquoted {urllib.parse.unquote_plus(body.decode())}"
    )
    out = json.dumps({"error": "invalid_request", "error_description": echo}).encode()
    return 400, {"Content-Type": "application/json"}, out


@pytest.mark.asyncio
@pytest.mark.parametrize("client_auth", ["basic", "body"])
async def test_an_echoed_request_leaves_no_form_of_the_secret(client_auth: str) -> None:
    with http_server(_echoing) as base:
        source = OAuth2ClientCredentials(
            f"{base}/token", CLIENT_ID, SECRET, client_auth=client_auth
        )
        with pytest.raises(AuthError) as info:
            await source.fetch()
        await source.aclose()
    text = str(info.value)
    assert "invalid_request" in text and "[redacted]" in text  # the echo did arrive
    leaked = [name for name, form in _forms().items() if form in text]
    assert leaked == [], text
    assert SECRET not in repr(source)
