"""Tables for JD objects in terminals, rich and Jupyter: `table(x)`, `show(x)`.

    from jdkit.display import show, table
    show(await jd.list_nodes())

`table()` wraps what a call returned: a list reply (or a list of messages)
becomes a `Table` (a `list` subclass holding the original messages, with one
`Column` per shown field), one message a `Detail` (field / value); a
`Rollout` and a `RolloutStatus` become tables too. Both render as plain
text with every column (`str()`, and whatever `show()` writes to a pipe or
file), in rich fitted to the terminal (the `cli` extra; unimportant columns
are left out before an ID, status or revision is cut) and in Jupyter
(`_repr_html_`, every value escaped); `show(x, file=...)` prints one now.
"""

from jdkit import _exports
from jdkit._display import Column, Detail, Table, show, table

__all__ = ["Column", "Detail", "Table", "show", "table"]


_exports.publish_all(globals())  # help(), reprs, tracebacks name this module; dir()
