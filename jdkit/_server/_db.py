"""A small async database interface with two backends: SQLite and Postgres.

The server's SQL is written once, in a portable subset (TEXT/BIGINT/INTEGER
columns, `?` placeholders, no RETURNING, no upserts, no JSON operators), and
runs unchanged on both: the Postgres backend only rewrites `?` to `%s`.

SQLite runs on one connection; transactions are serialized by an asyncio
lock, BEGIN/COMMIT and large reads run in one worker thread, point statements
inline. Postgres uses
a few psycopg 3 async connections; write transactions are serialized by a
transaction-scoped advisory lock (so several servers may share one database),
which lets read-modify-write steps (revision numbers, counters) go without row
locks, which SQLite would not understand; reads run at REPEATABLE READ so the
statements of one read see one snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from jdkit._exceptions import ConfigError, InvalidArgumentError
from jdkit._redact import redact_url, scrub

log = logging.getLogger("jdkit.server")

Row = tuple[Any, ...]
Params = Sequence[Any]
T = TypeVar("T")


class IntegrityViolation(Exception):
    """A UNIQUE or PRIMARY KEY constraint refused a write (either backend)."""


def _check_params(params: Params) -> None:
    # Postgres TEXT cannot hold NUL; refuse it on both backends alike so the
    # caller gets the same answer whichever database is behind the server.
    for p in params:
        if isinstance(p, str) and "\x00" in p:
            raise InvalidArgumentError("text values must not contain NUL (\\x00) characters")


class Tx(ABC):
    """One transaction; every statement uses `?` placeholders."""

    @abstractmethod
    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run a statement; return the number of rows it changed."""

    @abstractmethod
    async def executemany(self, sql: str, rows: Iterable[Params]) -> None: ...

    @abstractmethod
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None


class Database(ABC):
    """Where the server keeps its state; `kind` is "sqlite" or "postgres"."""

    kind: str

    @abstractmethod
    def transaction(self, *, write: bool = False) -> contextlib.AbstractAsyncContextManager[Tx]:
        """Open a transaction; committed when the block ends normally."""

    @abstractmethod
    async def close(self) -> None: ...


# --------------------------------------------------------------------- SQLite


class _SQLiteTx(Tx):
    """Point statements run inline (microseconds; a thread hop would cost
    more than the work); `fetchall`, which may return 100k rows, runs in the
    worker thread. The transaction lock keeps the two from overlapping."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def execute(self, sql: str, params: Params = ()) -> int:
        _check_params(params)
        return self._db._inline(lambda c: c.execute(sql, params).rowcount)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        rows = list(rows)
        if len(rows) > 1000:  # checks and writes in the worker: off the event loop
            conn = self._db._conn

            def write() -> None:
                for r in rows:
                    _check_params(r)
                conn.executemany(sql, rows)

            await self._db._run(write)
        else:
            for r in rows:
                _check_params(r)
            self._db._inline(lambda c: c.executemany(sql, rows))

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        _check_params(params)
        row: Row | None = self._db._inline(lambda c: c.execute(sql, params).fetchone())
        return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        _check_params(params)
        conn = self._db._conn
        return await self._db._run(lambda: conn.execute(sql, params).fetchall())


class SQLiteDatabase(Database):
    kind = "sqlite"

    def __init__(self, executor: ThreadPoolExecutor, conn: sqlite3.Connection) -> None:
        self._executor = executor
        self._conn = conn
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> SQLiteDatabase:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jdkit-sqlite")

        def connect() -> sqlite3.Connection:
            if path != ":memory:":
                _create_private(path)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            if path != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            return conn

        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, connect)
        except sqlite3.Error as exc:
            executor.shutdown(wait=False)
            raise ConfigError("db", f"cannot open SQLite database {path!r}: {exc}") from exc
        return cls(executor, conn)

    def _inline(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self._conn)
        except sqlite3.IntegrityError as exc:
            raise IntegrityViolation(str(exc)) from exc

    async def _run(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except sqlite3.IntegrityError as exc:
            raise IntegrityViolation(str(exc)) from exc

    @contextlib.asynccontextmanager
    async def transaction(self, *, write: bool = False) -> AsyncIterator[Tx]:
        async with self._lock:
            conn = self._conn

            def rollback() -> None:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

            try:
                # BEGIN inside the try: a caller cancelled while the worker runs
                # BEGIN must still roll back. The one worker thread runs jobs in
                # order, so the ROLLBACK queued here runs after that BEGIN, and
                # before the next transaction's BEGIN, even if this task is
                # cancelled again while waiting for it.
                await self._run(lambda: conn.execute("BEGIN IMMEDIATE" if write else "BEGIN"))
                yield _SQLiteTx(self)
            except BaseException:
                await asyncio.shield(self._run(rollback))
                raise
            else:
                await asyncio.shield(self._run(lambda: conn.execute("COMMIT")))

    async def close(self) -> None:
        conn = self._conn
        await self._run(conn.close)
        self._executor.shutdown(wait=True)


def _create_private(path: str) -> None:
    """Create the database file 0600 before SQLite does (it would use 0644
    under the usual umask). SQLite gives the -wal and -shm files it creates
    later the database file's mode, so they are private too. An existing
    file is left as it is, with a warning if others may read it: it holds
    the sealed CSA key and every job spec."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = os.stat(path).st_mode & 0o777
        if mode & 0o077:
            log.warning(
                "database file %s is readable by others (mode %04o); chmod 600 it",
                path,
                mode,
            )
        return
    except OSError:
        return  # let sqlite3.connect report why the path cannot be opened
    os.close(fd)


# ------------------------------------------------------------------- Postgres

_QMARK = re.compile(r"\?")


def _pg_sql(sql: str) -> str:
    return _QMARK.sub("%s", sql.replace("%", "%%"))


class _PgTx(Tx):
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        _check_params(params)
        async with self._conn.cursor() as cur:
            await _pg_call(cur.execute(_pg_sql(sql), list(params)))
            return int(cur.rowcount)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        data = [list(r) for r in rows]
        for r in data:
            _check_params(r)
        if not data:
            return
        async with self._conn.cursor() as cur:
            await _pg_call(cur.executemany(_pg_sql(sql), data))

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        _check_params(params)
        async with self._conn.cursor() as cur:
            await _pg_call(cur.execute(_pg_sql(sql), list(params)))
            return list(await cur.fetchall())


async def _pg_call(aw: Any) -> Any:
    import psycopg

    try:
        return await aw
    except psycopg.errors.IntegrityError as exc:
        raise IntegrityViolation(str(exc)) from exc


_WRITE_LOCK = 0x6A646B6974  # "jdkit": the advisory lock key all writers take


class PostgresDatabase(Database):
    kind = "postgres"

    def __init__(self, url: str, conns: list[Any]) -> None:
        self._url = url
        self._idle: asyncio.Queue[Any] = asyncio.Queue()
        for c in conns:
            self._idle.put_nowait(c)
        self._all = list(conns)
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str, *, size: int = 4) -> PostgresDatabase:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError(
                "db", "a Postgres URL needs psycopg 3: pip install 'jdkit[postgres]'"
            ) from exc
        conns = []
        try:
            for _ in range(size):
                conns.append(await psycopg.AsyncConnection.connect(url, autocommit=True))
        except psycopg.Error as exc:
            for c in conns:
                await c.close()
            # libpq may quote the conninfo it could not parse: scrub the password
            why = scrub(str(exc), *_url_secrets(url))
            raise ConfigError(
                "db", f"cannot connect to Postgres at {redact_url(url)}: {why}"
            ) from None
        return cls(url, conns)

    async def _replace(self, conn: Any) -> Any:
        import psycopg

        self._all.remove(conn)
        with contextlib.suppress(Exception):
            await conn.close()
        new = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        self._all.append(new)
        return new

    @contextlib.asynccontextmanager
    async def transaction(self, *, write: bool = False) -> AsyncIterator[Tx]:
        lock = self._write_lock if write else contextlib.nullcontext()
        async with lock:
            conn = await self._idle.get()
            try:
                if conn.closed or conn.broken:
                    conn = await self._replace(conn)
                async with conn.transaction():
                    if write:
                        # serialize writers across every server on this database,
                        # not just this process: revision numbers and counters are
                        # read-modify-write
                        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
                    else:
                        # one snapshot per read, so a COUNT and its SELECT agree
                        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    yield _PgTx(conn)
            finally:
                self._idle.put_nowait(conn)

    async def close(self) -> None:
        for c in self._all:
            with contextlib.suppress(Exception):
                await c.close()


# ---------------------------------------------------------------------- open


_POSTGRES_SCHEME = re.compile(r"^postgres(?:ql)?(?:\+[a-z0-9_]+)?://", re.IGNORECASE)
_URL_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def is_postgres_url(db: str) -> bool:
    """`postgresql://`, `postgres://`, or either with a driver (`postgresql+psycopg://`)."""
    return bool(_POSTGRES_SCHEME.match(db))


def postgres_conninfo(url: str) -> str:
    """The URL as libpq takes it: `postgresql://`, the SQLAlchemy-style driver dropped."""
    return _POSTGRES_SCHEME.sub("postgresql://", url, count=1)


def _url_secrets(url: str) -> tuple[str, ...]:
    """The URL's password, as written and decoded, for scrubbing error text."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return ()
    if not password:
        return ()
    return (password, unquote(password))


def is_memory(db: str) -> bool:
    """True when `db` names a database that lives only in this process."""
    return not is_postgres_url(db) and sqlite_path(db) == ":memory:"


def sqlite_path(db: str) -> str:
    if db.startswith("sqlite://"):
        rest = db[len("sqlite://") :]
        # sqlite:///relative.db -> relative.db; sqlite:////abs.db -> /abs.db
        rest = rest[1:] if rest.startswith("/") else rest
        return rest or ":memory:"
    return db


async def open_database(db: str) -> Database:
    """`db` is ":memory:", a file path, `sqlite:///path` or a Postgres URL."""
    if not db:
        raise ConfigError("db", "empty; use ':memory:', a file path or a postgresql:// URL")
    if is_postgres_url(db):
        return await PostgresDatabase.open(postgres_conninfo(db))
    if _URL_SCHEME.match(db) and not db.startswith("sqlite://"):
        raise ConfigError(
            "db",
            f"unsupported database URL {redact_url(db)}; use ':memory:', a file path, "
            "sqlite:///path or postgresql://",
        )
    return await SQLiteDatabase.open(sqlite_path(db))
