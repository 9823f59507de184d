"""The thin Ray adapter for models: one actor per configured model.

Users never write ``ray.remote`` for models; :func:`launch_model_service` is the only place
that does. The actor reserves ``spec.num_cpus`` CPUs and the backend runs exactly that many
threads, because oversubscribed llama.cpp threads make generation collapse. A torch model
also asks Ray for a GPU when the cluster has one. Besides ``generate`` the actor streams
(``generate_stream``, a Ray streaming generator of :class:`GenerateChunk`). A replica
runs one backend call at a time with at most ``max_queue`` more requests waiting; the actor is
threaded so that a request past that bound is refused at once (ModelBusyError: the caller's
route tries another replica or model) instead of queueing without limit in Ray, and so that
``info`` answers while a generation runs. Where the backend batches (torch, see
:class:`~agentmesh.TorchModel`'s ``max_batch``), greedy requests that wait for it run
together, up to ``max_batch`` in one call (:mod:`agentmesh._private.batching`); llama.cpp
and HTTP models run one request at a time (llama-cpp-python's high-level API has no
multi-sequence batching; an HTTP server batches on its side). The response cache
(``Mesh(model_cache=...)``) serves ``generate``; streams are neither served from it nor
stored in it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import ray
from ray.actor import ActorHandle

from agentmesh._private.batching import BatchQueue
from agentmesh._private.model_cache import ResponseCache
from agentmesh.errors import AgentMeshError, ConfigError, ModelBusyError, ModelError
from agentmesh.inference import (
    GenerateChunk,
    GenerateRequest,
    GenerateResponse,
    LlamaCppModel,
    ModelInfo,
    ModelSpec,
    OpenAIModel,
    ScriptedModel,
    TorchModel,
)
from agentmesh.models import ModelCache

__all__ = [
    "DEFAULT_MAX_QUEUE",
    "ModelService",
    "actor_options",
    "granted_cpus",
    "launch_model_service",
]

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
    """Serves one model replica (see the module docstring)."""

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
        self._generate_batch = getattr(self._backend, "generate_batch", None)
        self._queue = BatchQueue(
            self._run,
            self._run_batch if self._generate_batch is not None else None,
            can_batch=getattr(self._backend, "can_batch", lambda request: False),
            max_batch=getattr(spec, "max_batch", 1),
        )

    @contextlib.contextmanager
    def _admit(self) -> Iterator[None]:
        """Count a request in (ModelBusyError at once when ``max_queue`` already wait)."""
        with self._state:
            if self._inside > self._max_queue:
                raise ModelBusyError(
                    f"model {self._name!r} has {self._inside} requests in hand (max_queue "
                    f"{self._max_queue}); add replicas or route to another model"
                )
            self._inside += 1
            self._served += 1
        try:
            yield
        finally:
            with self._state:
                self._inside -= 1

    def generate(self, request: GenerateRequest) -> GenerateResponse:
        """Run the request (or answer it from the cache); any failure comes back as an
        agentmesh error with its cause.

        ``duration_s`` is set to the service's own wall time, the same measure for every backend.
        """
        start = time.perf_counter()
        key = self._cache.key(request) if self._cache is not None else None
        if self._cache is not None and key is not None:
            with self._state:
                hit = self._cache.get(key)
                self._served += hit is not None
            if hit is not None:
                elapsed = time.perf_counter() - start
                return hit.model_copy(update={"cached": True, "duration_s": elapsed})
        with self._admit():
            response = self._queue.run(request)
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

    def _run_batch(self, requests: list[GenerateRequest]) -> list[GenerateResponse]:
        try:
            assert self._generate_batch is not None
            return cast(list[GenerateResponse], self._generate_batch(requests))
        except AgentMeshError:
            raise
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"
            raise ModelError(
                f"model {self._name!r} failed in a batch of {len(requests)}: {detail}"
            ) from exc

    @ray.method(num_returns="streaming")
    def generate_stream(self, request: GenerateRequest) -> Iterator[GenerateChunk]:
        """Yield the answer as it is generated: text pieces, then a chunk with the response.

        Through Ray this is a streaming generator: each piece reaches the caller as soon as it
        is yielded. A backend without ``generate_stream`` answers in one piece. Errors are
        raised as in :meth:`generate` (pieces already yielded stay delivered).
        """
        start = time.perf_counter()
        stream = getattr(self._backend, "generate_stream", None)
        with self._admit(), self._queue.lock:  # the backend is held for the whole stream
            try:
                if stream is None:
                    response = self._backend.generate(request)
                    chunks: Iterator[GenerateChunk] = iter(
                        [GenerateChunk(text=response.text), GenerateChunk(response=response)]
                    )
                else:
                    chunks = stream(request)
                for chunk in chunks:
                    if chunk.response is not None:
                        elapsed = time.perf_counter() - start
                        final = chunk.response.model_copy(update={"duration_s": elapsed})
                        chunk = chunk.model_copy(update={"response": final})
                    yield chunk
            except AgentMeshError:
                raise
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}"
                raise ModelError(f"model {self._name!r} failed: {detail}") from exc

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
        """Name, backend, threads, weights path, calls served and batches run."""
        path = self._spec.path if isinstance(self._spec, LlamaCppModel | TorchModel) else None
        return ModelInfo(
            name=self._name,
            backend=self._backend.name,
            n_threads=self._n_threads,
            path=path,
            calls_served=self._served,
            device=getattr(self._backend, "device", None),
            batches=self._queue.batches,
            largest_batch=self._queue.largest,
        )


# One actor class, exported to the cluster once; each launch only sets its CPUs.
_RemoteModelService = ray.remote(ModelService)


def _cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0.0


def actor_options(spec: ModelSpec, *, max_queue: int = DEFAULT_MAX_QUEUE) -> dict[str, Any]:
    """Ray options of a model's actor: its CPUs, a GPU for torch when there is one to ask for,
    the API key's variable for an HTTP model (read here, in the driver), and threads for the
    one request generating, the ``max_queue`` waiting, and a few more.
    """
    threads = max_queue + 1 + CONTROL_THREADS
    options: dict[str, Any] = {"num_cpus": spec.num_cpus, "max_concurrency": threads}
    if isinstance(spec, TorchModel) and spec.device != "cpu":
        if _cluster_gpus() >= 1:
            options["num_gpus"] = 1
        elif spec.device == "cuda":
            raise ConfigError(
                'TorchModel(device="cuda") needs a GPU, but the Ray cluster has none; '
                'use device="auto" to fall back to the CPU'
            )
    if isinstance(spec, OpenAIModel) and spec.api_key_env is not None:
        options["runtime_env"] = {"env_vars": {spec.api_key_env: spec.api_key() or ""}}
    return options


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
    if isinstance(spec, LlamaCppModel | TorchModel):
        # Absolute and assembled here: the actor's working directory may differ.
        spec = spec.model_copy(update={"path": spec.resolve_path()})
    if isinstance(spec, TorchModel):
        spec = spec.model_copy(update={"cache_dir": spec.resolve_cache_dir()})
    handle = _RemoteModelService.options(**actor_options(spec, max_queue=max_queue)).remote(
        name,
        spec,
        cache=ResponseCache(cache, digest) if cache is not None else None,
        max_queue=max_queue,
    )
    return cast(ActorHandle, handle)
