"""How the `jdkit` command prints: proto JSON, rich tables on a terminal, plain text in pipes.

`--json` has one shape everywhere: protoc's JSON mapping (camelCase
`json_name`s, enums by name, RFC 3339 timestamps, unset fields left out).
A command that prints a JD message prints that message; a batch prints the
`BatchProposeJobResponse` JD would send; rows jdkit computes (rollout
status) use the same conventions.

The one exception to "unset fields left out": a list command's answer (a
`List*Response`) always has its list field, empty or not (`{"nodes": []}`),
so a script can read `.nodes` without a default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import enum
import json
import sys
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any, Protocol

import betterproto2

from jdkit._display import Detail, Table, table
from jdkit._json import json_name, to_json_dict
from jdkit._tasks import NodeRollout, Rollout, RolloutStatus
from jdkit.pb import job

if TYPE_CHECKING:
    from rich.console import Console


class Advance(Protocol):
    def __call__(self, n: int = 1, *, total: int | None = None) -> None: ...


def rollout_response(rollout: Rollout) -> job.BatchProposeJobResponse:
    """A rollout as the BatchProposeJob answer it sums up (one shape for all batches)."""
    return job.BatchProposeJobResponse(
        success_responses={
            n: job.ProposeJobResponse(proposal=p) for n, p in rollout.proposals.items()
        },
        failed_responses={
            n: job.ProposeJobFailure(error_message=e) for n, e in rollout.failed.items()
        },
    )


def _scalar(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        return value.astimezone(_dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, betterproto2.Enum):
        names = getattr(type(value), "betterproto_value_to_renamed_proto_names", None)
        return names().get(int(value), int(value)) if names else value.name
    if isinstance(value, enum.Enum):
        return value.name
    return value


def _row(obj: Any) -> dict[str, Any]:
    """A jdkit dataclass in proto-JSON style: camelCase, unset/zero values left out."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value in (None, "", 0, False) or (isinstance(value, enum.IntEnum) and value == 0):
            continue
        out[json_name(f.name)] = _scalar(value)
    return out


def to_data(obj: Any) -> Any:
    """JSON-ready data in the one `--json` shape."""
    if isinstance(obj, betterproto2.Message):
        data = to_json_dict(obj)
        name = type(obj).__name__
        if name.startswith("List") and name.endswith("Response"):
            for f in dataclasses.fields(obj):  # type: ignore[arg-type]
                if isinstance(getattr(obj, f.name), list):
                    data.setdefault(json_name(f.name), [])
        return data
    if isinstance(obj, Rollout):
        return to_json_dict(rollout_response(obj))
    if isinstance(obj, RolloutStatus):
        return {"rows": [_row(r) for r in obj]}
    if isinstance(obj, NodeRollout):
        return _row(obj)
    if isinstance(obj, Table):
        return [to_data(r) for r in obj]
    if isinstance(obj, Detail):
        return to_data(obj.obj)
    if isinstance(obj, list | tuple):
        return [to_data(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_data(v) for k, v in obj.items()}
    return _scalar(obj)


def _rich_console(stream: IO[str]) -> Console | None:
    """A rich console for `stream` when it is a terminal and rich is installed."""
    isatty = getattr(stream, "isatty", None)
    if not callable(isatty) or not isatty():
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
        view = obj if isinstance(obj, Table | Detail) else table(obj, title=title, wide=self.wide)
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
