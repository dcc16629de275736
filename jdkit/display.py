"""Tables for JD objects in terminals, rich and Jupyter: `table(x)`, `show(x)`.

    from jdkit.display import show, table
    show(await jd.list_nodes())

`table()` wraps what a call returned: a list reply (or a list of messages)
becomes a `Table` (a `list` subclass holding the original messages, with one
`Column` per shown field), one message a `Detail` (field / value). Both
render in a terminal (`str()`), in rich (`__rich__`, the `cli` extra) and in
Jupyter (`_repr_html_`, every value escaped); `show()` prints one now.
"""

from jdkit._display import Column, Detail, Table, show, table

__all__ = ["Column", "Detail", "Table", "show", "table"]
