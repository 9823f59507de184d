"""Where the events of the code running now go: a task's list, or a driver node's.

An agent's host sets the sink to its task's event list (``TaskScope.events``) when the task
starts; the list rides back to the caller in the task's final status, so the driver gathers
every agent's events without a Ray call of their own. The driver sets a fresh sink around
each skill call of a run node. Code that has something to record (the router's vets, a
model or tool call, a nested message) calls :func:`note`, which does nothing when no sink is
set: outside a recorded run nothing is kept.
"""

from __future__ import annotations

import itertools
import secrets
import time
from contextvars import ContextVar

from pydantic import JsonValue

from agentmesh._private.redact import redact
from agentmesh.recording import EventBody

__all__ = ["SINK", "Json", "event", "new_event_id", "note", "redacted"]

#: An event as the JSON object a ``RunEvent`` validates from. Events stay plain objects from
#: where they happen to the recording's file (a skill call makes several, and building a
#: pydantic model costs more than the rest of recording it); they are validated when read back.
Json = dict[str, JsonValue]
#: The events of the current task (host) or run node attempt (driver).
SINK: ContextVar[list[Json] | None] = ContextVar("agentmesh_events", default=None)
# Event ids: a random prefix per process and a counter (unique within a run across processes,
# and cheaper than a uuid4 per event: a run node makes several).
_PREFIX = secrets.token_hex(5)
_COUNTER = itertools.count(1)


def new_event_id() -> str:
    return f"{_PREFIX}{next(_COUNTER):x}"


def event(
    body: Json,
    *,
    agent: str | None = None,
    parent: str | None = None,
    why: str | None = None,
    run_id: str = "",
    node: str | None = None,
) -> Json:
    """A ``RunEvent`` as JSON (``body``: an ``EventBody`` as JSON, its ``kind`` first)."""
    return {
        "run_id": run_id, "id": new_event_id(), "seq": 0, "at": time.time(), "node": node,
        "agent": agent, "parent": parent, "why": why, "body": body,
    }  # fmt: skip


def note(
    body: Json | EventBody,
    *,
    agent: str | None,
    parent: str | None = None,
    why: str | None = None,
) -> str | None:
    """Record ``body`` in the current sink; its event id, or None when nothing records."""
    sink = SINK.get()
    if sink is None:
        return None
    if not isinstance(body, dict):
        body = body.model_dump(mode="json")
    recorded = event(body, agent=agent, parent=parent, why=why)  # the driver adds run and node
    sink.append(recorded)
    return str(recorded["id"])


def redacted(value: JsonValue) -> JsonValue:
    """``value`` with every string redacted (secrets and personal data), for the recording."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redacted(v) for v in value]
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    return value
