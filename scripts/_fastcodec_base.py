"""What the decoder and encoder emitters of gen_fastcodec.py share: the
generated module's names (class, enum and default constants, imports) and
each message's field table."""

from __future__ import annotations

import dataclasses
from typing import Any

import betterproto2 as bp

#: struct format and size of each fixed-width type (their wire types: `wire_of`)
FIXED = {
    bp.TYPE_DOUBLE: ("<d", 8),
    bp.TYPE_FLOAT: ("<f", 4),
    bp.TYPE_FIXED32: ("<I", 4),
    bp.TYPE_FIXED64: ("<Q", 8),
    bp.TYPE_SFIXED32: ("<i", 4),
    bp.TYPE_SFIXED64: ("<q", 8),
}
DEFAULTS = {
    bp.TYPE_BOOL: "False",
    bp.TYPE_STRING: '""',
    bp.TYPE_BYTES: 'b""',
    bp.TYPE_FLOAT: "0.0",
    bp.TYPE_DOUBLE: "0.0",
}


def ident(cls: type) -> str:
    return cls.__module__.removeprefix("jdkit._proto.").replace(".", "_") + "_" + cls.__name__


def proto_name(cls: type) -> str:
    return cls.__module__.removeprefix("jdkit._proto.") + "." + cls.__name__


class GenBase:
    """Collects the generated module: its lines, imported modules and constants."""

    def __init__(self, classes: list[type[bp.Message]]) -> None:
        self.classes = classes
        self.known = set(classes)
        self.modules: dict[str, str] = {}
        self.consts: dict[str, str] = {}  # name -> expression
        self.lines: list[str] = []

    def mod(self, module: str) -> str:
        alias = "_m_" + module.removeprefix("jdkit._proto.").replace(".", "_")
        self.modules[module] = alias
        return alias

    def cls_ref(self, cls: type) -> str:
        name = "C_" + ident(cls)
        self.consts[name] = f"{self.mod(cls.__module__)}.{cls.__name__}"
        return name

    def enum_map(self, cls: type) -> str:
        name = "E_" + ident(cls)
        self.consts[name] = f"{{m.value: m for m in {self.cls_ref(cls)}}}"
        return name

    def enum_zero(self, cls: type) -> str:
        name = "Z_" + ident(cls)
        self.consts[name] = f"{self.cls_ref(cls)}(0)"
        return name

    def default(self, meta: Any, field_cls: type | None) -> str:
        if meta.repeated:
            return "[]"
        if meta.map_meta:
            return "{}"
        if meta.optional or meta.group or meta.proto_type == bp.TYPE_MESSAGE:
            return "None"
        if meta.proto_type == bp.TYPE_ENUM:
            assert field_cls is not None
            return self.enum_zero(field_cls)
        return DEFAULTS.get(meta.proto_type, "0")

    def field_info(self, cls: Any) -> list[tuple[str, Any, type | None, type | None]]:
        out = []
        by_field = cls._betterproto.cls_by_field
        for f in dataclasses.fields(cls):
            meta = bp.FieldMetadata.get(f)
            fcls = by_field.get(f.name)
            vcls = by_field.get(f"{f.name}.value")
            out.append((f.name, meta, fcls, vcls))
        return out
