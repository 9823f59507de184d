"""Reliability circuit breakers: an agent or a model that keeps failing is left alone a while.

Why: retries help with a blip, but against an agent whose node is gone or a model that keeps
crashing they only add load and delay every caller by its time limit. A breaker counts the
failures in a row of one target; at ``failure_threshold`` it opens and every call fails fast
with :class:`~agentmesh.BreakerOpenError` (nothing is sent). After ``cooldown_s`` it is
half-open: one trial call goes through; success closes it, failure opens it for another
cool-down.

Only run failures count (a skill that raised, a dead actor, a timeout, a model error): a user
error or a security denial says nothing about the target's health. This is not the security
actor's breaker (``limits.breaker`` in a policy, :class:`~agentmesh.CircuitOpen`), which opens
on policy violations and is reset by an operator.

The executor keeps one breaker per agent in the driver; model calls go through one per model in
each process that calls the model (the driver's ``Mesh.generate``, each agent's host).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from agentmesh.errors import BreakerOpenError, RunError, TaskCanceledError

__all__ = [
    "BreakerPolicy",
    "BreakerState",
    "Breakers",
    "CircuitBreaker",
    "call_through",
    "counts_as_failure",
]

T = TypeVar("T")
Clock = Callable[[], float]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerPolicy(BaseModel):
    """When a breaker opens (``failure_threshold`` failures in a row) and for how long."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    failure_threshold: int = Field(default=5, ge=1)
    cooldown_s: float = Field(default=30.0, gt=0)


def counts_as_failure(error: BaseException) -> bool:
    """Whether ``error`` says the target is unhealthy: a run failure, not a cancel or a
    breaker's own fail-fast refusal."""
    return isinstance(error, RunError) and not isinstance(
        error, BreakerOpenError | TaskCanceledError
    )


class CircuitBreaker:
    """Closed, open or half-open (see the module docs). Thread-safe; ``clock`` is monotonic
    seconds (tests pass a fake one)."""

    def __init__(
        self, target: str, policy: BreakerPolicy | None = None, *, clock: Clock = time.monotonic
    ) -> None:
        self.target = target
        self.policy = policy or BreakerPolicy()
        self.clock = clock
        self.failures = 0
        self.cause = ""
        self._opened_at: float | None = None
        self._probing = False  # half-open: the one trial call is out
        self._lock = threading.Lock()

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state()

    def allow(self) -> None:
        """Let a call through, or raise BreakerOpenError. In half-open state the first caller
        takes the trial slot; it must report with :meth:`succeeded`, :meth:`failed` or
        :meth:`released`."""
        with self._lock:
            state = self._state()
            if state is BreakerState.CLOSED:
                return
            if state is BreakerState.HALF_OPEN and not self._probing:
                self._probing = True
                return
            assert self._opened_at is not None
            left = max(0.0, self._opened_at + self.policy.cooldown_s - self.clock())
        raise BreakerOpenError(
            self.target, failures=self.failures, cause=self.cause, retry_in_s=left
        )

    def succeeded(self) -> None:
        """The call went well: the breaker closes and the count starts again."""
        with self._lock:
            self.failures = 0
            self._opened_at = None
            self._probing = False

    def failed(self, error: BaseException) -> None:
        """The call failed; a failure that counts (see :func:`counts_as_failure`) may open the
        breaker (a failed trial call always does); any other error just releases the slot."""
        if not counts_as_failure(error):
            self.released()
            return
        with self._lock:
            self.failures += 1
            self.cause = f"{type(error).__name__}: {error}"[:300]
            if self._probing or self.failures >= self.policy.failure_threshold:
                self._opened_at = self.clock()
            self._probing = False

    def released(self) -> None:
        """The call ended without a verdict (canceled, or refused before it was sent)."""
        with self._lock:
            self._probing = False

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self._opened_at >= self.policy.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN


class Breakers:
    """One breaker per target (``agent:<name>``, ``model:<name>``), made on first use; with no
    policy there are none (:meth:`get` answers None)."""

    def __init__(self, policy: BreakerPolicy | None, *, clock: Clock = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def get(self, target: str) -> CircuitBreaker | None:
        if self.policy is None:
            return None
        with self._lock:
            breaker = self._breakers.get(target)
            if breaker is None:
                breaker = CircuitBreaker(target, self.policy, clock=self.clock)
                self._breakers[target] = breaker
            return breaker

    def states(self) -> dict[str, BreakerState]:
        """Every breaker made so far and its state."""
        with self._lock:
            breakers = list(self._breakers.values())
        return {b.target: b.state for b in breakers}


async def call_through(breaker: CircuitBreaker | None, call: Callable[[], Awaitable[T]]) -> T:
    """``call()`` through ``breaker`` (None: directly): BreakerOpenError while it is open (and
    ``call`` is never made), and how the call ended reported to it."""
    if breaker is None:
        return await call()
    breaker.allow()
    try:
        value = await call()
    except Exception as exc:
        breaker.failed(exc)
        raise
    except BaseException:  # the caller was canceled: no verdict on the target
        breaker.released()
        raise
    breaker.succeeded()
    return value
