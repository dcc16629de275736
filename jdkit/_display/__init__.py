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

Layout: `_cells` (a value as a cell's text, status colours), `_columns`
(`Column`, header priorities, the columns of each kind of JD object), `_table`
(`Table` and `Detail`: text, rich fitted to a width, HTML), `_show`
(`table()` picks the view for a reply, `show()` prints it).
"""

from jdkit import _exports
from jdkit._display._columns import Column
from jdkit._display._show import show, table
from jdkit._display._table import Detail, Table

__all__ = ["Column", "Detail", "Table", "show", "table"]

# their public homes (jdkit._exports), as they load: `jdkit.table()` returns a Table
_exports.publish_lazy(globals())  # show, table: jdkit's
_exports.publish("jdkit.display", Column, Detail, Table)
