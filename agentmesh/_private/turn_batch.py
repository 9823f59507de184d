"""The queue both Ray-call batchers share: items submitted in one event-loop turn go out
together (``vet_batch.VetBatcher``: vets to a security actor; ``call_batch.CallBatcher``:
skill calls to an agent replica).

A lone item is a batch of one (no waiting, no timer); ``max_batch`` bounds a batch so the
stages keep overlapping. Each item's caller awaits its own future, settled with its answer or
its error; a caller that went away (a node's timeout) leaves its future cancelled, and the
answer is dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Generic, TypeVar

__all__ = ["TurnBatcher", "settle"]

T = TypeVar("T")
R = TypeVar("R")


def settle(future: asyncio.Future[Any], answer: object) -> None:
    """Give ``future`` its answer: an exception is raised to its caller, anything else
    returned; a future already done (its caller went away) is left alone."""
    if future.done():
        return
    if isinstance(answer, BaseException):
        future.set_exception(answer)
    else:
        future.set_result(answer)


class TurnBatcher(Generic[T, R]):
    """Queues items on one event loop; subclasses send a batch (``_send``)."""

    def __init__(self, *, max_batch: int) -> None:
        self.max_batch = max_batch
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._scheduled = False
        self._delivering: set[asyncio.Task[None]] = set()  # held, so none is collected early

    async def submit(self, item: T) -> R:
        """``item``'s answer, once its batch has been sent and answered."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future))
        if len(self._queue) >= self.max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._queue = self._queue, []
        if batch:
            items, futures = [item for item, _ in batch], [future for _, future in batch]
            task = asyncio.get_running_loop().create_task(self._send(items, futures))
            self._delivering.add(task)
            task.add_done_callback(self._delivering.discard)

    def _send(self, items: list[T], futures: list[asyncio.Future[R]]) -> Coroutine[Any, Any, None]:
        """Send one batch and settle every future (``settle``)."""
        raise NotImplementedError
