"""The flight recorder's default store: one SQLite file of run events.

A file of its own (``recordings.db`` beside ``runs.db``), not a table of the run store: the
run store is written at every node transition on the run's critical path, the recording in
the background, and a user may point the run store at a server database while keeping
recordings local (or the other way round).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Final

from pydantic import JsonValue

from agentmesh._private.sqlite_file import SqliteFile
from agentmesh._private.tool_vetting import STATE_DIR_ENV
from agentmesh.recording import Recorder, RunEvent

__all__ = ["SqliteRecorder", "default_recording_path", "open_recorder"]

#: ``PRAGMA application_id`` of an agentmesh recording ("AMFR").
APPLICATION_ID: Final = 0x414D4652
SCHEMA_VERSION: Final = 1
_SCHEMA = """
CREATE TABLE events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    node TEXT,
    at REAL NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
"""


_dumps = json.JSONEncoder(separators=(",", ":")).encode


def default_recording_path() -> Path:
    """``$AGENTMESH_STATE_DIR/recordings.db``, else ``./.agentmesh/recordings.db``."""
    state = os.environ.get(STATE_DIR_ENV)
    return (Path(state) if state else Path.cwd() / ".agentmesh") / "recordings.db"


class SqliteRecorder(SqliteFile):
    """Run events in one SQLite file (default :func:`default_recording_path`)."""

    schema = _SCHEMA
    application_id = APPLICATION_ID
    schema_version = SCHEMA_VERSION

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, timeout_s: float = 30.0
    ) -> None:
        super().__init__(
            path if path is not None else default_recording_path(), timeout_s=timeout_s
        )

    def append(self, events: list[RunEvent]) -> None:
        """Store ``events`` in one transaction, numbered after the run's last one."""
        self.append_json([e.model_dump(mode="json") for e in events])

    def append_json(self, events: list[dict[str, JsonValue]]) -> None:
        """:meth:`append` for events still JSON objects (the driver's fast path: they are
        validated when read back). One ``executemany``: this runs beside the event loop, and
        every Python step here holds the interpreter lock the loop needs."""
        if not events:
            return
        with self._write() as db:
            last: dict[str, int] = {}
            for run_id in {str(e["run_id"]) for e in events}:
                found = db.execute("SELECT max(seq) FROM events WHERE run_id = ?", (run_id,))
                last[run_id] = found.fetchone()[0] or 0
            rows = []
            for e in events:
                run_id = str(e["run_id"])
                last[run_id] += 1
                kind = e["body"]["kind"]  # type: ignore[index,call-overload]
                rows.append((run_id, last[run_id], e["id"], kind, e["node"], e["at"], _dumps(e)))
            db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def events(self, run_id: str) -> list[RunEvent]:
        with self._read() as db:
            rows = db.execute(
                "SELECT seq, event FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
        # the stored seq is the event's place in the run (the JSON was written before it)
        return [
            RunEvent.model_validate_json(row["event"]).model_copy(update={"seq": row["seq"]})
            for row in rows
        ]


def open_recorder(recorder: Recorder | str | os.PathLike[str] | None) -> Recorder:
    """A Recorder as given, a SQLite file at a path, or the default file (None)."""
    if recorder is None or isinstance(recorder, str | os.PathLike):
        return SqliteRecorder(recorder)
    return recorder
