"""Decoder emission for gen_fastcodec.py: one `d_<message>` function per
message, a straight pass for fields in order, then the general loop."""

from __future__ import annotations

from typing import Any

import betterproto2 as bp
from _fastcodec_base import DEFAULTS, FIXED, GenBase, ident, proto_name

from jdkit._core.wire import VARINT_TYPES as VARINT
from jdkit._core.wire import wire_of


class Decoders(GenBase):
    def read_varint(self, var: str, ind: str, after_key: bool = False) -> list[str]:
        """`after_key`: `i` still points at a one-byte key the caller compared."""
        first = (
            [f"{ind}{var} = data[i + 1]", f"{ind}i += 2"]
            if after_key
            else [
                f"{ind}{var} = data[i]",
                f"{ind}i += 1",
            ]
        )
        return [*first, f"{ind}if {var} >= 128:", f"{ind}    {var}, i = vcont(data, i, {var})"]

    def convert_varint(self, proto_type: str, var: str, field_cls: type | None) -> list[str]:
        """Statements turning the raw varint `var` into betterproto2's value."""
        if proto_type == bp.TYPE_INT32:
            return [f"{var} = (({var} & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000"]
        if proto_type == bp.TYPE_INT64:
            return [
                f"{var} = (({var} & 0xFFFFFFFFFFFFFFFF) ^ 0x8000000000000000) - 0x8000000000000000"
            ]
        if proto_type == bp.TYPE_ENUM:
            assert field_cls is not None
            m, c = self.enum_map(field_cls), self.cls_ref(field_cls)
            return [
                f"{var} = (({var} & 0xFFFFFFFFFFFFFFFF) ^ 0x8000000000000000) - 0x8000000000000000",
                f"{var} = {m}[{var}] if {var} in {m} else {c}({var})",
            ]
        if proto_type == bp.TYPE_UINT32:
            return [f"{var} &= 0xFFFFFFFF"]
        if proto_type == bp.TYPE_UINT64:
            return [f"{var} &= 0xFFFFFFFFFFFFFFFF"]
        if proto_type == bp.TYPE_SINT32:
            return [f"{var} &= 0xFFFFFFFF", f"{var} = ({var} >> 1) ^ (-({var} & 1))"]
        if proto_type == bp.TYPE_SINT64:
            return [f"{var} &= 0xFFFFFFFFFFFFFFFF", f"{var} = ({var} >> 1) ^ (-({var} & 1))"]
        if proto_type == bp.TYPE_BOOL:
            return [f"{var} = {var} > 0"]
        raise AssertionError(proto_type)

    def value_body(
        self,
        proto_type: str,
        unwrap: Any,
        field_cls: type | None,
        var: str,
        ind: str,
        after_key: bool = False,
    ) -> list[str]:
        """Read one value (key consumed, or at `i` when `after_key`) into `var`."""
        if proto_type in VARINT:
            out = self.read_varint(var, ind, after_key)
            return out + [ind + s for s in self.convert_varint(proto_type, var, field_cls)]
        if proto_type in FIXED:
            fmt, size = FIXED[proto_type]
            at = "i + 1" if after_key else "i"
            return [
                f"{ind}{var} = unpack_from({fmt!r}, data, {at})[0]",
                f"{ind}i += {size + after_key}",
            ]
        out = [*self.read_varint("n", ind, after_key), f"{ind}j = i + n"]
        if proto_type == bp.TYPE_STRING:
            out.append(f"{ind}{var} = data[i:j].decode()")
        elif proto_type == bp.TYPE_BYTES:
            out.append(f"{ind}{var} = data[i:j]")
        elif proto_type == bp.TYPE_MESSAGE:
            if unwrap is not None:
                target = unwrap()
                if target.__name__ == "Timestamp" and target.__module__.endswith("google.protobuf"):
                    out.append(f"{ind}{var} = ts_decode(data, i, j)")
                else:
                    out.append(f"{ind}{var} = {self.cls_ref(target)}.parse(data[i:j]).to_wrapped()")
            else:
                assert field_cls is not None
                if field_cls in self.known:
                    out.append(f"{ind}{var} = d_{ident(field_cls)}(data, i, j)")
                else:
                    out.append(f"{ind}{var} = {self.cls_ref(field_cls)}.parse(data[i:j])")
        else:
            raise AssertionError(proto_type)
        out.append(f"{ind}i = j")
        return out

    def map_entry_decoder(self, cls: type, name: str, meta: Any, vcls: type | None) -> str:
        fn = f"me_{ident(cls)}_{name}"
        kmeta, vmeta = meta.map_meta
        kdef = DEFAULTS.get(kmeta.proto_type, "0")
        if vmeta.proto_type == bp.TYPE_ENUM:
            vdef = self.enum_zero(vcls)  # type: ignore[arg-type]
        elif vmeta.proto_type == bp.TYPE_MESSAGE:
            vdef = "None"
        else:
            vdef = DEFAULTS.get(vmeta.proto_type, "0")
        kkey = 1 << 3 | wire_of(kmeta.proto_type)
        vkey = 2 << 3 | wire_of(vmeta.proto_type)
        where = f"{proto_name(cls)}.{name}"
        L = self.lines
        L += [
            "",
            "",
            f"def {fn}(data, i, end):",
            f"    k = {kdef}",
            f"    v = {vdef}",
            "    while i < end:",
            "        key = data[i]",
            "        i += 1",
            "        if key >= 128:",
            "            key, i = vcont(data, i, key)",
            f"        if key == {kkey}:",
        ]
        L += self.value_body(kmeta.proto_type, None, None, "k", "            ")
        L.append(f"        elif key == {vkey}:")
        L += self.value_body(vmeta.proto_type, vmeta.unwrap, vcls, "v", "            ")
        L += [
            "        elif key >> 3 in (1, 2):",
            f"            raise wrong_wire({where!r}, 'key' if key >> 3 == 1 else 'value', key)",
            "        else:",
            "            i = skip(data, i, key, end)",
            "    if i != end:",
            f"        raise truncated({where + ' entry'!r})",
            "    return k, v",
        ]
        return fn

    def decoder(self, cls: type[bp.Message]) -> None:
        fields = self.field_info(cls)
        pname = proto_name(cls)
        entry_fns = {
            name: self.map_entry_decoder(cls, name, meta, vcls)
            for name, meta, _, vcls in fields
            if meta.map_meta
        }
        L = self.lines
        L += ["", "", f"def d_{ident(cls)}(data, i, end):"]
        for name, meta, fcls, _ in fields:
            L.append(f"    f_{name} = {self.default(meta, fcls)}")
        L.append("    unknown = b''")

        def body(
            name: str, meta: Any, fcls: type | None, ind: str, after_key: bool = False
        ) -> list[str]:
            if meta.map_meta:
                out = self.read_varint("n", ind, after_key)
                out += [
                    f"{ind}j = i + n",
                    f"{ind}kv = {entry_fns[name]}(data, i, j)",
                    f"{ind}f_{name}[kv[0]] = kv[1]",
                    f"{ind}i = j",
                ]
                return out
            if meta.repeated:
                out = self.value_body(meta.proto_type, meta.unwrap, fcls, "v", ind, after_key)
                return [*out, f"{ind}f_{name}.append(v)"]
            return self.value_body(meta.proto_type, meta.unwrap, fcls, f"f_{name}", ind, after_key)

        def packed(name: str, meta: Any, fcls: type | None, ind: str) -> list[str]:
            out = self.read_varint("n", ind)
            out += [f"{ind}j = i + n", f"{ind}while i < j:"]
            out += self.value_body(meta.proto_type, None, fcls, "v", ind + "    ")
            out += [f"{ind}    f_{name}.append(v)", f"{ind}if i != j:"]
            out += [f"{ind}    raise truncated({pname + '.' + name!r})"]
            return out

        # the straight pass: fields in number order, as encoders write them
        ordered = sorted(fields, key=lambda t: t[1].number)
        for name, meta, fcls, _ in ordered:
            key = meta.number << 3 | (2 if meta.map_meta else wire_of(meta.proto_type))
            if key >= 128:
                continue
            loop = "while" if (meta.repeated or meta.map_meta) else "if"
            L.append(f"    {loop} i < end and data[i] == {key}:")
            L += body(name, meta, fcls, "        ", after_key=True)
        # the general loop
        L += [
            "    while i < end:",
            "        start = i",
            "        key = data[i]",
            "        i += 1",
            "        if key >= 128:",
            "            key, i = vcont(data, i, key)",
        ]
        kw = "if"
        numbers = []
        for name, meta, fcls, _ in ordered:
            numbers.append(meta.number)
            key = meta.number << 3 | (2 if meta.map_meta else wire_of(meta.proto_type))
            L.append(f"        {kw} key == {key}:")
            kw = "elif"
            L += body(name, meta, fcls, "            ")
            if meta.repeated and meta.proto_type in VARINT | set(FIXED):
                L.append(f"        elif key == {meta.number << 3 | 2}:")
                L += packed(name, meta, fcls, "            ")
        if numbers:
            L.append(f"        elif key >> 3 in {tuple(sorted(numbers))!r}:")
            L.append(f"            raise wrong_wire({pname!r}, NAMES_{ident(cls)}[key >> 3], key)")
            self.consts[f"NAMES_{ident(cls)}"] = repr({m.number: n for n, m, _, _ in fields})
            L.append("        else:")
        else:
            L.append("        if True:")
        L += [
            "            i = skip(data, i, key, end)",
            "            unknown += data[start:i]",
            "    if i != end:",
            f"        raise truncated({pname!r})",
        ]
        if cls.__post_init__ is bp.Message.__post_init__:
            # the dataclass __init__, positionally, is the fastest way in
            args = ", ".join(f"f_{name}" for name, _, _, _ in fields)
            L += [
                f"    o = {self.cls_ref(cls)}({args})",
                "    if unknown:",
                "        o._unknown_fields = unknown",
                "    return o",
            ]
        else:
            # a __post_init__ of its own (deprecation warnings): parse() never runs
            # it with the fields set, so neither do we
            items = "".join(f"{name!r}: f_{name}, " for name, _, _, _ in fields)
            L += [
                f"    o = new({self.cls_ref(cls)})",
                f"    o.__dict__ = {{{items}'_unknown_fields': unknown}}",
                "    return o",
            ]
