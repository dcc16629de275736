"""Readable tables for JD objects: in a terminal, in rich, in Jupyter.

The generated message classes print as dataclass dumps. `table()` wraps what a
call returned in a view that renders as a table everywhere:

    resp = await jd.list_nodes()
    jdkit.table(resp)            # or table(resp.nodes): a Table (a list of the nodes)
    jdkit.table(node)            # one object: a Detail (field / value)
    jdkit.show(resp)             # print it now (rich when installed, HTML in Jupyter)

A `Table` is a `list` subclass holding the original messages, so it can be
indexed, iterated and compared like the list it came from; only its
`repr`/`str`, rich rendering and `_repr_html_` differ. HTML escapes every value.
rich is optional (the `cli` extra): without it `str()` is a plain-text table.

Width: a table written anywhere but a terminal (a pipe, a file, a log) is
plain text with every column in full, because nothing there has a width to
fit. In a terminal, rich fits the table to the width: every column keeps at
least its whole header and short values (IDs, statuses, revisions are never
cut; long keys and labels fold, never narrower than 20 characters), and when
even that does not fit, the least important columns are left out, named in
the caption: timestamps and delivery status go first, then keys and labels;
ID, Name, Status and Rev stay.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import html
import importlib
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import betterproto2

from jdkit._json import to_json_dict
from jdkit._tasks import NodeRollout, Rollout, RolloutStatus
from jdkit.pb import csa, job, label, node, probation
from jdkit.selectors import format_labels

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType, RenderResult

__all__ = ["Column", "Detail", "Table", "show", "table"]


# -- cell formatting


def fmt_time(value: _dt.datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(_dt.UTC)
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    return value.strftime("%Y-%m-%d %H:%M:%S")


def fmt_bool(value: bool) -> str:
    return "yes" if value else "no"


def short(value: str, keep: int = 8) -> str:
    """`abcdef12…9f0e` for long keys; ids and short strings stay whole."""
    if len(value) <= 2 * keep + 2:
        return value
    return f"{value[:keep]}…{value[-4:]}"


def fmt_value(value: Any) -> str:
    """Any field value as one cell of text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return fmt_bool(value)
    if isinstance(value, _dt.datetime):
        return fmt_time(value)
    if isinstance(value, enum.Enum):
        return str(value.name)
    if isinstance(value, betterproto2.Message):
        return json.dumps(to_json_dict(value), separators=(",", ":"), sort_keys=True)
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, label.Label) for v in value):
            return format_labels(value)
        return ", ".join(fmt_value(v) for v in value)
    return str(value)


_STATUS_STYLE = {
    "PROPOSED": "yellow",
    "PENDING": "yellow",
    "APPROVED": "green",
    "REJECTED": "red",
    "CANCELLED": "magenta",
    "REVOKED": "dim",
    "DELIVERED": "green",
    "ACKNOWLEDGED": "green",
    "FAILED": "red",
    "yes": "green",
    "no": "red",
    "ok": "green",
    "failed": "red",
}


_ID_HEADERS = frozenset({"ID"})  # the column never folded, cut or left out

#: How important a column is by header, 0 = most; columns not named get 5.
#: When a terminal is too narrow, the highest numbers are left out first.
PRIORITY: dict[str, int] = {
    "ID": 0,
    "#": 0,
    "Name": 1,
    "Status": 1,
    "Rev": 1,
    "Result": 1,
    "Call": 1,
    "Node": 2,
    "Job": 2,
    "Enabled": 3,
    "Error": 3,
    "What": 3,
    "Proposal": 4,
    "Public key": 4,
    "UUID": 4,
    "Chain": 4,
    "Type": 4,
    "Labels": 5,
    "Connected": 6,
    "Account": 6,
    "Policy": 6,
    "Proposals": 6,
    "Latest proposal": 6,
    "Admin": 7,
    "OCR1": 7,
    "OCR2": 7,
    "P2P peer": 7,
    "Delivery": 8,
    "Created": 9,
    "Updated": 9,
    "Deleted": 9,
}

#: A long (folding) column is never squeezed narrower than this.
LONG_FLOOR = 20
#: A short (cut with …) column keeps up to this much of its values, or all of an ID.
SHORT_FLOOR = 24


@dataclass(frozen=True)
class Column:
    """One column: a header and how to get a cell's text from a row."""

    header: str
    get: Callable[[Any], str]
    #: Style cells by their text (statuses, yes/no) in rich.
    styled: bool = False
    #: May be long (keys, addresses): rich folds it instead of cutting it.
    long: bool = False
    justify: str = "left"
    #: Never cut or left out (the row's identity). Default: the header is "ID".
    ident: bool = False
    #: Lower is kept longer when the terminal is narrow; None: by header (PRIORITY).
    priority: int | None = None

    @property
    def rank(self) -> int:
        if self.ident or self.header in _ID_HEADERS:
            return -1
        return self.priority if self.priority is not None else PRIORITY.get(self.header, 5)


def _key(wide: bool) -> Callable[[str], str]:
    return (lambda s: s) if wide else short


def _columns_for(kind: type, wide: bool) -> tuple[Column, ...] | None:
    k = _key(wide)
    if kind is node.Node:
        return (
            Column("ID", lambda n: n.id),
            Column("Name", lambda n: n.name),
            Column("Public key", lambda n: k(n.public_key), long=wide),
            Column("Enabled", lambda n: fmt_bool(n.is_enabled), styled=True),
            Column("Connected", lambda n: fmt_bool(n.is_connected), styled=True),
            Column("Labels", lambda n: format_labels(n.labels), long=True),
            Column("Created", lambda n: fmt_time(n.created_at)),
        )
    if kind is job.Job:
        return (
            Column("ID", lambda j: j.id),
            Column("UUID", lambda j: j.uuid, long=True),
            Column("Node", lambda j: j.node_id),
            Column("Proposals", lambda j: str(len(j.proposal_ids)), justify="right"),
            Column("Latest proposal", lambda j: j.proposal_ids[-1] if j.proposal_ids else ""),
            Column("Labels", lambda j: format_labels(j.labels), long=True),
            Column("Created", lambda j: fmt_time(j.created_at)),
            Column("Deleted", lambda j: fmt_time(j.deleted_at)),
        )
    if kind is job.Proposal:
        return (
            Column("ID", lambda p: p.id),
            Column("Job", lambda p: p.job_id),
            Column("Rev", lambda p: str(p.revision), justify="right"),
            Column("Status", lambda p: fmt_value(p.status), styled=True),
            Column("Delivery", lambda p: fmt_value(p.delivery_status), styled=True),
            Column("Updated", lambda p: fmt_time(p.updated_at)),
        )
    if kind is node.ChainConfig:
        return (
            Column("Node", lambda c: c.node_id),
            Column("Chain", lambda c: c.chain.id if c.chain else ""),
            Column("Type", lambda c: fmt_value(c.chain.type) if c.chain else ""),
            Column("Account", lambda c: k(c.account_address), long=wide),
            Column("Admin", lambda c: k(c.admin_address), long=wide),
            Column("OCR1", lambda c: fmt_bool(bool(c.ocr1_config and c.ocr1_config.enabled))),
            Column("OCR2", lambda c: fmt_bool(bool(c.ocr2_config and c.ocr2_config.enabled))),
            Column("P2P peer", lambda c: k(_peer_id(c)), long=wide),
        )
    if kind is csa.Keypair:
        return (
            Column("ID", lambda kp: str(kp.id), justify="right"),
            Column("Public key", lambda kp: kp.public_key, long=True),
            Column("Created", lambda kp: fmt_time(kp.created_at)),
        )
    if kind is probation.RollbackPolicy:
        return (
            Column("ID", lambda p: p.id),
            Column("Policy", lambda p: fmt_value(p.policy), long=True),
            Column("Updated", lambda p: fmt_time(p.updated_at)),
        )
    if kind is BatchResult:
        return (
            Column("Node", lambda r: r.node_id, ident=True),
            Column("Result", lambda r: "ok" if r.ok else "failed", styled=True),
            Column("Proposal", lambda r: r.proposal_id),
            Column("Rev", lambda r: str(r.revision) if r.ok else "", justify="right"),
            Column("Error", lambda r: r.error, long=True),
        )
    if kind is NodeRollout:
        return (
            Column("Node", lambda r: r.node_id, ident=True),
            Column("Name", lambda r: r.node_name),
            Column("Rev", lambda r: str(r.revision) if r.proposed else "", justify="right"),
            Column("Status", lambda r: r.status_text, styled=True),
            Column("Delivery", lambda r: fmt_value(r.delivery_status) if r.proposed else ""),
            Column("Updated", lambda r: fmt_time(r.updated_at)),
            Column("Job", lambda r: r.job_id + (" (deleted)" if r.deleted else "")),
            Column("Proposal", lambda r: r.proposal_id),
        )
    return None


def _peer_id(c: node.ChainConfig) -> str:
    for cfg in (c.ocr2_config, c.ocr1_config):
        if cfg is not None and cfg.p2p_key_bundle is not None:
            return str(cfg.p2p_key_bundle.peer_id)
    return ""


def _generic_columns(kind: type) -> tuple[Column, ...]:
    """Scalar fields of a message type (or any dataclass) in declaration order."""
    cols: list[Column] = []
    if dataclasses.is_dataclass(kind):
        for f in dataclasses.fields(kind):
            if f.name.startswith("_"):
                continue
            cols.append(Column(f.name, _field_getter(f.name)))
    return tuple(cols) or (Column("Value", fmt_value),)


def _field_getter(name: str) -> Callable[[Any], str]:
    def get(row: Any) -> str:
        return fmt_value(getattr(row, name))

    return get


@dataclass(frozen=True)
class BatchResult:
    """One node's outcome in a BatchProposeJob answer (a row of its table)."""

    node_id: str
    ok: bool
    proposal_id: str = ""
    revision: int = 0
    error: str = ""


def rollout_results(rollout: Rollout) -> list[BatchResult]:
    rows = [
        BatchResult(node_id, True, p.id, int(p.revision))
        for node_id, p in sorted(rollout.proposals.items())
    ]
    rows += [BatchResult(n, False, error=e) for n, e in sorted(rollout.failed.items())]
    return rows


def batch_results(resp: job.BatchProposeJobResponse) -> list[BatchResult]:
    rows: list[BatchResult] = []
    for node_id, ok in sorted(resp.success_responses.items()):
        p = ok.proposal
        rows.append(BatchResult(node_id, True, p.id if p else "", int(p.revision) if p else 0, ""))
    for node_id, failed in sorted(resp.failed_responses.items()):
        rows.append(BatchResult(node_id, False, error=failed.error_message))
    return rows


# -- the views


def _plural(kind: type | None, n: int) -> str:
    names = {
        node.Node: "node",
        job.Job: "job",
        job.Proposal: "proposal",
        node.ChainConfig: "chain config",
        csa.Keypair: "keypair",
        probation.RollbackPolicy: "rollback policy",
        BatchResult: "node",
        NodeRollout: "node",
    }
    name = names.get(kind, "row") if kind is not None else "row"
    if n == 1:
        return name
    return name[:-1] + "ies" if name.endswith("y") else name + "s"


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
            cols = _columns_for(self.kind, wide) or _generic_columns(self.kind)
        self.columns: tuple[Column, ...] = cols or ()
        self.title = title

    def cells(self) -> list[list[str]]:
        return [[c.get(row) for c in self.columns] for row in self]

    @property
    def summary(self) -> str:
        return f"{len(self)} {_plural(self.kind, len(self))}"

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
                        style=_STATUS_STYLE.get(row[i], "") if self.columns[i].styled else "",
                    )
                    for i in keep
                )
            )
        return t

    # Jupyter

    def _repr_html_(self) -> str:
        esc = html.escape
        parts = ['<table class="jdkit-table">']
        if self.title:
            parts.append(f"<caption>{esc(self.title)}</caption>")
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
            t.add_row(k, Text(v, style=_STATUS_STYLE.get(v, "")))
        return t

    def _repr_html_(self) -> str:
        esc = html.escape
        parts = ['<table class="jdkit-detail">']
        if self.title:
            parts.append(f"<caption>{esc(self.title)}</caption>")
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


def _list_field(msg: Any) -> tuple[str, list[Any]] | None:
    """The one repeated-message field of a List* response, if that is its shape."""
    lists = [
        (f.name, getattr(msg, f.name))
        for f in dataclasses.fields(msg)
        if isinstance(getattr(msg, f.name), list)
    ]
    if len(lists) == 1:
        return lists[0]
    return None


def table(obj: Any, *, title: str | None = None, wide: bool = False) -> Table | Detail:
    """A displayable view of what a JD call returned (see the module docstring).

    * a `List*Response` or any list of messages -> `Table`
    * `BatchProposeJobResponse` -> `Table` with one row per node (ok / failed)
    * a `Get*Response`, a single message, anything else -> `Detail`

    `wide=True` keeps long keys and addresses whole instead of shortening them.
    """
    from jdkit._dryrun import Journal

    if isinstance(obj, Table | Detail):
        return obj
    if isinstance(obj, Rollout):
        rows = rollout_results(obj)
        dry = " (dry run: nothing sent)" if obj.dry_run else ""
        return Table(
            rows,
            title=title or f"{len(obj.proposals)} proposed, {len(obj.failed)} failed{dry}",
            wide=wide,
        )
    if isinstance(obj, RolloutStatus):
        counts = ", ".join(f"{k} {v}" for k, v in sorted(obj.counts().items()))
        ext = {r.external_job_id for r in obj}
        what = f"rollout of {ext.pop()}" if len(ext) == 1 else "rollout"
        return Table(obj.rows, title=title or f"{what}: {counts or 'no jobs'}", wide=wide)
    if isinstance(obj, Journal):
        return Table(
            enumerate(obj.entries, 1),
            title=title or "Dry-run plan (nothing sent)",
            columns=(
                Column("#", lambda r: str(r[0]), justify="right"),
                Column("Call", lambda r: r[1].name),
                Column("What", lambda r: _journal_summary(r[1]), long=True),
            ),
        )
    if isinstance(obj, job.BatchProposeJobResponse):
        rows = batch_results(obj)
        ok = sum(r.ok for r in rows)
        return Table(rows, title=title or f"{ok} proposed, {len(rows) - ok} failed", wide=wide)
    if isinstance(obj, betterproto2.Message):
        found = _list_field(obj)
        if found is not None:
            _, items = found
            total = getattr(obj, "total_count", None)
            t = Table(items, title=title, wide=wide)
            if t.title is None and total and total != len(items):
                t.title = f"{len(items)} of {total} {_plural(t.kind, total)}"
            return t
        fields = [f.name for f in dataclasses.fields(obj)]  # type: ignore[arg-type]
        if len(fields) == 1 and isinstance(getattr(obj, fields[0]), betterproto2.Message):
            return Detail(getattr(obj, fields[0]), title=title)
        return Detail(obj, title=title)
    if isinstance(obj, Iterable) and not isinstance(obj, str | bytes | dict):
        return Table(obj, title=title, wide=wide)
    return Detail(obj, title=title)


def _journal_summary(entry: Any) -> str:
    from jdkit import _dryrun

    summary: Callable[[Any], str] | None = getattr(_dryrun, "_summary", None)
    if summary is not None:
        return summary(entry)
    return fmt_value(entry.request)


def show(
    obj: Any, *, title: str | None = None, wide: bool = False, file: IO[str] | None = None
) -> None:
    """Display `obj` now: in Jupyter as HTML, in a terminal with rich, else plain text.

    `file` (default stdout) is where it goes. Anything that is not a terminal
    gets the plain-text table with every column whole, so a pipe or a log
    never loses a column to an assumed 80-character width.
    """
    view = table(obj, title=title, wide=wide)
    if file is None:
        try:
            ipython: Any = importlib.import_module("IPython")
            if ipython.get_ipython() is not None:
                importlib.import_module("IPython.display").display(view)
                return
        except ImportError:
            pass
    stream = file if file is not None else sys.stdout
    isatty = getattr(stream, "isatty", None)
    if callable(isatty) and isatty():
        try:
            from rich.console import Console
        except ImportError:
            pass
        else:
            Console(file=stream, soft_wrap=False, highlight=False).print(view)
            return
    stream.write(view.to_text() + "\n")
    stream.flush()
