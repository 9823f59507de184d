"""Provenance: a trust label on every message part, tool result and model output.

A :class:`Label` says how far data may be trusted and where it came from. Labels only ever get
less trusted as data mixes: model output made from untrusted input is untrusted, and anything
assembled from several parts carries the least trusted label (:meth:`Label.join`). The security
actor reads the label of the task a tool call is made in, so text injected by the outside world
(a web page, an e-mail, a remote agent's reply) cannot steer a side-effecting call on its own.

Labels ride on A2A parts under ``part.metadata["agentmesh.provenance"]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any

from a2a.types import Message, Part, Task
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "PROVENANCE_KEY",
    "Label",
    "Trust",
    "clear_part_label",
    "join_all",
    "message_label",
    "part_label",
    "set_part_label",
    "task_label",
]

#: The key of a part's label in ``Part.metadata``.
PROVENANCE_KEY = "agentmesh.provenance"
#: At most this many sources are kept: a label must stay small on every hop.
MAX_SOURCES = 16

Source = Annotated[str, StringConstraints(min_length=1, max_length=160, pattern=r"^\S+$")]


class Trust(StrEnum):
    """How far data may steer what the mesh does."""

    TRUSTED = "trusted"
    UNTRUSTED = "untrusted"


def _bounded(sources: tuple[str, ...]) -> tuple[str, ...]:
    """Sorted, unique, and at most MAX_SOURCES (the rest folds into one marker)."""
    unique = sorted(set(sources))
    if len(unique) > MAX_SOURCES:
        unique = [*unique[: MAX_SOURCES - 1], "more"]
    return tuple(unique)


class Label(BaseModel):
    """The trust of some data and the sources it was made from (``"user"``, ``"user:alice"``,
    ``"agent:writer"``, ``"tool:mail.read_inbox"``, ``"remote:calc"``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trust: Trust
    sources: Annotated[tuple[Source, ...], Field(min_length=1), AfterValidator(_bounded)]

    @property
    def trusted(self) -> bool:
        return self.trust is Trust.TRUSTED

    def join(self, *others: Label) -> Label:
        """The label of data made from this and ``others``: the least trusted wins, the
        sources are united."""
        labels = (self, *others)
        trust = (
            Trust.TRUSTED if all(lab.trust is Trust.TRUSTED for lab in labels) else Trust.UNTRUSTED
        )
        return Label(trust=trust, sources=tuple(s for lab in labels for s in lab.sources))

    # --- one constructor per kind of source --------------------------------------------------

    @classmethod
    def user(cls, principal: str = "user") -> Label:
        """The user's goal or input (``"user"`` or ``"user:<name>"``): trusted."""
        return cls(trust=Trust.TRUSTED, sources=(principal,))

    @classmethod
    def agent(cls, name: str) -> Label:
        """A mesh agent's own output, before any untrusted input: trusted."""
        return cls(trust=Trust.TRUSTED, sources=(f"agent:{name}",))

    @classmethod
    def tool(cls, tool: str, *, trusted: bool = False) -> Label:
        """A tool's result: the outside world, so untrusted unless the policy says otherwise."""
        trust = Trust.TRUSTED if trusted else Trust.UNTRUSTED
        return cls(trust=trust, sources=(f"tool:{tool}",))

    @classmethod
    def remote(cls, name: str) -> Label:
        """A remote A2A agent's reply: untrusted."""
        return cls(trust=Trust.UNTRUSTED, sources=(f"remote:{name}",))

    @classmethod
    def unknown(cls, source: str) -> Label:
        """Data that came without a label: untrusted (fail safe)."""
        return cls(trust=Trust.UNTRUSTED, sources=(source,))


def join_all(labels: Iterable[Label]) -> Label | None:
    """The join of ``labels``, or None when there are none."""
    items = list(labels)
    return items[0].join(*items[1:]) if items else None


def part_label(part: Part) -> Label | None:
    """The label stamped on an A2A part, or None if it has none (or a malformed one)."""
    fields = part.metadata.fields
    if PROVENANCE_KEY not in fields:
        return None
    raw = fields[PROVENANCE_KEY]
    if raw.WhichOneof("kind") != "struct_value":
        return None
    inner = raw.struct_value.fields
    trust = inner["trust"].string_value if "trust" in inner else ""
    sources = (
        [v.string_value for v in inner["sources"].list_value.values] if "sources" in inner else []
    )
    try:
        return Label(trust=Trust(trust), sources=tuple(sources))
    except ValueError:  # a malformed label counts as none: the reader then fails safe
        return None


def set_part_label(part: Part, label: Label) -> None:
    """Stamp ``label`` on ``part`` (in place)."""
    value = part.metadata.fields[PROVENANCE_KEY].struct_value
    value.Clear()
    value.fields["trust"].string_value = label.trust.value
    sources: Any = value.fields["sources"].list_value
    sources.SetInParent()
    sources.extend(list(label.sources))


def clear_part_label(part: Part) -> None:
    """Remove any label from ``part`` (a claim from outside the mesh is not believed)."""
    if PROVENANCE_KEY in part.metadata.fields:
        del part.metadata.fields[PROVENANCE_KEY]


def message_label(message: Message) -> Label | None:
    """The join of a message's part labels; None if no part carries one."""
    return join_all(lab for part in message.parts if (lab := part_label(part)) is not None)


def task_label(task: Task) -> Label | None:
    """The join of the labels on a task's artifact parts; None if none carries one.

    An unlabelled part among labelled ones makes the whole untrusted (it came from nowhere).
    """
    parts = [part for artifact in task.artifacts for part in artifact.parts]
    labels = [part_label(part) for part in parts]
    if not any(labels):
        return None
    known = [lab if lab is not None else Label.unknown("unlabelled") for lab in labels]
    return join_all(known)
