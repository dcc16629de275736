"""Proto JSON the way protoc names it.

betterproto2's camel-casing capitalizes after digits (`p2PKeyBundles`), while
protoc's json_name for `p2p_key_bundles` is `p2pKeyBundles`; protobuf's own
JSON parser rejects the former. Every JSON jdkit prints goes through here.
"""

from __future__ import annotations

from typing import Any, cast

import betterproto2


def json_name(field: str) -> str:
    """protoc's rule: drop each underscore and upper-case the letter after it."""
    out: list[str] = []
    upper = False
    for ch in field:
        if ch == "_":
            upper = True
        else:
            out.append(ch.upper() if upper else ch)
            upper = False
    return "".join(out)


def to_json_dict(message: betterproto2.Message, *, include_default_values: bool = False) -> Any:
    casing = cast(betterproto2.Casing, json_name)  # to_dict only calls it
    return message.to_dict(casing=casing, include_default_values=include_default_values)
