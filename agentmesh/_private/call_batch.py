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
from typing import Any

from ray.actor import ActorHandle
from ray.exceptions import RayActorError, RayTaskError

from agentmesh._private.ray_calls import ray_error
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


class CallBatcher:
    """Queues skill calls for one replica on one event loop; see the module docstring."""

    def __init__(self, handle: ActorHandle, *, what: str, max_batch: int = 256) -> None:
        self.handle = handle
        self.what = what
        self.max_batch = max_batch
        self._queue: list[tuple[bytes, asyncio.Future[bytes]]] = []
        self._scheduled = False
        self._delivering: set[asyncio.Task[None]] = set()  # held, so none is collected early

    async def call(self, raw: bytes) -> bytes:
        """The serialised task that answers the serialised message ``raw``; Ray's errors
        raised typed, as ``await_ray`` raises them."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self._queue.append((raw, future))
        if len(self._queue) >= self.max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._queue = self._queue, []
        if not batch:
            return
        futures = [future for _, future in batch]
        if len(batch) == 1:
            job = self._one(self.handle.handle.remote(batch[0][0]), futures[0])
        else:
            job = self._many(self.handle.handle_batch.remote([raw for raw, _ in batch]), futures)
        task = asyncio.get_running_loop().create_task(job)
        self._delivering.add(task)
        task.add_done_callback(self._delivering.discard)

    async def _one(self, ref: Any, future: asyncio.Future[bytes]) -> None:
        try:
            _settle(future, await ref)
        except (RayTaskError, RayActorError) as exc:
            _settle(future, ray_error(exc, self.what))

    async def _many(self, answers: Any, futures: list[asyncio.Future[bytes]]) -> None:
        try:
            async for ref in answers:
                for i, answer in await ref:
                    _settle(futures[i], answer)
        except (RayTaskError, RayActorError) as exc:
            error = ray_error(exc, self.what)
        else:
            error = RunError(f"{self.what} ended a batch of calls without answering them all")
        for future in futures:  # the replica died mid-batch: each call still waiting fails
            _settle(future, error)


def _settle(future: asyncio.Future[bytes], answer: bytes | AgentMeshError) -> None:
    if future.done():  # its caller was cancelled (a node's timeout, say)
        return
    if isinstance(answer, BaseException):
        future.set_exception(answer)
    else:
        future.set_result(answer)
