"""Routing a model call: a model by name, or a route over several with fallback and a canary.

One :class:`ModelRouter` per mesh, built by the driver and handed (pickled) to every agent
host, so the driver's planner and every agent route the same way. It chooses the order of the
candidates (see :mod:`agentmesh.models`), calls each through its breaker (``model_calls``)
until one answers, stamps the response with the version, weights digest and cost of the model
that answered, and counts every attempt into the caller's :class:`~agentmesh.models.Usage`.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ray.actor import ActorHandle

from agentmesh._private import model_calls
from agentmesh.breaker import Breakers
from agentmesh.errors import (
    AgentUnavailableError,
    BreakerOpenError,
    ConfigError,
    ModelBusyError,
    ModelError,
    ModelTimeoutError,
    UnknownModelError,
)
from agentmesh.inference import GenerateRequest, GenerateResponse
from agentmesh.models import ModelEntry, ModelRoute, ModelUsage, Usage

__all__ = ["ModelRouter", "RoutedModel", "check_routes", "in_canary"]

#: Failures after which a route tries its next model; any other error (a bad request) would
#: fail on every model alike and is raised at once.
FALLBACK_ON = (ModelError, BreakerOpenError, AgentUnavailableError)


@dataclass(eq=False)
class RoutedModel:
    """A running registered model: its service replicas, entry and weights digest, and how
    many of this process's calls each replica has in flight."""

    handles: tuple[ActorHandle, ...]
    entry: ModelEntry
    digest: str
    _load: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._load = [0] * len(self.handles)

    def __getstate__(self) -> dict[str, Any]:  # a copy in another process starts idle
        return {"handles": self.handles, "entry": self.entry, "digest": self.digest}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def order(self) -> list[int]:
        """The replicas, least loaded first (ties: in order)."""
        return sorted(range(len(self.handles)), key=self._load.__getitem__)

    async def generate(
        self, name: str, request: GenerateRequest, breakers: Breakers | None
    ) -> GenerateResponse:
        """One call, on the least loaded replica; on to the next one while a replica is dead
        or full (any other error is the model's answer)."""
        replicas = self.order()
        for replica in replicas:
            self._load[replica] += 1
            try:
                handle = self.handles[replica]
                return await model_calls.generate(handle, name, request, breakers=breakers)
            except (AgentUnavailableError, ModelBusyError):
                if replica == replicas[-1]:
                    raise
            finally:
                self._load[replica] -= 1
        raise AssertionError("unreachable: a model has at least one replica")


def check_routes(models: Mapping[str, ModelEntry], routes: Mapping[str, ModelRoute]) -> None:
    """ConfigError for a route that shadows a model or names a model the mesh lacks."""
    for name, route in routes.items():
        if name in models:
            raise ConfigError(f"route {name!r} has the name of a model; name it otherwise")
        named = [*route.models, *([route.canary.model] if route.canary else [])]
        if missing := [m for m in named if m not in models]:
            raise ConfigError(f"route {name!r} names models the mesh lacks: {missing}")


def in_canary(request: GenerateRequest, share: float) -> bool:
    """Whether ``request`` goes to a canary taking ``share`` of the traffic: a hash of the
    request, so the same request always goes the same way (replays and caches agree)."""
    return zlib.crc32(request.model_dump_json().encode()) % 10_000 < share * 10_000


class ModelRouter:
    """The mesh's models and routes, as every caller sees them."""

    def __init__(self, models: Mapping[str, RoutedModel], routes: Mapping[str, ModelRoute]):
        self.models = dict(models)
        self.routes = dict(routes)

    def knows(self, name: str) -> bool:
        return name in self.models or name in self.routes

    def names(self) -> list[str]:
        return sorted([*self.models, *self.routes])

    def candidates(self, name: str, request: GenerateRequest) -> list[str]:
        """The models to try for ``request`` sent to ``name``, in order."""
        if name in self.models:
            return [name]
        route = self.routes.get(name)
        if route is None:
            raise UnknownModelError(f"no model or route {name!r}; configured: {self.names()}")
        pool = [m for m in route.models if self.models[m].entry.capable(request)]
        if route.order == "cheapest":
            pool.sort(key=lambda m: self.models[m].entry.unit_cost)
        canary = route.canary
        chosen = canary is not None and in_canary(request, canary.share)
        if canary is not None and chosen and self.models[canary.model].entry.capable(request):
            pool.insert(0, canary.model)
        if not pool:
            raise ModelError(f"no model of route {name!r} can serve this request")
        return pool

    async def generate(
        self,
        name: str,
        request: GenerateRequest,
        *,
        breakers: Breakers | None,
        usage: Usage | None = None,
    ) -> GenerateResponse:
        """Answer ``request`` with the first candidate that succeeds; the last error if none.

        Raises:
            UnknownModelError: ``name`` is neither a model nor a route.
            ModelError (ModelTimeoutError past the route's ``timeout_s``), BreakerOpenError,
                AgentUnavailableError: every candidate failed; the last one's error.
        """
        route = self.routes.get(name)
        timeout = route.timeout_s if route is not None else None
        failed: list[str] = []
        candidates = self.candidates(name, request)
        for model in candidates:
            routed = self.models[model]
            started = time.perf_counter()
            try:
                call = routed.generate(model, request, breakers)
                response = await asyncio.wait_for(call, timeout) if timeout else await call
            except (TimeoutError, *FALLBACK_ON) as exc:
                _count(usage, model, routed, failed=1, latency_s=time.perf_counter() - started)
                failed.append(model)
                if model == candidates[-1]:
                    if isinstance(exc, TimeoutError):
                        detail = f"model {model!r}: no answer within {timeout:g}s"
                        raise ModelTimeoutError(detail) from None
                    raise
                continue
            return self._stamp(response, model, routed, failed, started, usage)
        raise AssertionError("unreachable: candidates is never empty")

    @staticmethod
    def _stamp(
        response: GenerateResponse,
        model: str,
        routed: RoutedModel,
        failed: list[str],
        started: float,
        usage: Usage | None,
    ) -> GenerateResponse:
        entry = routed.entry
        prompt, completion = response.prompt_tokens, response.completion_tokens
        cost = 0.0 if response.cached else entry.cost(prompt, completion)
        response = response.model_copy(
            update={
                "version": entry.version,
                "digest": routed.digest,
                "cost": cost,
                "fallbacks": failed,
                "served_by": model,
            }
        )
        hit = response.cached
        _count(
            usage,
            model,
            routed,
            calls=1,
            cache_hits=int(hit),
            prompt_tokens=0 if hit else prompt,
            completion_tokens=0 if hit else completion,
            saved_tokens=prompt + completion if hit else 0,
            cost=cost,
            latency_s=time.perf_counter() - started,
        )
        return response


def _count(usage: Usage | None, model: str, routed: RoutedModel, **figures: float) -> None:
    if usage is not None:
        version = routed.entry.version
        usage.add(ModelUsage.model_validate({"model": model, "version": version, **figures}))
