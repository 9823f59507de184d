"""The thin Ray adapter for models: one actor per configured model.

Users never write ``ray.remote`` for models; :func:`launch_model_service` is the only place
that does. The actor reserves ``spec.num_cpus`` CPUs and the backend runs exactly that many
threads, because oversubscribed llama.cpp threads make generation collapse.
"""

from __future__ import annotations

import threading
import time
from typing import cast

import ray
from ray.actor import ActorHandle

from agentmesh._private.model_cache import ResponseCache
from agentmesh.errors import AgentMeshError, ModelBusyError, ModelError
from agentmesh.inference import (
    GenerateRequest,
    GenerateResponse,
    LlamaCppModel,
    ModelInfo,
    ModelSpec,
    ScriptedModel,
)
from agentmesh.models import ModelCache

__all__ = ["DEFAULT_MAX_QUEUE", "ModelService", "granted_cpus", "launch_model_service"]

#: Requests one model replica holds waiting for their turn, beyond the one generating.
DEFAULT_MAX_QUEUE = 64
#: Actor threads beyond those: a refusal, ``info`` and ``calls`` always find one.
CONTROL_THREADS = 2


def granted_cpus() -> int:
    """Whole CPUs Ray granted the current actor (at least 1; 1 outside an actor)."""
    if not ray.is_initialized():
        return 1
    ctx = ray.get_runtime_context()
    if ctx.get_actor_id() is None:
        return 1
    return max(1, int(ctx.get_assigned_resources().get("CPU", 0)))


class ModelService:
    """Serves one model replica: builds the backend from its spec and generates one request at
    a time (a backend is not thread-safe), with at most ``max_queue`` more waiting their turn.

    The actor is threaded so that a request past that bound is refused at once
    (ModelBusyError: the caller's route tries another replica or model) instead of queueing
    without limit in Ray, and so that ``info`` answers while a generation runs.
    """

    def __init__(
        self,
        name: str,
        spec: ModelSpec,
        *,
        cache: ResponseCache | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        self._name = name
        self._spec = spec
        self._n_threads = granted_cpus()
        self._backend = spec.build(n_threads=self._n_threads)
        self._served = 0
        self._cache = cache
        self._max_queue = max_queue
        self._inside = 0  # requests generating or waiting to
        self._state = threading.Lock()  # guards the counters and the cache
        self._generating = threading.Lock()

    def generate(self, request: GenerateRequest) -> GenerateResponse:
        """Run the request; any failure comes back as an agentmesh error with its cause.

        ``duration_s`` is set to the service's own wall time, the same measure for every backend.
        """
        start = time.perf_counter()
        key = self._cache.key(request) if self._cache is not None else None
        with self._state:
            hit = self._cache.get(key) if self._cache is not None and key is not None else None
            if hit is None and self._inside > self._max_queue:
                raise ModelBusyError(
                    f"model {self._name!r} has {self._inside} requests in hand (max_queue "
                    f"{self._max_queue}); add replicas or route to another model"
                )
            self._served += 1
            self._inside += hit is None
        if hit is not None:
            return hit.model_copy(
                update={"cached": True, "duration_s": time.perf_counter() - start}
            )
        try:
            with self._generating:
                response = self._run(request)
        finally:
            with self._state:
                self._inside -= 1
        response = response.model_copy(update={"duration_s": time.perf_counter() - start})
        if self._cache is not None and key is not None:
            with self._state:
                self._cache.put(key, response)
        return response

    def _run(self, request: GenerateRequest) -> GenerateResponse:
        try:
            return self._backend.generate(request)
        except AgentMeshError:
            raise
        except Exception as exc:
            # The cause's text goes into the message: __cause__ does not survive pickling.
            raise ModelError(f"model {self._name!r} failed: {type(exc).__name__}: {exc}") from exc

    def calls(self) -> list[GenerateRequest]:
        """Requests a scripted model received ([] for real models, which keep no log)."""
        if isinstance(self._backend, ScriptedModel):
            return self._backend.calls
        return []

    def assert_consumed(self) -> None:
        """Raise AssertionError if a scripted model has replies left."""
        if not isinstance(self._backend, ScriptedModel):
            raise ModelError(f"model {self._name!r} is not scripted; it has no queue to check")
        self._backend.assert_consumed()

    def info(self) -> ModelInfo:
        """Name, backend, threads, weights path and calls served."""
        path = self._spec.path if isinstance(self._spec, LlamaCppModel) else None
        return ModelInfo(
            name=self._name,
            backend=self._backend.name,
            n_threads=self._n_threads,
            path=path,
            calls_served=self._served,
        )


# One actor class, exported to the cluster once; each launch only sets its CPUs.
_RemoteModelService = ray.remote(ModelService)


def launch_model_service(
    name: str,
    spec: ModelSpec,
    *,
    cache: ModelCache | None = None,
    digest: str = "",
    max_queue: int = DEFAULT_MAX_QUEUE,
) -> ActorHandle:
    """Check the spec in the driver, then start one replica of the model (not waiting for
    the load).

    A missing weights file raises :class:`ModelNotFoundError` here, not a RayActorError on the
    first call. ``cache`` turns on its response cache, keyed by the weights ``digest`` among
    the rest; ``max_queue`` bounds the requests waiting for it.
    """
    spec.check()
    if isinstance(spec, LlamaCppModel):
        # Absolute and assembled here: the actor's working directory may differ.
        spec = spec.model_copy(update={"path": spec.resolve_path()})
    threads = max_queue + 1 + CONTROL_THREADS  # the one generating, those waiting, the rest
    handle = _RemoteModelService.options(num_cpus=spec.num_cpus, max_concurrency=threads).remote(
        name,
        spec,
        cache=ResponseCache(cache, digest) if cache is not None else None,
        max_queue=max_queue,
    )
    return cast(ActorHandle, handle)
