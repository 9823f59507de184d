"""The default run store: one SQLite file (stdlib ``sqlite3``), shared by processes.

Why SQLite: it is embedded (nothing to run), a crash of the writer never leaves half a
transaction behind, and WAL mode lets the driver checkpoint nodes while the ledger's actor
records tool effects and ``agentmesh runs`` reads, all at once. The file handling (a
connection per thread, ``synchronous=FULL`` commits, the schema and a foreign file refused) is
:mod:`agentmesh._private.sqlite_file`'s; the store goes to the ledger's actor as its path.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence
from typing import Final

from pydantic import JsonValue, TypeAdapter, ValidationError

from agentmesh._private.sqlite_file import SqliteFile
from agentmesh.errors import RunStoreError, UnknownRunError
from agentmesh.planner import Plan
from agentmesh.protocols.mcp import ToolResult
from agentmesh.results import PlanRevision
from agentmesh.runs import (
    LedgerEntry,
    NodeCheckpoint,
    RunInfo,
    RunState,
    RunSummary,
    default_runs_path,
)

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SqliteRunStore"]

#: ``PRAGMA application_id`` of an agentmesh run store ("AMRS").
APPLICATION_ID: Final = 0x414D5253
SCHEMA_VERSION: Final = 1
_REVISIONS = TypeAdapter(list[PlanRevision])
#: Each run's model usage, summed in SQLite over its nodes' records (``NodeRecord.usage``).
_USAGE_COLUMNS = ("model_calls", "tokens", "cost", "cache_hits", "saved_tokens")
_USAGE_BY_RUN = """
SELECT n.run_id,
    total(json_extract(m.value, '$.calls')) AS model_calls,
    total(json_extract(m.value, '$.prompt_tokens') + json_extract(m.value, '$.completion_tokens'))
        AS tokens,
    total(json_extract(m.value, '$.cost')) AS cost,
    total(json_extract(m.value, '$.cache_hits')) AS cache_hits,
    total(json_extract(m.value, '$.saved_tokens')) AS saved_tokens
FROM nodes n, json_each(n.record, '$.usage.models') m
GROUP BY n.run_id
"""

_SCHEMA = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    goal TEXT NOT NULL,
    plan TEXT NOT NULL,
    state TEXT NOT NULL,
    factory TEXT,
    output TEXT,
    revisions TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX runs_by_update ON runs (updated_at);
CREATE TABLE nodes (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    step_id TEXT NOT NULL,
    status TEXT NOT NULL,
    record TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (run_id, step_id)
);
CREATE TABLE ledger (
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    result TEXT NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE INDEX ledger_by_node ON ledger (run_id, step_id);
"""


class SqliteRunStore(SqliteFile):
    """Runs, node checkpoints and the tool-effect ledger in one SQLite file.

    Args:
        path: the database file (created with its folder when missing); default
            ``$AGENTMESH_STATE_DIR/runs.db``, else ``./.agentmesh/runs.db``.
        timeout_s: how long an operation waits for another writer's lock.
    """

    schema = _SCHEMA
    application_id = APPLICATION_ID
    schema_version = SCHEMA_VERSION

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, timeout_s: float = 30.0
    ) -> None:
        super().__init__(path if path is not None else default_runs_path(), timeout_s=timeout_s)

    def __repr__(self) -> str:
        return f"SqliteRunStore({str(self.path)!r})"

    # --- runs --------------------------------------------------------------------------------

    def create_run(self, run: RunInfo) -> None:
        with self._write() as db:
            taken = db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run.run_id,)).fetchone()
            if taken:
                raise RunStoreError(f"run id {run.run_id!r} is already in {self.location}")
            db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.run_id,
                    run.goal,
                    run.plan.model_dump_json(),
                    run.state.value,
                    run.factory,
                    json.dumps(run.output),
                    _REVISIONS.dump_json(run.revisions).decode(),
                    run.created_at,
                    run.updated_at,
                ),
            )
            for node in run.nodes:
                self._put_node(db, run.run_id, node, run.updated_at)

    def save_nodes(self, run_id: str, nodes: Sequence[NodeCheckpoint]) -> None:
        now = time.time()
        with self._write() as db:
            self._touch(db, run_id, now)
            for node in nodes:
                self._put_node(db, run_id, node, now)

    def set_state(self, run_id: str, state: RunState, *, output: JsonValue = None) -> None:
        now = time.time()
        with self._write() as db:
            self._touch(db, run_id, now)
            db.execute(
                "UPDATE runs SET state = ?, output = ? WHERE run_id = ?",
                (state.value, json.dumps(output), run_id),
            )

    def revise_plan(
        self, run_id: str, plan: Plan, revision: PlanRevision, nodes: list[NodeCheckpoint]
    ) -> None:
        now = time.time()
        with self._write() as db:
            self._touch(db, run_id, now)
            row = db.execute("SELECT revisions FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            try:
                revisions = [*_REVISIONS.validate_json(row["revisions"]), revision]
            except ValidationError as exc:
                raise RunStoreError(
                    f"run {run_id!r} in {self.location} is damaged: {exc}"
                ) from None
            db.execute(
                "UPDATE runs SET plan = ?, revisions = ?, state = ? WHERE run_id = ?",
                (
                    plan.model_dump_json(),
                    _REVISIONS.dump_json(revisions).decode(),
                    RunState.RUNNING.value,
                    run_id,
                ),
            )
            db.execute("DELETE FROM nodes WHERE run_id = ?", (run_id,))
            for node in nodes:
                self._put_node(db, run_id, node, now)

    def get_run(self, run_id: str) -> RunInfo:
        with self._read() as db:
            row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise UnknownRunError(run_id, store=self.location)
            stored = db.execute(
                "SELECT step_id, record FROM nodes WHERE run_id = ?", (run_id,)
            ).fetchall()
        try:
            plan = Plan.model_validate_json(row["plan"])
            records = {step: NodeCheckpoint.model_validate_json(rec) for step, rec in stored}
            return RunInfo(
                run_id=row["run_id"],
                goal=row["goal"],
                plan=plan,
                state=RunState(row["state"]),
                factory=row["factory"],
                output=json.loads(row["output"]) if row["output"] is not None else None,
                created_at=row["created_at"],
                updated_at=row["updated_at"],
                nodes=[records[s.id] for s in plan.steps if s.id in records],
                revisions=_REVISIONS.validate_json(row["revisions"]),
            )
        except (ValidationError, ValueError) as exc:
            raise RunStoreError(f"run {run_id!r} in {self.location} is damaged: {exc}") from None

    def list_runs(self) -> list[RunSummary]:
        with self._read() as db:
            rows = db.execute(
                "SELECT r.run_id, r.goal, r.plan, r.state, r.factory, r.created_at,"
                " r.updated_at, (SELECT count(*) FROM nodes n WHERE n.run_id = r.run_id"
                " AND n.status = 'succeeded') AS done FROM runs r"
                " ORDER BY r.updated_at DESC, r.run_id"
            ).fetchall()
            used = {row["run_id"]: row for row in db.execute(_USAGE_BY_RUN).fetchall()}
        summaries = []
        for row in rows:
            try:
                steps = len(json.loads(row["plan"])["steps"])
                state = RunState(row["state"])
            except (ValueError, KeyError, TypeError) as exc:
                raise RunStoreError(f"run {row['run_id']!r} is damaged: {exc}") from None
            summaries.append(
                RunSummary(
                    run_id=row["run_id"],
                    goal=row["goal"],
                    state=state,
                    nodes_done=row["done"],
                    nodes_total=steps,
                    created_at=row["created_at"],
                    updated_at=row["updated_at"],
                    factory=row["factory"],
                    **{k: used[row["run_id"]][k] for k in _USAGE_COLUMNS if row["run_id"] in used},
                )
            )
        return summaries

    # --- the effect ledger -------------------------------------------------------------------

    def effect_keys(self, run_id: str, step_id: str) -> list[str]:
        with self._read() as db:
            rows = db.execute(
                "SELECT key FROM ledger WHERE run_id = ? AND step_id = ? ORDER BY key",
                (run_id, step_id),
            ).fetchall()
        return [row["key"] for row in rows]

    def get_effect(self, key: str) -> LedgerEntry | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM ledger WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            result = ToolResult.model_validate_json(row["result"])
        except ValidationError as exc:
            raise RunStoreError(f"ledger entry {key!r} is damaged: {exc}") from None
        return LedgerEntry(
            key=row["key"],
            run_id=row["run_id"],
            step_id=row["step_id"],
            tool=row["tool"],
            result=result,
            recorded_at=row["recorded_at"],
        )

    def put_effect(self, entry: LedgerEntry) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO ledger VALUES (?, ?, ?, ?, ?, ?)",
                (
                    entry.key,
                    entry.run_id,
                    entry.step_id,
                    entry.tool,
                    entry.result.model_dump_json(),
                    entry.recorded_at,
                ),
            )

    # --- internals ---------------------------------------------------------------------------

    @staticmethod
    def _put_node(db: sqlite3.Connection, run_id: str, node: NodeCheckpoint, now: float) -> None:
        db.execute(
            "INSERT OR REPLACE INTO nodes VALUES (?, ?, ?, ?, ?)",
            (run_id, node.step_id, node.status.value, node.model_dump_json(), now),
        )

    def _touch(self, db: sqlite3.Connection, run_id: str, now: float) -> None:
        cursor = db.execute("UPDATE runs SET updated_at = ? WHERE run_id = ?", (now, run_id))
        if cursor.rowcount == 0:
            raise UnknownRunError(run_id, store=self.location)
