"""Rate limits, budgets and a circuit breaker per principal: the policy's ``limits:`` section.

The section's schema is in ``_private/limits_policy.py``; this module keeps the state that
enforces it.

Why: a grant says *what* an agent may call, not *how much*. A hijacked agent inside its grant
can still flood a tool (a thousand mails), or keep probing outside it. So each call that passes
its grant also passes token buckets (calls per second, with a burst) and budgets (a count of
calls per window, or per run), kept per agent (``agents``), per agent and tool glob (``tools``)
and per message sender (``messages``). A circuit breaker per principal opens after N
violations within a window (calls outside its grant, limit hits), records why, and refuses every
message and tool call from that principal until it is reset (``Mesh.reset_breaker``) or, with
``reset_after_s``, its cool-down has passed.

Assumption: this state is local to one monitor. The mesh routes all of an agent's traffic to
one security actor chosen by the agent's name (a partition of the pool; today the actor of the
agent's node), so one monitor sees every call of that agent and its limits hold exactly. Were
an agent's calls spread over k monitors, each would allow the full rate (k times in all).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict

from agentmesh._private.judge import Judgement
from agentmesh._private.limits_policy import Limit, LimitsPolicy, per_second

__all__ = ["BreakerStatus", "Limiter"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BreakerStatus(_Strict):
    """One principal's circuit breaker, open or counting violations."""

    agent: str
    open: bool
    cause: str = ""
    opened_at: float | None = None
    """Wall-clock time it opened."""
    violations: int = 0
    closes_in_s: float | None = None
    """With ``reset_after_s``: when it closes by itself."""


class _Scope(NamedTuple):
    glob: str
    rule: str  # "limits.agents['researcher*']"
    limit: Limit
    rate: float | None  # calls per second
    burst: float


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass(slots=True)
class _Spent:
    count: int
    since: float


@dataclass(slots=True)
class _Breaker:
    violations: deque[tuple[float, str]]
    opened: float | None = None  # on the monitor's clock
    opened_wall: float | None = None
    cause: str = ""


def _scopes(section: str, limits: dict[str, Limit]) -> list[_Scope]:
    scopes = []
    for glob, limit in limits.items():
        rate = None if limit.rate is None else per_second(limit.rate)
        burst = float(limit.burst or max(1, math.ceil(rate or 1)))
        scopes.append(_Scope(glob, f"limits.{section}[{glob!r}]", limit, rate, burst))
    return scopes


class Limiter:
    """The limits' state for one monitor. Thread-safe; pickles without its lock, keeping ages.

    ``clock`` is monotonic seconds (injected by tests, which then never sleep).
    """

    def __init__(self, policy: LimitsPolicy, *, clock: Callable[[], float] = time.monotonic):
        self.policy = policy
        self.active = bool(policy.agents or policy.tools or policy.messages or policy.breaker)
        self._clock = clock
        self._agents = _scopes("agents", policy.agents)
        self._tools = _scopes("tools", policy.tools)
        self._messages = _scopes("messages", policy.messages)
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._spent: dict[tuple[str, str], _Spent] = {}
        self._breakers: dict[str, _Breaker] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k != "_lock"}
        return state | {"_pickled_at": self._clock()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        pickled_at = state.pop("_pickled_at")
        self.__dict__.update(state)
        self._lock = threading.Lock()
        shift = self._clock() - pickled_at  # another process's clock: keep the ages instead
        for bucket in self._buckets.values():
            bucket.at += shift
        for spent in self._spent.values():
            spent.since += shift
        for breaker in self._breakers.values():
            breaker.violations = deque(
                ((t + shift, what) for t, what in breaker.violations), breaker.violations.maxlen
            )
            if breaker.opened is not None:
                breaker.opened += shift

    def admit(self, gate: Judgement, principal: str, *, target: str, tool: bool) -> Judgement:
        """The gate's judgement after the limits: a refused gate counts as a violation; an
        allowed call passes the breaker, then every matching bucket and budget."""
        if not self.active:
            return gate
        what = f"tool {target[:80]!r}" if tool else f"message to {target[:80]!r}"
        with self._lock:
            now = self._clock()
            breaker = self._open(principal, now)
            if gate.verdict != "allow":
                if breaker is not None:
                    note = f"; the circuit breaker of {principal!r} is open"
                else:
                    leak = gate.rule.startswith("exfil.")
                    why = f"refused by {gate.rule}" if leak else "outside its grant"
                    note = self._violation(principal, f"{what} {why}", now)
                return gate._replace(reason=gate.reason + note)
            if breaker is not None:
                return Judgement("block", "limits.breaker", self._open_reason(principal, now))
            refusal = self._take(principal, target if tool else None, now)
            if refusal is None:
                return gate
            rule, reason = refusal
            note = self._violation(principal, f"{what} over {rule}", now)
            return Judgement("block", rule, reason + note)

    def _take(self, principal: str, tool: str | None, now: float) -> tuple[str, str] | None:
        """(rule, reason) of the first limit that refuses; else take one call from each."""
        section = self._messages if tool is None else self._tools
        name = principal if tool is None else tool
        scopes = [s for s in self._agents if fnmatchcase(principal, s.glob)]
        scopes += [s for s in section if fnmatchcase(name, s.glob)]
        for scope in scopes:
            key = (principal, scope.rule)
            if scope.rate is not None:
                bucket = self._buckets.setdefault(key, _Bucket(scope.burst, now))
                bucket.tokens = min(scope.burst, bucket.tokens + (now - bucket.at) * scope.rate)
                bucket.at = now
                if bucket.tokens < 1:
                    wait = (1 - bucket.tokens) / scope.rate
                    return f"{scope.rule}.rate", (
                        f"{principal!r} is over {scope.rule}.rate ({scope.limit.rate}, burst "
                        f"{scope.burst:g}); retry in {wait:.2f}s"
                    )
            budget, window = scope.limit.budget, scope.limit.budget_window_s
            if budget is not None:
                spent = self._spent.setdefault(key, _Spent(0, now))
                if window is not None and now - spent.since >= window:
                    spent.count, spent.since = 0, now
                if spent.count >= budget:
                    per = "per run" if window is None else f"per {window:g}s"
                    if window is not None:
                        per += f"; it renews in {spent.since + window - now:.0f}s"
                    return f"{scope.rule}.budget", (
                        f"{principal!r} has spent all {budget} calls of {scope.rule}.budget ({per})"
                    )
        for scope in scopes:
            key = (principal, scope.rule)
            if scope.rate is not None:
                self._buckets[key].tokens -= 1
            if scope.limit.budget is not None:
                self._spent[key].count += 1
        return None

    def _open(self, principal: str, now: float) -> _Breaker | None:
        """The principal's breaker if it is open (one past its cool-down closes here)."""
        breaker = self._breakers.get(principal)
        if breaker is None or breaker.opened is None:
            return None
        cooldown = self.policy.breaker.reset_after_s if self.policy.breaker else None
        if cooldown is not None and now - breaker.opened >= cooldown:
            del self._breakers[principal]
            return None
        return breaker

    def _violation(self, principal: str, what: str, now: float) -> str:
        """Count a violation; a note for the reason if it opened the breaker."""
        config = self.policy.breaker
        if config is None:
            return ""
        breaker = self._breakers.setdefault(principal, _Breaker(deque(maxlen=config.violations)))
        while breaker.violations and breaker.violations[0][0] <= now - config.window_s:
            breaker.violations.popleft()
        breaker.violations.append((now, what))
        if len(breaker.violations) < config.violations:
            return ""
        shown = [w for _, w in breaker.violations][-3:]
        earlier = f" (and {config.violations - 3} more)" if config.violations > 3 else ""
        breaker.opened, breaker.opened_wall = now, time.time()
        breaker.cause = (
            f"{config.violations} violation(s) within {config.window_s:g}s: "
            + "; ".join(shown)
            + earlier
        )
        return f"; the circuit breaker of {principal!r} is now open"

    def _open_reason(self, principal: str, now: float) -> str:
        breaker = self._breakers[principal]
        config = self.policy.breaker
        until = f"until Mesh.reset_breaker({principal!r})"
        if config is not None and config.reset_after_s is not None and breaker.opened is not None:
            until += f" or for {breaker.opened + config.reset_after_s - now:.0f}s more"
        return f"the circuit breaker of {principal!r} is open {until}; cause: {breaker.cause}"

    def reset(self, principal: str) -> bool:
        """Close the principal's breaker and forget its violations; True if it was open."""
        with self._lock:
            was_open = self._open(principal, self._clock()) is not None
            self._breakers.pop(principal, None)
            return was_open

    def statuses(self) -> list[BreakerStatus]:
        """Every breaker that is open or has counted violations in its window."""
        config = self.policy.breaker
        if config is None:
            return []
        statuses = []
        with self._lock:
            now = self._clock()
            for principal in sorted(self._breakers):
                breaker = self._open(principal, now)
                if breaker is not None and breaker.opened is not None:
                    left = config.reset_after_s and breaker.opened + config.reset_after_s - now
                    status = BreakerStatus(
                        agent=principal,
                        open=True,
                        cause=breaker.cause,
                        opened_at=breaker.opened_wall,
                        violations=len(breaker.violations),
                        closes_in_s=left,
                    )
                    statuses.append(status)
                elif seen := self._breakers.get(principal):
                    n = sum(1 for t, _ in seen.violations if t > now - config.window_s)
                    if n:
                        statuses.append(BreakerStatus(agent=principal, open=False, violations=n))
        return statuses
