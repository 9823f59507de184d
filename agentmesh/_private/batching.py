"""Requests waiting for a model backend, run together where the backend batches them.

A model service runs its backend from one thread at a time (``lock``). A request that may
share a batch (the backend's ``can_batch``) joins the queue of those waiting, then waits for
the backend; the thread that gets it takes its own request and up to ``max_batch - 1`` more
from the queue, oldest first, and runs them as one ``generate_batch`` call. Each waiting
thread then finds its own answer (or its own copy of the batch's error) and returns it, or,
when no batch took its request meanwhile, runs the next batch itself. Nothing is dropped: a
request taken into a batch always gets an answer or an error.

A thread that finds the backend idle waits up to ``gather_s`` (a few milliseconds, short
against any generation) for others that arrive with it, so that requests sent at once share
one batch instead of the first running alone. Requests that cannot batch, and streams, take
the backend alone.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass

from agentmesh.errors import ModelError
from agentmesh.inference import GenerateRequest, GenerateResponse

__all__ = ["GATHER_S", "BatchQueue"]

#: How long a request that finds the backend idle waits for others to batch with.
GATHER_S = 0.005


@dataclass(eq=False)
class _Slot:
    request: GenerateRequest
    response: GenerateResponse | None = None
    error: BaseException | None = None
    done: bool = False


def _own(error: BaseException) -> BaseException:
    """A copy of ``error`` for one more caller (each thread raises its own)."""
    try:
        return copy.copy(error)
    except Exception:
        return error


class BatchQueue:
    """Runs requests on a backend one call at a time, in batches where it can."""

    def __init__(
        self,
        run_one: Callable[[GenerateRequest], GenerateResponse],
        run_batch: Callable[[list[GenerateRequest]], list[GenerateResponse]] | None,
        *,
        can_batch: Callable[[GenerateRequest], bool],
        max_batch: int,
        gather_s: float = GATHER_S,
    ) -> None:
        self.lock = threading.Lock()  # held by the thread running the backend
        self._run_one = run_one
        self._run_batch = run_batch
        self._can_batch = can_batch
        self.max_batch = max_batch if run_batch is not None else 1
        self._gather_s = gather_s
        self._cond = threading.Condition()  # guards the queue
        self._waiting: list[_Slot] = []
        self.batches = 0  # backend calls that ran two requests or more
        self.largest = 0  # the most requests in one of them

    def run(self, request: GenerateRequest) -> GenerateResponse:
        """Answer ``request``, alone or in a batch; its error, or the batch's, is raised."""
        if self.max_batch < 2 or not self._can_batch(request):
            with self.lock:
                return self._run_one(request)
        slot = _Slot(request)
        with self._cond:
            self._waiting.append(slot)
            self._cond.notify_all()
        idle = self.lock.acquire(blocking=False)
        if not idle:
            self.lock.acquire()
        try:
            if not slot.done:  # no batch took it while this thread waited: run one
                self._lead(slot, gather=idle)
        finally:
            self.lock.release()
        if slot.error is not None:
            raise slot.error
        assert slot.response is not None
        return slot.response

    def _lead(self, mine: _Slot, *, gather: bool) -> None:
        """Run ``mine`` with the oldest waiting requests (the caller holds ``lock``)."""
        with self._cond:
            if gather and self._gather_s > 0:
                self._cond.wait_for(
                    lambda: len(self._waiting) >= self.max_batch, timeout=self._gather_s
                )
            batch = [mine, *[s for s in self._waiting if s is not mine][: self.max_batch - 1]]
            for slot in batch:
                self._waiting.remove(slot)
        try:
            if len(batch) == 1:
                mine.response = self._run_one(mine.request)
                return
            assert self._run_batch is not None
            self.batches += 1
            self.largest = max(self.largest, len(batch))
            responses = self._run_batch([s.request for s in batch])
            if len(responses) != len(batch):
                raise ModelError(
                    f"the backend answered {len(responses)} requests of a batch of {len(batch)}"
                )
            for slot, response in zip(batch, responses, strict=True):
                slot.response = response
        except BaseException as exc:  # every caller of the batch gets it, none is left waiting
            for slot in batch:
                slot.error = exc if slot is mine else _own(exc)
        finally:
            for slot in batch:
                slot.done = True
