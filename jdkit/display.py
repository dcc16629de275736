"""Tables for JD objects in terminals, rich and Jupyter: `table(x)`, `show(x)`.

    from jdkit.display import show, table
    show(await jd.list_nodes())

See `jdkit._display` for what each kind of object turns into.
"""

from jdkit._display import Column, Detail, Table, show, table

__all__ = ["Column", "Detail", "Table", "show", "table"]
