"""Generate jdkit/_codec/_generated.py: a decoder and an encoder per message.

The input is the betterproto2 stubs in jdkit/_proto (themselves generated
from proto/ by gen_protos.py), read through their dataclass field metadata,
so the fast codec and the stubs cannot disagree about a field. Each decoder
returns exactly what `Message.parse` would (same classes, same defaults,
unknown fields kept as raw bytes, enums through the enum class, Timestamp
unwrapped to datetime) and each encoder writes exactly the bytes of
`bytes(message)`; betterproto2 stays the reference the tests compare with.

Decoders read the fields a well-behaved encoder writes in field order in
one straight pass (one byte compare per field), then fall into a general
loop for anything else: repeats, other orders, unknown fields, long tags.

`--check` fails when the committed file differs from a fresh generation.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "jdkit" / "_codec" / "_generated.py"

import betterproto2 as bp  # noqa: E402

from jdkit._core.wire import VARINT_TYPES as VARINT  # noqa: E402
from jdkit._core.wire import wire_of  # noqa: E402

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


#: The packages of the JD gRPC API (what `jdkit.pb` imports). The node
#: protocol's messages stay out: importing them here would cost every client
#: their import time, and they travel over wsrpc, not this codec.
PACKAGES = ("jdkit._proto.api.", "jdkit._proto.google.", "jdkit._proto.grpc.")


def messages() -> list[type[bp.Message]]:
    import jdkit._proto as root

    found: dict[str, type[bp.Message]] = {}
    for info in pkgutil.walk_packages(root.__path__, "jdkit._proto."):
        if not info.name.startswith(PACKAGES):
            continue
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if (
                isinstance(obj, type)
                and issubclass(obj, bp.Message)
                and obj.__module__ == mod.__name__
                and dataclasses.is_dataclass(obj)
            ):
                found[f"{mod.__name__}.{name}"] = obj
    return [found[k] for k in sorted(found)]


def ident(cls: type) -> str:
    return cls.__module__.removeprefix("jdkit._proto.").replace(".", "_") + "_" + cls.__name__


def proto_name(cls: type) -> str:
    return cls.__module__.removeprefix("jdkit._proto.") + "." + cls.__name__


class Gen:
    def __init__(self, classes: list[type[bp.Message]]) -> None:
        self.classes = classes
        self.known = set(classes)
        self.modules: dict[str, str] = {}
        self.consts: dict[str, str] = {}  # name -> expression
        self.lines: list[str] = []

    # -- names

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

    # -- decoding

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

    def field_info(self, cls: Any) -> list[tuple[str, Any, type | None, type | None]]:
        out = []
        by_field = cls._betterproto.cls_by_field
        for f in dataclasses.fields(cls):
            meta = bp.FieldMetadata.get(f)
            fcls = by_field.get(f.name)
            vcls = by_field.get(f"{f.name}.value")
            out.append((f.name, meta, fcls, vcls))
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

    # -- encoding

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

    def render(self) -> str:
        for cls in self.classes:
            self.decoder(cls)
            self.encoder(cls)
        body = self.lines
        head = [
            "# Generated by scripts/gen_fastcodec.py from the betterproto2 stubs in jdkit/_proto.",
            "# DO NOT EDIT: run `nox -s protos`.",
            "# ruff: noqa",
            "# mypy: ignore-errors",
            "",
            "from struct import pack, unpack_from",
            "",
        ]
        for module in sorted(self.modules):
            pkg, _, leaf = module.rpartition(".")
            head.append(f"from {pkg} import {leaf} as {self.modules[module]}")
        head += [
            "from jdkit._codec._runtime import (",
            "    VI,",
            "    skip,",
            "    truncated,",
            "    ts_decode,",
            "    ts_encode,",
            "    vcont,",
            "    vi,",
            "    wrong_wire,",
            "    zigzag,",
            ")",
            "",
            "new = object.__new__",
            "",
        ]
        for name in sorted(self.consts, key=lambda n: (not n.startswith("C_"), n)):
            head.append(f"{name} = {self.consts[name]}")
        tail = ["", "", "DECODERS = {"]
        tail += [f"    {self.cls_ref(c)}: d_{ident(c)}," for c in self.classes]
        tail += ["}", "", "ENCODERS = {"]
        tail += [f"    {self.cls_ref(c)}: e_{ident(c)}," for c in self.classes]
        tail += ["}", ""]
        return "\n".join(head + body + tail)


def generate() -> str:
    text = Gen(messages()).render()
    # format with the project's ruff so the file reads like the rest
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "_generated.py"
        path.write_text(text)
        ruff = Path(sys.executable).parent / "ruff"
        subprocess.run(
            [str(ruff if ruff.exists() else "ruff"), "format", "--quiet", "--isolated",
             "--line-length", "100", str(path)],
            check=True,
        )  # fmt: skip
        return path.read_text()


def main() -> int:
    text = generate()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} differs from the stubs (run `nox -s protos`)")
            return 1
        print(f"{OUT.relative_to(ROOT)} matches jdkit/_proto")
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
