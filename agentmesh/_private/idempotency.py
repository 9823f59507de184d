"""Idempotency keys for side-effecting tool calls made inside a run, and the ledger they key.

A node that is retried, or re-run by ``Mesh.resume_run`` after its driver died, calls its tools
again. A read is harmless; a payment is not. So every tool call made while running a node gets
a key derived from what identifies that call independently of the attempt: the run, the node,
the path of nested skill calls that led to it, the call's ordinal among identical calls
(same tool, same canonical arguments) in its task, the tool and the arguments. Attempts of a
node that make the same calls in the same order derive the same keys.

Where the keys go:

- The executor's send stamps the run and node on the node's skill call (in the message's
  ``agentmesh`` metadata, which only routers write); a task's nested skill calls carry it on,
  each a level deeper in the path. The agent's host derives the key of each tool call.
- The security actor's tool gateway, which makes every MCP call, sends the key of a
  side-effecting call (by the policy's tool label) in the request's ``_meta`` under
  ``io.agentmesh/idempotency-key``, so a server can refuse to repeat it; and consults the run
  store's ledger first: a key already there returns the recorded result, the tool not called.
- The ledger lives in the run store, which may be a file only the driver's machine can open,
  while the gateway may run on another node. So the mesh starts one small ledger actor pinned
  to the driver's node holding a copy of the store (:mod:`agentmesh._private.effect_ledger`),
  and each gateway records every completed side-effecting call there (one Ray round trip).
  Lookups mostly need no trip: each attempt of a node is sent with the keys the ledger already
  holds for that node (read from the store by the driver), so only a call whose key is among
  them fetches its recorded result; a first attempt never asks.

Limits: an effect whose result never reached the ledger (the server did it, then the process
holding the call died before the ledger write) happens again on resume unless the server
honours the key. Tool calls are keyed only inside runs (``Mesh.call`` has no node). A node
that makes different calls on another attempt (a model that answers differently) gets
different keys, and its effects are not deduplicated.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from a2a.types import Message
from pydantic import BaseModel, ValidationError

from agentmesh._private.grants import canonical
from agentmesh.errors import UserError
from agentmesh.protocols.a2a_tasks import META_KEY

__all__ = [
    "IDEMPOTENCY_META",
    "RUN_NODE",
    "CallKey",
    "IdempotencyScope",
    "read_idempotency",
    "stamp_idempotency",
]

#: The key of a side-effecting call in the MCP request's ``_meta``.
IDEMPOTENCY_META: Final = "io.agentmesh/idempotency-key"
_FIELD = "durable"

#: The plan node whose skill call is being sent: the executor sets it around each node (so
#: its retry loop stays as it is) and the mesh's send stamps the call with it.
RUN_NODE: contextvars.ContextVar[str] = contextvars.ContextVar("agentmesh_run_node")


class CallKey(BaseModel):
    """One tool call's idempotency key and the run node it belongs to."""

    run_id: str
    step_id: str
    key: str
    recorded: bool | None = None
    """Whether the ledger held this key when the node's attempt started (None: unknown)."""


class _Stamp(BaseModel):
    run_id: str
    step_id: str
    path: list[str] = []
    recorded: list[str] | None = None
    replay: str | None = None


@dataclass
class IdempotencyScope:
    """The run node a task works for, and the ordinals of the calls it has made so far."""

    run_id: str
    step_id: str
    path: tuple[str, ...] = ()
    """The nested skill calls from the node's own task down to this one (``agent.skill#n``)."""
    recorded: frozenset[str] | None = None
    """The node's keys the ledger held when this attempt started (None: not known)."""
    replay: str | None = None
    """In a replay (``Mesh.replay``): the name of the tape actor serving recorded answers
    (see :mod:`agentmesh._private.replay_tape`)."""
    _seen: Counter[str] = field(default_factory=Counter, repr=False)

    def _ordinal(self, what: str) -> int:
        n = self._seen[what]
        self._seen[what] += 1
        return n

    def key(self, tool: str, args: dict[str, Any]) -> CallKey:
        """The key of this task's next call of ``tool`` with ``args`` (counted)."""
        payload = canonical(args)
        ordinal = self._ordinal(f"tool\0{tool}\0{payload}")
        material = json.dumps([self.run_id, self.step_id, list(self.path), ordinal, tool, payload])
        digest = hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()
        key = f"{self.run_id}:{self.step_id}:{digest[:40]}"
        recorded = None if self.recorded is None else key in self.recorded
        return CallKey(run_id=self.run_id, step_id=self.step_id, key=key, recorded=recorded)

    def child(self, agent: str, skill: str, args: dict[str, Any]) -> IdempotencyScope:
        """The scope of a nested skill call this task makes (counted like a tool call)."""
        ordinal = self._ordinal(f"skill\0{agent}.{skill}\0{canonical(args)}")
        path = (*self.path, f"{agent}.{skill}#{ordinal}")
        return IdempotencyScope(self.run_id, self.step_id, path, self.recorded, self.replay)

    def fresh(self) -> IdempotencyScope:
        """The same place with no calls counted (a resumed task runs from its start again)."""
        return IdempotencyScope(self.run_id, self.step_id, self.path, self.recorded, self.replay)


def stamp_idempotency(message: Message, scope: IdempotencyScope) -> None:
    """Write the scope on a skill call (beside the grant, in metadata only routers write)."""
    recorded = sorted(scope.recorded) if scope.recorded is not None else None
    stamp = _Stamp(
        run_id=scope.run_id,
        step_id=scope.step_id,
        path=list(scope.path),
        recorded=recorded,
        replay=scope.replay,
    )
    message.metadata.fields[META_KEY].struct_value.fields[
        _FIELD
    ].string_value = stamp.model_dump_json()


def read_idempotency(message: Message) -> IdempotencyScope | None:
    """The scope a skill call carries; None outside a run."""
    fields = message.metadata.fields
    if META_KEY not in fields:
        return None
    inner = fields[META_KEY].struct_value.fields
    if _FIELD not in inner:
        return None
    try:
        stamp = _Stamp.model_validate_json(inner[_FIELD].string_value)
    except ValidationError as exc:
        raise UserError(f"the skill call carries a malformed run stamp: {exc}") from None
    recorded = frozenset(stamp.recorded) if stamp.recorded is not None else None
    return IdempotencyScope(stamp.run_id, stamp.step_id, tuple(stamp.path), recorded, stamp.replay)
