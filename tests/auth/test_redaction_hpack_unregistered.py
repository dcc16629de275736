"""hpack's DEBUG records never show a credential header, even one nobody registered.

A server decodes a caller's header block (and logs it) before any verifier has
seen the token, so these records are scrubbed by header name, not by registry.
"""

from __future__ import annotations

import logging

import hpack
import pytest

from jdkit import _redact

TOKEN = "eyJ-unregistered-caller-token-0123456789abcdef"


@pytest.mark.parametrize("huffman", [False, True])
def test_hpack_debug_shows_no_unregistered_token(
    caplog: pytest.LogCaptureFixture, huffman: bool
) -> None:
    _redact.install()
    for name in ("hpack", "hpack.hpack", "hpack.table"):
        logging.getLogger(name).disabled = False
    headers = [
        (":path", "/api.node.v1.NodeService/ListNodes"),
        ("authorization", f"Bearer {TOKEN}"),
    ]
    with caplog.at_level(logging.DEBUG, logger="hpack"):
        block = hpack.Encoder().encode(headers, huffman=huffman)
        decoded = hpack.Decoder().decode(block)
    # hpack itself still works
    assert [tuple(str(x) for x in h) for h in decoded][1] == ("authorization", f"Bearer {TOKEN}")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records, "hpack logged nothing: the test would prove nothing"
    assert "authorization" in text  # the header is still visible by name
    assert TOKEN not in text and "Bearer " + TOKEN[:8] not in text
    assert TOKEN.encode() not in text.encode()


def test_call_repr_hides_credential_metadata() -> None:
    from jdkit import METHODS
    from jdkit._interceptors import Call

    method = next(iter(METHODS.values()))
    call = Call(method, method.request(), {"authorization": f"Bearer {TOKEN}", "x-a": "b"})
    assert TOKEN not in repr(call) and "x-a" in repr(call)
