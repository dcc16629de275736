"""The List* filters as SQL: an AND-ed WHERE clause that says when some
condition was too large for SQL and must be re-checked in Python."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jdkit._proto.api.label import Selector
from jdkit._server._selectors import MAX_SQL_ITEMS, sql_condition

#: Selectors beyond this many are checked in Python (bounds SQL size).
MAX_SQL_SELECTORS = 32


class Where:
    """Builds an AND-ed WHERE clause; `exact` turns False when some condition
    was too large for SQL and must be re-checked in Python."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.params: list[Any] = []
        self.exact = True

    def add(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.parts.append(sql)
        self.params.extend(params)

    def in_list(self, col: str, values: Sequence[Any]) -> None:
        if not values:
            return
        vals = list(dict.fromkeys(values))
        if len(vals) > MAX_SQL_ITEMS:
            self.exact = False
            return
        self.add(f"{col} IN ({', '.join('?' for _ in vals)})", vals)

    def selectors(self, sels: Sequence[Selector], owner_col: str, table: str) -> None:
        for i, sel in enumerate(sels):
            cond = sql_condition(sel, owner_col, table) if i < MAX_SQL_SELECTORS else None
            if cond is None:
                self.exact = False
                continue
            self.add(*cond)

    @property
    def sql(self) -> str:
        return (" WHERE " + " AND ".join(self.parts)) if self.parts else ""
