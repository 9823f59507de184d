"""One SQLite file of agentmesh's own: a connection per thread, the schema made on first use,
and a file that is not ours refused (RunStoreError) and left untouched.

Each thread keeps its own connection (sqlite3 connections belong to a thread; writes come from
a worker thread pool): opening one per operation would make every close the last one, which
folds the WAL back into the database with several fsyncs (12 ms a write here, against about
1 ms). Connections are not pickled, so a store goes to another process as its path. Commits
are ``synchronous=FULL``: a write that returned survives a crash of the process and of the
machine. The file is marked as ours (``PRAGMA application_id``) with a schema version
(``PRAGMA user_version``); another program's database, a newer schema or a file that is not
SQLite at all raises RunStoreError.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from agentmesh.errors import RunStoreError

__all__ = ["SqliteFile"]


class SqliteFile:
    """Base of a store in one SQLite file; subclasses give their schema, id and version."""

    schema: ClassVar[str]
    application_id: ClassVar[int]
    schema_version: ClassVar[int]

    def __init__(self, path: str | os.PathLike[str], *, timeout_s: float = 30.0) -> None:
        self.path = Path(path).resolve()
        self.timeout_s = timeout_s
        self._ready = False
        self._local = threading.local()

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    @property
    def location(self) -> str:
        return str(self.path)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection; every sqlite error comes out as RunStoreError (and the
        connection is dropped, so a broken one is not used again)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        try:
            if db is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
                db.row_factory = sqlite3.Row
                db.execute("PRAGMA synchronous = FULL")
                if not self._ready:
                    self._prepare(db)
                self._local.db = db
            yield db
        except (sqlite3.Error, OSError) as exc:
            self._local.db = None
            if db is not None:
                db.close()
            raise RunStoreError(f"run store {self.location}: {exc}") from None

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._connection() as db:
            yield db

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, taken with the write lock at once (no upgrade deadlocks)."""
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _prepare(self, db: sqlite3.Connection) -> None:
        """Check the file is our store (creating the schema in an empty one) and turn on WAL."""
        if not self._ours(db):
            db.execute("BEGIN IMMEDIATE")  # another process may be creating it right now
            try:
                if not self._ours(db):
                    for statement in filter(str.strip, self.schema.split(";")):
                        db.execute(statement)  # not executescript: it would commit first
                    db.execute(f"PRAGMA application_id = {self.application_id}")
                    db.execute(f"PRAGMA user_version = {self.schema_version}")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            if db.in_transaction:
                db.execute("COMMIT")
        db.execute("PRAGMA journal_mode = WAL")
        self._ready = True

    def _ours(self, db: sqlite3.Connection) -> bool:
        """True if the file is a run store of our schema, False if it is empty; raises
        RunStoreError for anything else (reading the header fails on a file that is not
        SQLite at all)."""
        app = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if app == self.application_id:
            if version > self.schema_version:
                raise RunStoreError(
                    f"{self.location} has run store schema {version}; this agentmesh reads "
                    f"up to {self.schema_version}: upgrade agentmesh"
                )
            return True
        objects = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app == 0 and objects == 0:
            return False
        raise RunStoreError(
            f"{self.location} is another program's SQLite database (application id "
            f"{app:#x}, {objects} objects), not an agentmesh run store: give another path"
        )
