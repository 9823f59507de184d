"""The ``limits:`` section of a security policy (enforced in ``_private/limits.py``).

Rates are written "5/s", "30/min", "100/h" or "1000/day" (a bare number is calls per second)
and checked at load time, as are the limits' coherence and their globs.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from agentmesh._private import policy_io

__all__ = ["BreakerPolicy", "Limit", "LimitsPolicy", "per_second"]

_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0, "h": 3600.0}
_UNITS |= {"hour": 3600.0, "d": 86400.0, "day": 86400.0}
_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*/\s*([a-z]+)")


def per_second(rate: str) -> float:
    """Calls per second of a rate written "5/s", "30/min", "100/h" or "1000/day"."""
    match = _RATE.fullmatch(rate.strip())
    if match is None or match[2] not in _UNITS or float(match[1]) <= 0:
        raise ValueError(
            f"rate {rate!r} must be a positive number of calls per s, min, h or day, "
            "like '5/s' or '100/h'"
        )
    return float(match[1]) / _UNITS[match[2]]


def _check_rate(rate: str) -> str:
    per_second(rate)
    return rate


def _rate_text(value: Any) -> Any:
    """A bare number is calls per second."""
    return f"{value}/s" if isinstance(value, int | float) and not isinstance(value, bool) else value


Rate = Annotated[str, BeforeValidator(_rate_text), AfterValidator(_check_rate)]
Glob = Annotated[str, AfterValidator(policy_io.check_glob)]
ToolGlob = Annotated[str, AfterValidator(policy_io.check_tool_glob)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limit(_Strict):
    """A token bucket (``rate`` with ``burst``), a ``budget`` of calls, or both."""

    rate: Rate | None = None
    burst: int | None = Field(default=None, ge=1)
    """Calls allowed at once; default: one second's worth of the rate (at least 1)."""
    budget: int | None = Field(default=None, ge=0)
    budget_window_s: float | None = Field(default=None, gt=0)
    """The budget renews every this many seconds; None: it is for the whole run."""

    @model_validator(mode="after")
    def _coherent(self) -> Limit:
        if self.rate is None and self.budget is None:
            raise ValueError("a limit needs a rate, a budget, or both")
        if self.burst is not None and self.rate is None:
            raise ValueError("burst needs a rate")
        if self.budget_window_s is not None and self.budget is None:
            raise ValueError("budget_window_s needs a budget")
        return self


class BreakerPolicy(_Strict):
    """Open after ``violations`` within ``window_s``; close on reset or after ``reset_after_s``."""

    violations: int = Field(default=3, ge=1)
    window_s: float = Field(default=60.0, gt=0)
    reset_after_s: float | None = Field(default=None, gt=0)


class LimitsPolicy(_Strict):
    """Rate limits and budgets by agent glob, by tool glob (per agent) and by message sender."""

    agents: Annotated[dict[Glob, Limit], policy_io.none_to(dict)] = {}
    tools: Annotated[dict[ToolGlob, Limit], policy_io.none_to(dict)] = {}
    messages: Annotated[dict[Glob, Limit], policy_io.none_to(dict)] = {}
    breaker: BreakerPolicy | None = None
