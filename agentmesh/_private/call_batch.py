"""Coalescing a router's skill calls to one agent replica into one Ray call per event-loop turn.

When the executor starts many ready nodes at once (a fan-out), one Ray actor call per node
spends more of the driver's time on Ray's submission than on the mesh's own work. A
:class:`CallBatcher` queues the calls made to one replica in the same event-loop turn and sends
them as one ``handle_batch`` call, a Ray streaming generator: the replica runs them at once (up
to its slots, as separate calls would) and yields the answers *as they finish*, several at a
time when several finished together, so a fast call never waits for a slow neighbour. A lone
call goes as a plain ``handle`` call: a chain pays nothing for this.

Each answer is delivered to its own caller; an error that belongs to one call (the host failed
to serve it) fails that call alone, and a dead replica fails every call of the batch still
waiting, as it would have failed each separate call.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Executor

from ray.actor import ActorHandle
from ray.exceptions import RayActorError, RayTaskError

from agentmesh._private.ray_calls import ray_error
from agentmesh._private.turn_batch import TurnBatcher, settle
from agentmesh.errors import AgentMeshError, RunError

__all__ = ["Answers", "CallBatcher", "serve_async", "serve_threads"]

#: One yield of ``handle_batch``: (index in the batch, the serialised task or the error).
Answers = list[tuple[int, "bytes | AgentMeshError"]]


def _as_error(exc: BaseException) -> AgentMeshError:
    if isinstance(exc, AgentMeshError):
        return exc
    return RunError(f"the agent's host failed to serve a call: {type(exc).__name__}: {exc}")


def serve_threads(
    pool: Executor, handle: Callable[[bytes], bytes], raws: list[bytes]
) -> Iterator[Answers]:
    """A threaded host's side: run every call on ``pool``, yield answers as they finish."""
    done: queue.SimpleQueue[tuple[int, bytes | AgentMeshError]] = queue.SimpleQueue()

    def one(i: int, raw: bytes) -> None:
        try:
            done.put((i, handle(raw)))
        except BaseException as exc:  # reported, not raised: it belongs to one call
            done.put((i, _as_error(exc)))

    for i, raw in enumerate(raws):
        pool.submit(one, i, raw)
    left = len(raws)
    while left:
        ready = [done.get()]
        while len(ready) < left:
            try:
                ready.append(done.get_nowait())
            except queue.Empty:
                break
        left -= len(ready)
        yield ready


async def serve_async(
    handle: Callable[[bytes], Awaitable[bytes]], raws: list[bytes]
) -> AsyncIterator[Answers]:
    """An async host's side: run every call as a task, yield answers as they finish."""
    jobs = {asyncio.ensure_future(handle(raw)): i for i, raw in enumerate(raws)}
    pending = set(jobs)
    while pending:
        finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        answers: Answers = []
        for job in finished:
            error = job.exception()
            answers.append((jobs[job], _as_error(error) if error else job.result()))
        yield answers


class CallBatcher(TurnBatcher[bytes, bytes]):
    """Queues skill calls for one replica on one event loop; see the module docstring."""

    def __init__(self, handle: ActorHandle, *, what: str, max_batch: int = 256) -> None:
        super().__init__(max_batch=max_batch)
        self.handle = handle
        self.what = what

    async def call(self, raw: bytes) -> bytes:
        """The serialised task that answers the serialised message ``raw``; Ray's errors
        raised typed, as ``await_ray`` raises them."""
        return await self.submit(raw)

    async def _send(self, items: list[bytes], futures: list[asyncio.Future[bytes]]) -> None:
        try:
            if len(items) == 1:
                settle(futures[0], await self.handle.handle.remote(items[0]))
                return
            async for ref in self.handle.handle_batch.remote(items):
                for i, answer in await ref:
                    settle(futures[i], answer)
        except (RayTaskError, RayActorError) as exc:
            error = ray_error(exc, self.what)
        else:
            error = RunError(f"{self.what} ended a batch of calls without answering them all")
        for future in futures:  # the replica died mid-batch: each call still waiting fails
            settle(future, error)
