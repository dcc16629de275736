"""`table()`: which view (a `Table` or a `Detail`) shows what a JD call
returned; `show()`: where a view goes (Jupyter, a terminal, a pipe)."""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Iterable
from typing import IO, Any

import betterproto2

from jdkit._display._columns import Column, batch_results, plural, rollout_results
from jdkit._display._table import Detail, Table
from jdkit._tasks import Rollout, RolloutStatus
from jdkit.pb import job


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
                t.title = f"{len(items)} of {total} {plural(t.kind, total)}"
            return t
        fields = [f.name for f in dataclasses.fields(obj)]  # type: ignore[arg-type]
        if len(fields) == 1 and isinstance(getattr(obj, fields[0]), betterproto2.Message):
            return Detail(getattr(obj, fields[0]), title=title)
        return Detail(obj, title=title)
    if isinstance(obj, Iterable) and not isinstance(obj, str | bytes | dict):
        return Table(obj, title=title, wide=wide)
    return Detail(obj, title=title)


def _journal_summary(entry: Any) -> str:
    from jdkit._dryrun._journal import _summary

    return _summary(entry)


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
