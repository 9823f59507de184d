"""One agent as a router knows it: the actors of its replicas, its skills, and which replica a
new task goes to.

An agent declared with ``replicas = n`` runs as n actors (the same class and resources, each
placed by Ray on its own), so CPU-bound skills run in parallel across processes. A new task
goes to the replica with the fewest of this router's calls in flight (least-connections, per
router: each agent host and the driver balance their own traffic). A task that waits for input
stays on its replica: the router remembers which one and sends the answer there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ray.actor import ActorHandle

__all__ = ["Peer"]


@dataclass(eq=False)
class Peer:
    """An agent's replicas (at least one) and its skills' names."""

    handles: tuple[ActorHandle, ...]
    skills: frozenset[str]
    _load: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.handles:
            raise ValueError("a peer has at least one actor")
        self._load = [0] * len(self.handles)

    def __getstate__(self) -> dict[str, Any]:  # a copy in another process starts idle
        return {"handles": self.handles, "skills": self.skills}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.handles = state["handles"]
        self.skills = state["skills"]
        self._load = [0] * len(self.handles)

    @contextmanager
    def pick(self, replica: int | None = None) -> Iterator[tuple[int, ActorHandle]]:
        """A replica for one call (``replica``: that one), counted in flight while it runs."""
        if replica is None:
            replica = min(range(len(self._load)), key=self._load.__getitem__)
        self._load[replica] += 1
        try:
            yield replica, self.handles[replica]
        finally:
            self._load[replica] -= 1
