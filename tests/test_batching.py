"""The batching queue of the model service, with a backend of plain functions (no model).

The real torch backend behind it is tested in tests/test_torch_batch.py.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from agentmesh._private.batching import BatchQueue
from agentmesh.errors import ModelError
from agentmesh.inference import GenerateRequest, GenerateResponse


def answer(request: GenerateRequest) -> GenerateResponse:
    return GenerateResponse(
        text=request.prompt.upper(),
        model="m",
        backend="fake",
        prompt_tokens=1,
        completion_tokens=1,
        duration_s=0.0,
        finish_reason="stop",
    )


class Fake:
    """Records what ran alone and in batches."""

    def __init__(self, fail: bool = False, short: bool = False) -> None:
        self.alone: list[str] = []
        self.batches: list[list[str]] = []
        self.fail, self.short = fail, short

    def one(self, request: GenerateRequest) -> GenerateResponse:
        self.alone.append(request.prompt)
        return answer(request)

    def many(self, requests: list[GenerateRequest]) -> list[GenerateResponse]:
        self.batches.append([r.prompt for r in requests])
        if self.fail:
            raise ModelError("the batch broke")
        answers = [answer(r) for r in requests]
        return answers[:-1] if self.short else answers


def greedy(request: GenerateRequest) -> bool:
    return request.temperature == 0


def queue(fake: Fake, max_batch: int) -> BatchQueue:
    return BatchQueue(fake.one, fake.many, can_batch=greedy, max_batch=max_batch)


def run_while_held(q: BatchQueue, requests: list[GenerateRequest]) -> list[object]:
    """Send ``requests`` while the backend is busy, so they all wait; then free it.

    Each result is the response or the error its caller got.
    """

    def call(request: GenerateRequest) -> object:
        try:
            return q.run(request)
        except ModelError as exc:
            return exc

    batchable = sum(greedy(r) for r in requests) if q.max_batch > 1 else 0
    with ThreadPoolExecutor(len(requests)) as pool:
        with q.lock:
            futures = [pool.submit(call, r) for r in requests]
            deadline = time.monotonic() + 10
            while len(q._waiting) < batchable and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(0.05)  # the unbatchable ones are blocked on the lock too
        return [f.result(timeout=10) for f in futures]


def prompts(n: int) -> list[GenerateRequest]:
    return [GenerateRequest(prompt=f"p{i}") for i in range(n)]


def test_waiting_requests_run_as_batches_oldest_first() -> None:
    fake = Fake()
    q = queue(fake, max_batch=2)
    results = run_while_held(q, prompts(5))
    assert [r.text for r in results] == ["P0", "P1", "P2", "P3", "P4"]  # type: ignore[attr-defined]
    # Five waiting, two a batch: two batches of two and one alone (each leader takes its
    # own request first, then the oldest).
    assert sorted(len(b) for b in fake.batches) == [2, 2] and len(fake.alone) == 1
    assert sorted([p for b in fake.batches for p in b] + fake.alone) == [f"p{i}" for i in range(5)]
    assert (q.batches, q.largest) == (2, 2)


def test_unbatchable_requests_run_alone() -> None:
    fake = Fake()
    q = queue(fake, max_batch=8)
    sampled = GenerateRequest(prompt="s", temperature=0.7, seed=1)
    results = run_while_held(q, [*prompts(3), sampled])
    assert [r.text for r in results] == ["P0", "P1", "P2", "S"]  # type: ignore[attr-defined]
    assert len(fake.batches) == 1 and sorted(fake.batches[0]) == ["p0", "p1", "p2"]
    assert fake.alone == ["s"] and (q.batches, q.largest) == (1, 3)


def test_max_batch_one_or_no_batch_function_runs_one_at_a_time() -> None:
    one, two = Fake(), Fake()
    unbatched = BatchQueue(two.one, None, can_batch=greedy, max_batch=8)
    for q, fake in [(queue(one, max_batch=1), one), (unbatched, two)]:
        results = run_while_held(q, prompts(3))
        assert [r.text for r in results] == ["P0", "P1", "P2"]  # type: ignore[attr-defined]
        assert fake.batches == [] and sorted(fake.alone) == ["p0", "p1", "p2"]
        assert q.batches == 0


def test_a_failing_batch_fails_each_caller() -> None:
    fake = Fake(fail=True)
    q = queue(fake, max_batch=8)
    errors = run_while_held(q, prompts(3))
    assert fake.batches and len(fake.batches[0]) == 3
    assert all(isinstance(e, ModelError) and "the batch broke" in str(e) for e in errors)
    assert len({id(e) for e in errors}) == 3  # each caller raises its own copy
    fake.fail = False
    assert q.run(GenerateRequest(prompt="after")).text == "AFTER"


def test_a_batch_answering_too_few_fails_each_caller() -> None:
    q = queue(Fake(short=True), max_batch=8)
    errors = run_while_held(q, prompts(2))
    assert all(
        isinstance(e, ModelError) and "answered 1 requests of a batch of 2" in str(e)
        for e in errors
    )


def test_requests_sent_together_to_an_idle_backend_share_a_batch() -> None:
    fake = Fake()
    q = BatchQueue(fake.one, fake.many, can_batch=greedy, max_batch=4, gather_s=2.0)
    start = threading.Barrier(4)

    def call(request: GenerateRequest) -> GenerateResponse:
        start.wait()
        return q.run(request)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, prompts(4)))
    # The first waits for the others (up to gather_s, but no longer than for max_batch).
    assert [r.text for r in results] == ["P0", "P1", "P2", "P3"]
    assert len(fake.batches) == 1 and sorted(fake.batches[0]) == ["p0", "p1", "p2", "p3"]


@pytest.mark.parametrize("max_batch", [0, -1])
def test_max_batch_must_be_positive(max_batch: int) -> None:
    from pydantic import ValidationError

    from agentmesh import TorchModel

    with pytest.raises(ValidationError, match="max_batch"):
        TorchModel(max_batch=max_batch)
    assert TorchModel().max_batch == 8 and TorchModel(max_batch=1).max_batch == 1
