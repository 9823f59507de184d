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
from agentmesh.recording import EventBody, RunEvent

__all__ = ["SINK", "SinkEvent", "as_json", "new_event_id", "note", "redacted"]

#: An event in a sink: noted here, or a callee task's as the JSON object its status carried.
SinkEvent = RunEvent | dict[str, JsonValue]
#: The events of the current task (host) or run node attempt (driver).
SINK: ContextVar[list[SinkEvent] | None] = ContextVar("agentmesh_events", default=None)
# Event ids: a random prefix per process and a counter (unique within a run across processes,
# and cheaper than a uuid4 per event: a run node makes several).
_PREFIX = secrets.token_hex(5)
_COUNTER = itertools.count(1)


def new_event_id() -> str:
    return f"{_PREFIX}{next(_COUNTER):x}"


def as_json(events: list[SinkEvent]) -> list[dict[str, JsonValue]]:
    """A sink's events as JSON objects (how a task's final status carries them)."""
    return [e.model_dump(mode="json") if isinstance(e, RunEvent) else e for e in events]


def note(
    body: EventBody,
    *,
    agent: str | None,
    parent: str | None = None,
    why: str | None = None,
    event_id: str | None = None,
) -> str | None:
    """Record ``body`` in the current sink; its event id, or None when nothing records.

    Built without validation (``model_construct``): this is on every call's path, the fields
    are the mesh's own, and a recording is validated when it is read back."""
    sink = SINK.get()
    if sink is None:
        return None
    event = RunEvent.model_construct(
        run_id="",  # the driver knows the run and the node
        id=event_id or new_event_id(),
        at=time.time(),
        agent=agent,
        parent=parent,
        why=why,
        body=body,
    )
    sink.append(event)
    return event.id


def redacted(value: JsonValue) -> JsonValue:
    """``value`` with every string redacted (secrets and personal data), for the recording."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redacted(v) for v in value]
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    return value
