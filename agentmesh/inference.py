"""The inference plane: one request/response interface for every local model.

Agents never talk to llama.cpp (or any other engine) directly: they send a
:class:`GenerateRequest` to a model service and get a :class:`GenerateResponse` back. What a
mesh configuration names is a *model spec* (:data:`ModelSpec`): plain picklable data that is
checked in the driver and built into a :class:`ModelBackend` inside the model's Ray actor.
The specs of the real backends (llama.cpp, torch, an OpenAI-compatible server) live in
:mod:`agentmesh.model_specs` and are re-exported here.

:class:`ScriptedModel` is the public test double: it answers from a queue of scripted items,
so logic that depends on a model's words can be tested without weights.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, JsonValue, PrivateAttr, model_validator

from agentmesh.errors import ModelError, ScriptExhaustedError
from agentmesh.model_specs import LlamaCppModel, OpenAIModel, TorchModel, default_model_path
from agentmesh.provenance import Label

__all__ = [
    "GenerateChunk",
    "GenerateRequest",
    "GenerateResponse",
    "LlamaCppModel",
    "ModelBackend",
    "ModelInfo",
    "ModelSpec",
    "OpenAIModel",
    "ScriptedError",
    "ScriptedItem",
    "ScriptedModel",
    "ScriptedToolCall",
    "StreamingBackend",
    "ToolCall",
    "ToolSpec",
    "TorchModel",
    "default_model_path",
]


def _object_schema() -> dict[str, JsonValue]:
    return {"type": "object"}


class ToolSpec(BaseModel):
    """A tool the model may call instead of answering in text."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    input_schema: dict[str, JsonValue] = Field(default_factory=_object_schema)


class GenerateRequest(BaseModel):
    """One generation call; the same shape for every backend."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    system: str | None = None
    max_tokens: int = Field(default=256, gt=0)
    temperature: float = Field(default=0.0, ge=0.0)
    stop: list[str] = Field(default_factory=list)
    # The llama backend turns this schema into a grammar, so the text always parses.
    json_schema: dict[str, JsonValue] | None = None
    # Per-call seed (None: the model's own): with temperature > 0 the same request and seed
    # give the same text, which deterministic replay relies on.
    seed: int | None = None
    tools: list[ToolSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_tool_names(self) -> GenerateRequest:
        names = [tool.name for tool in self.tools]
        if len(names) != len(set(names)):
            raise ValueError(f"tool names must be unique, got {names}")
        return self


class ToolCall(BaseModel):
    """A tool call the model answered with."""

    name: str
    arguments: dict[str, JsonValue] = Field(default_factory=dict)


class GenerateResponse(BaseModel):
    """What a backend produced, with token counts for accounting."""

    text: str
    tool_calls: list[ToolCall] = Field(default_factory=list)
    model: str
    backend: str
    prompt_tokens: int
    completion_tokens: int
    duration_s: float
    # "stop" (natural end or stop string), "length" (hit max_tokens) or "tool_calls".
    finish_reason: str
    label: Label | None = None
    """Inside a mesh: the provenance of the output, that of everything the task had read."""
    cached: bool = False
    """Served from the model service's cache (``Mesh(model_cache=...)``): no tokens processed."""
    version: str | None = None
    """Inside a mesh: the registered version of the model that answered."""
    digest: str | None = None
    """Inside a mesh: the digest of its weights (see :mod:`agentmesh.models`)."""
    cost: float = 0.0
    """Inside a mesh: what the call cost at the model's registered prices (0 for a hit)."""
    fallbacks: list[str] = Field(default_factory=list)
    """The models a route tried first, which failed or timed out."""
    served_by: str | None = None
    """Inside a mesh: the name of the registered model that answered (a route's choice)."""


class GenerateChunk(BaseModel):
    """One piece of a streamed answer.

    ``text`` is the new text since the previous chunk; the pieces joined are the generated
    text. The last chunk carries the whole ``response`` (token counts, finish reason, parsed
    tool calls), with an empty ``text``.
    """

    text: str = ""
    response: GenerateResponse | None = None


class ModelInfo(BaseModel):
    """What a running model service reports about itself."""

    name: str
    backend: str
    n_threads: int
    path: str | None
    # generate calls handled, failed ones included
    calls_served: int
    # where the weights run: "cpu", "cuda:0", ... (None for scripted and remote models)
    device: str | None = None
    # backend calls that answered two requests or more at once, and the most in one
    batches: int = 0
    largest_batch: int = 0


class ModelBackend(Protocol):
    """A loaded model that answers requests; built from a spec inside the model's actor.

    A backend that can stream also has ``generate_stream(request) -> Iterator[GenerateChunk]``
    (see :class:`StreamingBackend`); the model service streams any other backend's answer as
    one piece. A backend that batches also has ``can_batch(request) -> bool`` and
    ``generate_batch(requests) -> list[GenerateResponse]`` (answers in order), which the model
    service calls with up to the spec's ``max_batch`` waiting requests that ``can_batch``.
    """

    @property
    def name(self) -> str:
        """The backend's name, e.g. ``"llama_cpp"`` or ``"scripted"``."""
        ...

    def generate(self, request: GenerateRequest) -> GenerateResponse:
        """Answer one request; raise :class:`ModelError` on failure."""
        ...


class StreamingBackend(ModelBackend, Protocol):
    """A backend that yields its answer as it is generated."""

    def generate_stream(self, request: GenerateRequest) -> Iterator[GenerateChunk]:
        """Yield text pieces, then one last chunk with the whole response."""
        ...


class ScriptedToolCall(BaseModel):
    """A scripted reply that is a tool call."""

    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: dict[str, JsonValue] = Field(default_factory=dict)


class ScriptedError(BaseModel):
    """A scripted reply that makes the call raise :class:`ModelError`."""

    model_config = ConfigDict(extra="forbid")

    message: str


ScriptedItem = str | ScriptedToolCall | ScriptedError


class ScriptedModel(BaseModel):
    """A test model that answers from a queue: reply text, a tool call, or an error.

    It is both a spec and a backend. ``build()`` returns a fresh, unconsumed copy, so the
    object you hold stays unchanged when a mesh launches it; read the calls a running
    service received through the service (``calls()``), not from your object.
    """

    model_config = ConfigDict(extra="forbid")

    num_cpus: ClassVar[float] = 0  # it computes nothing; never block a CPU for it
    kind: Literal["scripted"] = "scripted"
    replies: list[ScriptedItem] = Field(default_factory=list)
    delay_s: float = Field(default=0.0, ge=0.0)
    """Seconds every call takes before it answers (a slow model, for timeouts)."""
    _next: int = PrivateAttr(default=0)
    _calls: list[GenerateRequest] = PrivateAttr(default_factory=list)

    def __init__(self, replies: list[ScriptedItem] | None = None, /, **data: object) -> None:
        if replies is not None:
            data["replies"] = list(replies)
        super().__init__(**data)

    @property
    def name(self) -> str:
        return "scripted"

    @property
    def calls(self) -> list[GenerateRequest]:
        """Every request received, in order (failed calls included)."""
        return list(self._calls)

    @property
    def remaining(self) -> list[ScriptedItem]:
        """The items not consumed yet."""
        return list(self.replies[self._next :])

    def check(self) -> None:
        """Nothing to check: a scripted model has no weights."""

    def build(self, *, n_threads: int) -> ScriptedModel:
        """A fresh copy with the full queue (``n_threads`` is ignored)."""
        return ScriptedModel(list(self.replies), delay_s=self.delay_s)

    def generate(self, request: GenerateRequest) -> GenerateResponse:
        """Record the request and answer with the next queued item."""
        start = time.perf_counter()
        self._calls.append(request)
        time.sleep(self.delay_s)
        if self._next >= len(self.replies):
            raise ScriptExhaustedError(
                f"scripted model called {len(self._calls)} times but only "
                f"{len(self.replies)} replies were queued; prompt was {request.prompt[:80]!r}"
            )
        item = self.replies[self._next]
        self._next += 1
        if isinstance(item, ScriptedError):
            raise ModelError(item.message)
        text, calls, finish = "", [], "tool_calls"
        if isinstance(item, str):
            text, finish = item, "stop"
        else:
            calls = [ToolCall(name=item.name, arguments=item.arguments)]
        return GenerateResponse(
            text=text,
            tool_calls=calls,
            model="scripted",
            backend="scripted",
            # Whitespace-separated words: a stable stand-in for token counts.
            prompt_tokens=len(((request.system or "") + " " + request.prompt).split()),
            completion_tokens=len(text.split()),
            duration_s=time.perf_counter() - start,
            finish_reason=finish,
        )

    def assert_consumed(self) -> None:
        """Raise AssertionError listing the items that were never consumed."""
        left = self.remaining
        if left:
            raise AssertionError(
                f"scripted model has {len(left)} of {len(self.replies)} replies left "
                f"unconsumed: {left!r}"
            )


ModelSpec = Annotated[
    LlamaCppModel | TorchModel | OpenAIModel | ScriptedModel, Field(discriminator="kind")
]
"""What a mesh configuration names for a model: one of the spec classes above."""
