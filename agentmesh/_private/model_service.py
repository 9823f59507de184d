"""The thin Ray adapter for models: one actor per configured model.

Users never write ``ray.remote`` for models; :func:`launch_model_service` is the only place
that does. The actor reserves ``spec.num_cpus`` CPUs and the backend runs exactly that many
threads, because oversubscribed llama.cpp threads make generation collapse.
"""

from __future__ import annotations

import time
from typing import cast

import ray
from ray.actor import ActorHandle

from agentmesh._private.model_cache import ResponseCache
from agentmesh.errors import AgentMeshError, ModelError
from agentmesh.inference import (
    GenerateRequest,
    GenerateResponse,
    LlamaCppModel,
    ModelInfo,
    ModelSpec,
    ScriptedModel,
)
from agentmesh.models import ModelCache

__all__ = ["ModelService", "granted_cpus", "launch_model_service"]


def granted_cpus() -> int:
    """Whole CPUs Ray granted the current actor (at least 1; 1 outside an actor)."""
    if not ray.is_initialized():
        return 1
    ctx = ray.get_runtime_context()
    if ctx.get_actor_id() is None:
        return 1
    return max(1, int(ctx.get_assigned_resources().get("CPU", 0)))


class ModelService:
    """Serves one model: builds the backend from its spec and answers one request at a time."""

    def __init__(self, name: str, spec: ModelSpec, *, cache: ResponseCache | None = None) -> None:
        self._name = name
        self._spec = spec
        self._n_threads = granted_cpus()
        self._backend = spec.build(n_threads=self._n_threads)
        self._served = 0
        self._cache = cache

    def generate(self, request: GenerateRequest) -> GenerateResponse:
        """Run the request; any failure comes back as an agentmesh error with its cause.

        ``duration_s`` is set to the service's own wall time, the same measure for every backend.
        """
        start = time.perf_counter()
        cache = self._cache
        key = cache.key(request) if cache is not None else None
        if cache is not None and key is not None and (hit := cache.get(key)) is not None:
            self._served += 1
            return hit.model_copy(
                update={"cached": True, "duration_s": time.perf_counter() - start}
            )
        try:
            response = self._backend.generate(request)
        except AgentMeshError:
            raise
        except Exception as exc:
            # The cause's text goes into the message: __cause__ does not survive pickling.
            raise ModelError(f"model {self._name!r} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            self._served += 1
        response = response.model_copy(update={"duration_s": time.perf_counter() - start})
        if cache is not None and key is not None:
            cache.put(key, response)
        return response

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
    name: str, spec: ModelSpec, *, cache: ModelCache | None = None, digest: str = ""
) -> ActorHandle:
    """Check the spec in the driver, then start the model's actor (not waiting for the load).

    A missing weights file raises :class:`ModelNotFoundError` here, not a RayActorError on the
    first call. ``max_concurrency=1``: a model generates one request at a time. ``cache``
    turns on its response cache, keyed by the weights ``digest`` among the rest.
    """
    spec.check()
    if isinstance(spec, LlamaCppModel):
        # Absolute and assembled here: the actor's working directory may differ.
        spec = spec.model_copy(update={"path": spec.resolve_path()})
    handle = _RemoteModelService.options(num_cpus=spec.num_cpus, max_concurrency=1).remote(
        name, spec, cache=ResponseCache(cache, digest) if cache is not None else None
    )
    return cast(ActorHandle, handle)
