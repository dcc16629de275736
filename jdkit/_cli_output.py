"""How the `jdkit` command prints: JSON, rich tables on a terminal, plain text in pipes."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any, Protocol

import betterproto2

from jdkit._display import Detail, Table, table
from jdkit._json import to_json_dict

if TYPE_CHECKING:
    from rich.console import Console


class Advance(Protocol):
    def __call__(self, n: int = 1, *, total: int | None = None) -> None: ...


def to_data(obj: Any) -> Any:
    """JSON-ready data: proto JSON (camelCase, defaults included) for messages."""
    if isinstance(obj, betterproto2.Message):
        return to_json_dict(obj, include_default_values=True)
    if isinstance(obj, Table):
        return obj.to_dicts()
    if isinstance(obj, Detail):
        return to_data(obj.obj)
    if isinstance(obj, list | tuple):
        return [to_data(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_data(v) for k, v in obj.items()}
    return obj


def _rich_console(stream: IO[str]) -> Console | None:
    """A rich console for `stream` when it is a terminal and rich is installed."""
    if not stream.isatty():
        return None
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=stream, soft_wrap=False, highlight=False)


class Output:
    """Where results, notes and progress go for one command run."""

    def __init__(
        self,
        *,
        json_mode: bool = False,
        wide: bool = False,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
    ) -> None:
        self.json_mode = json_mode
        self.wide = wide
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self.console = None if json_mode else _rich_console(self.stdout)
        self.err_console = _rich_console(self.stderr)

    def json(self, data: Any, *, one_line: bool = False) -> None:
        text = json.dumps(to_data(data), indent=None if one_line else 2)
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def result(self, obj: Any, *, title: str | None = None, data: Any = None) -> None:
        """Print what a command produced: JSON (`data`, else `obj`) or a table/detail view."""
        if self.json_mode:
            self.json(obj if data is None else data)
            return
        view = table(obj, title=title, wide=self.wide)
        if self.console is not None:
            self.console.print(view)
        else:
            self.stdout.write(view.to_text() + "\n")
            self.stdout.flush()

    def text(self, line: str) -> None:
        """A line of plain human output on stdout (not in JSON mode)."""
        if not self.json_mode:
            self.stdout.write(line + "\n")
            self.stdout.flush()

    def note(self, line: str) -> None:
        """Commentary on stderr (kept out of stdout so pipes get only results)."""
        if self.err_console is not None:
            self.err_console.print(line, style="dim", highlight=False, markup=False)
        else:
            self.stderr.write(line + "\n")
            self.stderr.flush()

    @contextlib.contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Advance]:
        """A progress bar on stderr (terminal only; silent in pipes and JSON mode)."""
        console = self.err_console
        if console is None or self.json_mode:

            def ignore(n: int = 1, *, total: int | None = None) -> None:
                return None

            yield ignore
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task(description, total=total)

            def advance(n: int = 1, *, total: int | None = None) -> None:
                if total is not None:
                    bar.update(task, total=total)
                bar.advance(task, n)

            yield advance

    @contextlib.contextmanager
    def waiting(self, description: str) -> Iterator[None]:
        """A spinner while one slow call runs (terminal only)."""
        console = self.err_console
        if console is None or self.json_mode:
            yield
            return
        with console.status(description):
            yield
