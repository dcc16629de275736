"""Encoder emission for gen_fastcodec.py: one `e_<message>` function per
message writing exactly the bytes of betterproto2's `bytes(message)`."""

from __future__ import annotations

import dataclasses
from typing import Any

import betterproto2 as bp
from _fastcodec_base import FIXED, GenBase, ident

from jdkit._core.wire import VARINT_TYPES as VARINT
from jdkit._core.wire import wire_of


class Encoders(GenBase):
    @staticmethod
    def open_len(tag: bytes, ind: str) -> list[str]:
        """Write the tag and a one-byte length placeholder; the value follows in `out`."""
        return [f"{ind}out += {tag + bytes(1)!r}", f"{ind}p = len(out) - 1"]

    @staticmethod
    def close_len(ind: str, var: str = "p") -> list[str]:
        """Patch the placeholder at `var` with the length written since."""
        return [
            f"{ind}n = len(out) - {var} - 1",
            f"{ind}if n < 128:",
            f"{ind}    out[{var}] = n",
            f"{ind}else:",
            f"{ind}    out[{var} : {var} + 1] = vi(n)",
        ]

    def encode_value(
        self, proto_type: str, unwrap: Any, field_cls: type | None, var: str, tag: bytes, ind: str
    ) -> list[str]:
        """Append tag + value of `var` to `out`, as `_serialize_single` does."""
        t = repr(tag)
        if proto_type in (bp.TYPE_SINT32, bp.TYPE_SINT64):
            return [f"{ind}out += {t}", f"{ind}out += vi(zigzag({var}))"]
        if proto_type in VARINT:
            return [f"{ind}out += {t}", f"{ind}out += vi({var})"]
        if proto_type in FIXED:
            return [f"{ind}out += {t}", f"{ind}out += pack({FIXED[proto_type][0]!r}, {var})"]
        if proto_type == bp.TYPE_MESSAGE:
            if unwrap is not None:
                target = unwrap()
                if target.__name__ == "Timestamp" and target.__module__.endswith("google.protobuf"):
                    return [f"{ind}out += {t}", f"{ind}out += ts_encode({var})"]
                pre = [f"{ind}b = bytes({self.cls_ref(target)}.from_wrapped({var}))"]
            else:
                assert field_cls is not None
                if field_cls in self.known:
                    c = self.cls_ref(field_cls)
                    return [
                        f"{ind}if type({var}) is {c}:",
                        *self.open_len(tag, ind + "    "),
                        f"{ind}    e_{ident(field_cls)}({var}, out)",
                        *self.close_len(ind + "    "),
                        f"{ind}else:",
                        f"{ind}    b = bytes({var})",
                        f"{ind}    n = len(b)",
                        f"{ind}    out += {self.taglen(tag)}[n] if n < 128 else {t} + vi(n)",
                        f"{ind}    out += b",
                    ]
                pre = [f"{ind}b = bytes({var})"]
        elif proto_type == bp.TYPE_STRING:
            pre = [f"{ind}b = {var}.encode()"]
        elif proto_type == bp.TYPE_BYTES:
            pre = [f"{ind}b = {var}"]
        else:
            raise AssertionError(proto_type)
        return [
            *pre,
            f"{ind}n = len(b)",
            f"{ind}out += {self.taglen(tag)}[n] if n < 128 else {t} + vi(n)",
            f"{ind}out += b",
        ]

    def taglen(self, tag: bytes) -> str:
        """A table of tag + one-byte length, one `+=` instead of two per field."""
        name = "TL_" + tag.hex()
        self.consts[name] = f"[{tag!r} + bytes((n,)) for n in range(128)]"
        return name

    @staticmethod
    def is_leaf(cls: Any) -> bool:
        """No message or map fields: small enough to write inline in its parent."""
        for f in dataclasses.fields(cls):
            meta = bp.FieldMetadata.get(f)
            if meta.map_meta or (meta.proto_type == bp.TYPE_MESSAGE and meta.unwrap is None):
                return False
        return True

    def encoder(self, cls: type[bp.Message]) -> None:
        self.lines += ["", "", f"def e_{ident(cls)}(m, out):"]
        self.lines += self.encoder_body(cls, "m", "v", "    ")

    def encoder_body(self, cls: type[bp.Message], m: str, v: str, ind: str) -> list[str]:
        L: list[str] = []
        for name, meta, fcls, vcls in self.field_info(cls):
            num = meta.number
            L.append(f"{ind}{v} = {m}.{name}")
            if meta.map_meta:
                kmeta, vmeta = meta.map_meta
                kt = bp.encode_varint(1 << 3 | wire_of(kmeta.proto_type))
                vt = bp.encode_varint(2 << 3 | wire_of(vmeta.proto_type))
                L += [
                    f"{ind}if {v} is not None and {v} != {{}}:",
                    f"{ind}    for k, x in {v}.items():",
                ]
                i3 = ind + "        "
                L += self.open_len(bp.encode_varint(num << 3 | 2), i3)
                L.append(f"{i3}q = p")
                L += self.encode_value(kmeta.proto_type, None, None, "k", kt, i3)
                L += self.encode_value(vmeta.proto_type, vmeta.unwrap, vcls, "x", vt, i3)
                L += self.close_len(i3, "q")
                continue
            if meta.repeated:
                if meta.proto_type in VARINT | set(FIXED):
                    L += [f"{ind}if {v} is not None and {v} != []:"]
                    L += self.open_len(bp.encode_varint(num << 3 | 2), ind + "    ")
                    L.append(f"{ind}    for x in {v}:")
                    if meta.proto_type in FIXED:
                        L.append(f"{ind}        out += pack({FIXED[meta.proto_type][0]!r}, x)")
                    elif meta.proto_type in (bp.TYPE_SINT32, bp.TYPE_SINT64):
                        L.append(f"{ind}        out += vi(zigzag(x))")
                    else:
                        L.append(f"{ind}        out += vi(x)")
                    L += self.close_len(ind + "    ")
                    continue
                tag = bp.encode_varint(num << 3 | wire_of(meta.proto_type))
                L += [f"{ind}if {v} is not None:", f"{ind}    for x in {v}:"]
                if (
                    meta.proto_type == bp.TYPE_MESSAGE
                    and meta.unwrap is None
                    and fcls in self.known
                    and self.is_leaf(fcls)
                    and v == "v"
                ):
                    # a leaf message written inline (labels: five per node)
                    c, i3 = self.cls_ref(fcls), ind + "        "
                    L.append(f"{ind}        if type(x) is {c}:")
                    L += self.open_len(tag, i3 + "    ")
                    L += self.encoder_body(fcls, "x", "w", i3 + "    ")
                    L += self.close_len(i3 + "    ")
                    L += [
                        f"{i3}else:",
                        f"{i3}    b = bytes(x)",
                        f"{i3}    n = len(b)",
                        f"{i3}    out += {self.taglen(tag)}[n] if n < 128 else {tag!r} + vi(n)",
                        f"{i3}    out += b",
                    ]
                    continue
                L += self.encode_value(
                    meta.proto_type, meta.unwrap, fcls, "x", tag, ind + "        "
                )
                continue
            tag = bp.encode_varint(num << 3 | wire_of(meta.proto_type))
            d = self.default(meta, fcls)
            if d == "None":
                cond = f"{v} is not None"
            else:
                # betterproto2 skips None and the default (by ==); the rest is written.
                # None fails in the writing below, and encode() then asks betterproto2.
                cond = f"{v} != {d}"
            if meta.proto_type == bp.TYPE_BOOL and not meta.optional and not meta.group:
                true = tag + b"\x01"
                L += [f"{ind}if {v} is True:", f"{ind}    out += {true!r}"]
                L.append(f"{ind}elif {cond}:")
            else:
                L.append(f"{ind}if {cond}:")
            L += self.encode_value(meta.proto_type, meta.unwrap, fcls, v, tag, ind + "    ")
        L += [f"{ind}out += {m}._unknown_fields"]
        return L
