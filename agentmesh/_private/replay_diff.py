"""Comparing a replay's recording with the original's (see :mod:`agentmesh.replay`).

Events are grouped by kind, node and agent; within a group the i-th event of one recording is
compared with the i-th of the other by its *signature*: the event without what legitimately
changes from run to run (times, ids, latencies, sequence numbers, error messages, a call
being served from the recording; ids made at random inside texts, such as a quarantine id,
compare as a placeholder). A group whose signatures differ only in order is the same.
A group's first mismatch is a divergence; :func:`compare` puts first the one where the
execution broke away from the common course first.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

from pydantic import JsonValue

from agentmesh.recording import RunEvent
from agentmesh.replay import Divergence
from agentmesh.results import ErrorInfo

__all__ = ["compare", "signature"]

Group = tuple[str, str | None, str | None]


def _error(info: ErrorInfo | None) -> str | None:
    return info.type if info is not None else None


def signature(event: RunEvent) -> JsonValue:
    """What must be equal in a replay (see the module docstring)."""
    b = event.body
    if b.kind == "plan":
        return {"revision": b.revision, "plan": b.plan.model_dump(mode="json")}
    if b.kind == "node":
        return {"status": b.status.value, "attempt": b.attempt, "error": _error(b.error),
                "output": b.output}  # fmt: skip
    if b.kind == "message":
        return {"sender": b.sender, "recipient": b.recipient, "skill": b.skill,
                "reply": b.reply, "content": b.content, "error": _error(b.error)}  # fmt: skip
    if b.kind == "model_call":
        calls: JsonValue = list(b.tool_calls)
        return {"model": b.model, "asked": b.asked, "request": b.request, "text": b.text,
                "tool_calls": calls, "error": _error(b.error)}  # fmt: skip
    if b.kind == "tool_call":
        return {"tool": b.tool, "definition": b.definition, "arguments": b.arguments,
                "text": b.text, "is_error": b.is_error, "structured": b.structured,
                "error": _error(b.error)}  # fmt: skip
    if b.kind == "approval":
        return {"question": b.question, "tool": b.tool, "answer": b.answer}
    return {"decision": b.decision, "principal": b.principal, "target": b.target,
            "verdict": b.verdict, "rule": b.rule}  # fmt: skip


def _groups(events: Sequence[RunEvent]) -> dict[Group, list[RunEvent]]:
    groups: dict[Group, list[RunEvent]] = defaultdict(list)
    for event in events:
        if event.node is None and event.body.kind != "plan":
            continue  # the planner's own calls: a replay does not plan again
        agent = None if event.body.kind == "node" else event.agent
        groups[(event.body.kind, event.node, agent)].append(event)
    return groups


#: Ids made at random per run (quarantine ids, task ids): 32 hex digits, or a UUID.
_RANDOM_ID = re.compile(
    r"(?<![0-9a-f])(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    r"(?![0-9a-f])"
)


def _key(event: RunEvent) -> str:
    return _RANDOM_ID.sub("<id>", json.dumps(signature(event), sort_keys=True, default=str))


def compare(original: Sequence[RunEvent], replay: Sequence[RunEvent]) -> list[Divergence]:
    """Each group's first difference, the first where the execution diverged first.

    Both recordings agree up to the events before a group's first mismatch (matched events).
    A divergence ranks by how many matched events its own stream had before it (the
    recording's event when it has one, else the replay's): the fewer, the earlier it broke
    away from the common course, whichever order concurrent events were recorded in. Ties
    go to a divergence with a recorded event, then by its place in its stream.
    """
    before, after = _groups(original), _groups(replay)
    matched: set[str] = set()  # ids of matched events, either stream
    found: list[Divergence] = []
    for group in [*before, *(g for g in after if g not in before)]:
        old, new = before.get(group, []), after.get(group, [])
        old_keys, new_keys = [_key(e) for e in old], [_key(e) for e in new]
        if old_keys == new_keys or Counter(old_keys) == Counter(new_keys):
            matched.update(f"o{e.id}" for e in old)
            matched.update(f"r{e.id}" for e in new)
            continue
        index = next(
            (i for i, (a, b) in enumerate(zip(old_keys, new_keys, strict=False)) if a != b),
            min(len(old_keys), len(new_keys)),
        )
        matched.update(f"o{e.id}" for e in old[:index])
        matched.update(f"r{e.id}" for e in new[:index])
        kind, node, agent = group
        divergence = {"kind": kind, "node": node, "agent": agent, "index": index,
                      "expected": old[index] if index < len(old) else None,
                      "got": new[index] if index < len(new) else None}  # fmt: skip
        found.append(Divergence.model_validate(divergence))

    def rank(d: Divergence) -> tuple[int, int, int]:
        mine, stream, prefix = (
            (d.expected, original, "o") if d.expected is not None else (d.got, replay, "r")
        )
        assert mine is not None
        before_it = sum(f"{prefix}{e.id}" in matched for e in stream if e.seq < mine.seq)
        return before_it, d.expected is None, mine.seq

    return sorted(found, key=rank)
