"""Which tasks of one agent are running, and which wait for input: the runner's bookkeeping.

Kept apart from :mod:`agentmesh._private.task_runner`, which drives a task through its events,
so that the shared state (guarded by one lock, touched from Ray's threads and the event loop)
sits in one small place: a task id is taken once, only its sender cancels or answers it, and
waiting tasks are bounded in count and age.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import JsonValue

from agentmesh._private.schema import SkillSchema
from agentmesh._private.task_scope import TaskScope

__all__ = ["RunningTask", "TaskBook", "WaitingTask"]


@dataclass
class RunningTask:
    """A task past its checks: what it runs and for whom, and how to stop it.

    ``stop`` interrupts it (set once an async skill is running on the event loop; a sync skill
    cannot be interrupted). ``canceled`` marks a cancel by its sender: a CancelledError is ours
    to report only then; otherwise the caller went away.
    """

    task_id: str
    context_id: str
    skill: str
    args: dict[str, JsonValue]
    sender: str
    started: float
    spec: SkillSchema | None
    scope: TaskScope | None = None
    stop: Callable[[], object] | None = None
    canceled: bool = False

    @property
    def inline(self) -> bool:
        """Whether it runs best in the calling thread: a plain sync skill (no event loop)."""
        return self.spec is not None and not self.spec.is_async and not self.spec.streams


@dataclass
class WaitingTask:
    """A task parked on a question (input-required): what to run again, for whom, since when."""

    skill: str
    args: dict[str, JsonValue]
    sender: str
    field: str | None
    since: float
    scope: TaskScope | None = None
    approval: str | None = None  # the key of the one call the question asks to approve
    tool: str = ""


class TaskBook:
    """The running and waiting tasks of one agent, by id. Thread-safe."""

    def __init__(self, *, max_waiting: int, waiting_ttl_s: float) -> None:
        self.max_waiting = max_waiting
        self.waiting_ttl_s = waiting_ttl_s
        self._running: dict[str, RunningTask] = {}
        self._waiting: dict[str, WaitingTask] = {}
        self._lock = threading.Lock()

    def claim(self, task: RunningTask) -> bool:
        """Record ``task`` as running; False if its id is already running or waiting."""
        task_id = task.task_id
        with self._lock:
            taken = task_id in self._running or task_id in self._waiting
            if not taken:
                self._running[task_id] = task
        return not taken

    def cancel(self, task_id: str, sender: str) -> bool:
        """Cancel ``sender``'s running or waiting task; False if it has none of that id."""
        with self._lock:
            running = self._running.get(task_id)
            if running is not None and running.sender == sender and not running.canceled:
                running.canceled = True
                if running.stop is not None:
                    running.stop()
                return True
            waiting = self._waiting.get(task_id)
            if waiting is not None and waiting.sender == sender:
                del self._waiting[task_id]
                return True
        return False

    def forget(self, task: RunningTask) -> None:
        """The task ended (or never started): no longer running."""
        with self._lock:
            self._running.pop(task.task_id, None)

    def park(self, task_id: str, waiting: WaitingTask) -> None:
        """Keep a task waiting for input, dropping expired and (past the bound) oldest ones."""
        now = time.monotonic()
        with self._lock:
            for old in [t for t, w in self._waiting.items() if now - w.since > self.waiting_ttl_s]:
                del self._waiting[old]
            while len(self._waiting) >= self.max_waiting:  # oldest first (insertion order)
                del self._waiting[next(iter(self._waiting))]
            self._waiting[task_id] = waiting

    def take_waiting(self, task_id: str, sender: str) -> WaitingTask | None:
        """The waiting task ``sender`` answers, taken out; None if none (or expired)."""
        with self._lock:
            waiting = self._waiting.get(task_id)
            if waiting is None or waiting.sender != sender:
                return None
            del self._waiting[task_id]
        if time.monotonic() - waiting.since > self.waiting_ttl_s:
            return None
        return waiting
