"""The rendering engine: `Table` (rows) and `Detail` (one object's fields) as
plain text, as rich fitted to a terminal's width, and as escaped HTML."""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import betterproto2

from jdkit._display._cells import STATUS_STYLE, fmt_value
from jdkit._display._columns import Column, columns_for, generic_columns, plural
from jdkit._json import to_json_dict

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType, RenderResult

#: A long (folding) column is never squeezed narrower than this.
LONG_FLOOR = 20
#: A short (cut with …) column keeps up to this much of its values, or all of an ID.
SHORT_FLOOR = 24


class Table(list[Any]):
    """A list of JD objects that renders as a table (text, rich, HTML)."""

    def __init__(
        self,
        rows: Iterable[Any] = (),
        *,
        title: str | None = None,
        columns: Sequence[Column] | None = None,
        wide: bool = False,
    ) -> None:
        super().__init__(rows)
        self.kind: type | None = type(self[0]) if self else None
        cols = tuple(columns) if columns is not None else None
        if cols is None and self.kind is not None:
            cols = columns_for(self.kind, wide) or generic_columns(self.kind)
        self.columns: tuple[Column, ...] = cols or ()
        self.title = title

    def cells(self) -> list[list[str]]:
        return [[c.get(row) for c in self.columns] for row in self]

    @property
    def summary(self) -> str:
        return f"{len(self)} {plural(self.kind, len(self))}"

    # plain text

    def to_text(self) -> str:
        if not self:
            return f"{self.title}: none" if self.title else "(none)"
        headers = [c.header.upper() for c in self.columns]
        body = self.cells()
        widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]
        lines = [self.title] if self.title else []
        for r in [headers, *body]:
            parts = [
                cell.rjust(w) if c.justify == "right" else cell.ljust(w)
                for cell, w, c in zip(r, widths, self.columns, strict=True)
            ]
            lines.append("  ".join(parts).rstrip())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return self.to_text()

    # rich

    def fit(self, width: int) -> tuple[list[int], list[int]]:
        """Which columns a `width`-wide terminal shows, and the narrowest each may be.

        Every column gets its floor (all of an ID or a short value, at least
        `LONG_FLOOR` of a long one, never less than its header); while the
        floors do not fit, the column of the highest rank number goes.
        """
        rows = self.cells()
        floors: list[int] = []
        for i, c in enumerate(self.columns):
            natural = max([len(c.header), *(len(r[i]) for r in rows)])
            if c.rank < 0:
                floor = natural
            else:
                floor = min(natural, LONG_FLOOR if c.long else SHORT_FLOOR)
            floors.append(max(floor, len(c.header)))
        keep = list(range(len(self.columns)))

        def need() -> int:  # rich's SIMPLE_HEAD box: 1 edge + (1 pad + cell + 1 pad + 1) each
            return sum(floors[i] for i in keep) + 3 * len(keep) + 1

        while need() > width and len(keep) > 1:
            droppable = [i for i in keep if self.columns[i].rank >= 0]
            if not droppable:
                break
            worst = max(droppable, key=lambda i: (self.columns[i].rank, i))
            keep.remove(worst)
        return keep, floors

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.rich_table(options.max_width)

    def rich_table(self, width: int) -> RenderableType:
        """The rich renderable for a terminal `width` columns wide."""
        from rich import box
        from rich.table import Table as RichTable
        from rich.text import Text

        if not self:
            return Text(f"{self.title}: none" if self.title else "(none)", style="dim")
        keep, floors = self.fit(width)
        hidden = [self.columns[i].header for i in range(len(self.columns)) if i not in keep]
        notes = [self.summary] if len(self) > 10 else []
        if hidden:
            notes.append(f"not shown at this width: {', '.join(hidden)} (a pipe gets every column)")
        t = RichTable(
            title=self.title,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            header_style="bold",
            caption="; ".join(notes) or None,
            caption_justify="left",
        )
        rows = self.cells()
        for i in keep:
            c = self.columns[i]
            t.add_column(
                c.header,
                justify=c.justify,  # type: ignore[arg-type]
                overflow="fold" if c.long else "ellipsis",
                no_wrap=not c.long,
                min_width=floors[i],
            )
        for row in rows:
            t.add_row(
                *(
                    Text(
                        row[i],
                        style=STATUS_STYLE.get(row[i], "") if self.columns[i].styled else "",
                    )
                    for i in keep
                )
            )
        return t

    # Jupyter

    def _repr_html_(self) -> str:
        esc = html.escape
        parts = _html_start("jdkit-table", self.title)
        if not self:
            parts.append("<tbody><tr><td><em>none</em></td></tr></tbody></table>")
            return "".join(parts)
        parts.append(
            "<thead><tr>"
            + "".join(
                f'<th style="text-align:{c.justify}">{esc(c.header)}</th>' for c in self.columns
            )
            + "</tr></thead><tbody>"
        )
        for row in self.cells():
            parts.append(
                "<tr>"
                + "".join(
                    f'<td style="text-align:{c.justify}">{esc(cell)}</td>'
                    for cell, c in zip(row, self.columns, strict=True)
                )
                + "</tr>"
            )
        parts.append("</tbody></table>")
        return "".join(parts)

    def to_dicts(self) -> list[dict[str, Any]]:
        """Each row as JSON-ready data (proto JSON for messages)."""
        return [_to_data(r) for r in self]


def _html_start(css_class: str, title: str | None) -> list[str]:
    """The opening of a view's HTML: the table of that class, its caption if titled."""
    parts = [f'<table class="{css_class}">']
    if title:
        parts.append(f"<caption>{html.escape(title)}</caption>")
    return parts


def _to_data(obj: Any) -> Any:
    if isinstance(obj, betterproto2.Message):
        return to_json_dict(obj, include_default_values=True)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return obj


class Detail:
    """One JD object as field / value rows."""

    def __init__(self, obj: Any, *, title: str | None = None) -> None:
        self.obj = obj
        self.title = title if title is not None else type(obj).__name__
        self.rows: list[tuple[str, str]] = _detail_rows(obj)

    def to_text(self) -> str:
        width = max((len(k) for k, _ in self.rows), default=0)
        lines = [self.title] if self.title else []
        for k, v in self.rows:
            first, *rest = v.splitlines() or [""]
            lines.append(f"  {k.ljust(width)}  {first}".rstrip())
            lines.extend(f"  {' ' * width}  {line}".rstrip() for line in rest)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return self.to_text()

    def __rich__(self) -> RenderableType:
        from rich import box
        from rich.table import Table as RichTable
        from rich.text import Text

        t = RichTable(title=self.title, title_justify="left", box=box.SIMPLE, show_header=False)
        t.add_column("field", style="bold", no_wrap=True)
        t.add_column("value", overflow="fold")
        for k, v in self.rows:
            t.add_row(k, Text(v, style=STATUS_STYLE.get(v, "")))
        return t

    def _repr_html_(self) -> str:
        esc = html.escape
        parts = _html_start("jdkit-detail", self.title)
        parts.append("<tbody>")
        for k, v in self.rows:
            cell = f"<pre>{esc(v)}</pre>" if "\n" in v else esc(v)
            parts.append(f'<tr><th style="text-align:left">{esc(k)}</th><td>{cell}</td></tr>')
        parts.append("</tbody></table>")
        return "".join(parts)


def _detail_rows(obj: Any) -> list[tuple[str, str]]:
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return [("value", fmt_value(obj))]
    rows: list[tuple[str, str]] = []
    for f in dataclasses.fields(obj):
        if f.name.startswith("_"):
            continue
        value = getattr(obj, f.name)
        if isinstance(obj, betterproto2.Message) and value in (None, [], {}, ""):
            continue  # unset optional / empty fields say nothing
        text = fmt_value(value)
        rows.append((f.name, text.strip("\n") if "\n" in text else text))
    return rows
