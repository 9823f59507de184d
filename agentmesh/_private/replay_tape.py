"""The tape a replay serves: the recorded answers of a run's model and tool calls.

``Mesh.replay`` builds a :class:`ReplayTape` from the original run's recording and starts it
as a small Ray actor named after the replay run. The replay's skill calls carry that name in
their run stamp (``IdempotencyScope.replay``), nested calls too, so every agent's host asks
the tape before it calls a model or a tool:

- A model call is served when the tape holds a call made in the same node by the same agent
  to the same model or route with the same request (compared redacted: what the recording
  holds), answered by a model this mesh runs at the same version and weights digest. Anything
  else (a changed prompt, a changed model) goes live.
- A tool call is served when the tape holds the same node's call by the same agent of the same
  tool with the same arguments: its recorded result, or the error the tool gave. The security
  actor still vets the call and the result as if they were live, so a changed policy shows. A
  call the tape lacks goes live when the tool is read-only; a side-effecting one is refused
  (ReplayEffectError) unless the replay allows live effects: a replay never repeats an effect
  behind the user's back.

Identical calls are served in the order recorded (a retried node's failed attempt first, then
its success). What is served is the recording's, so texts it redacted stay redacted.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import ray
from pydantic import BaseModel, JsonValue
from ray.actor import ActorHandle

from agentmesh import errors
from agentmesh._private.record_sink import redacted
from agentmesh._private.router import await_ray
from agentmesh.errors import AgentMeshError, ModelError, ReplayEffectError, ToolCallError
from agentmesh.inference import GenerateRequest, GenerateResponse, ToolCall
from agentmesh.protocols.mcp import ToolResult
from agentmesh.recording import ModelCallEvent, RunEvent, ToolCallEvent
from agentmesh.replay import ReplayCounts
from agentmesh.results import ErrorInfo

if TYPE_CHECKING:
    from agentmesh._private.model_router import ModelRouter
    from agentmesh._private.task_scope import TaskScope

__all__ = ["ReplayTape", "ReplayedTool", "TapeModel", "served_model", "served_tool", "start_tape"]

#: Tool errors that are the tool's own answer (served again); a refusal or a bad argument is
#: the mesh's, decided again live by the replay's security actor.
_TOOL_ERRORS = frozenset({"ToolCallError", "ToolTimeoutError", "ToolServerDiedError"})


def _plain(value: JsonValue) -> JsonValue:
    """``value`` with whole floats as ints: the store may give back 0.0 as 0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _digest(parts: Sequence[JsonValue]) -> str:
    plain = _plain(list(parts))
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def model_key(node: str | None, agent: str | None, asked: str, request: JsonValue) -> str:
    """The key of a model call (``request`` as recorded: redacted JSON)."""
    return _digest(["model", node, agent, asked, request])


def tool_key(node: str | None, agent: str | None, tool: str, args: JsonValue) -> str:
    """The key of a tool call (``args`` as recorded: redacted JSON)."""
    return _digest(["tool", node, agent, tool, args])


def identity(model: str, version: str | None, digest: str | None) -> str:
    """What must be unchanged for a recorded answer to stand: the model, version, weights."""
    return f"{model}@{version}#{digest}"


def rebuilt_error(info: ErrorInfo, default: type[AgentMeshError]) -> AgentMeshError:
    """The recorded error raised again: its own class when that takes a message alone and is a
    ``default``, else ``default`` naming it."""
    cls = getattr(errors, info.type, None)
    if isinstance(cls, type) and issubclass(cls, default):
        try:
            return cls(info.message)
        except TypeError:
            pass
    return default(f"{info.type}: {info.message}")


class TapeModel(BaseModel):
    """One recorded model answer (or error)."""

    identities: list[str]
    """The models that gave it: the one that answered, or for an error every model the
    recording shows answering that name (an error is replayed only on one of them)."""
    response: GenerateResponse | None = None
    error: ErrorInfo | None = None

    def answer(self) -> GenerateResponse:
        """The recorded response, or the recorded error raised."""
        if self.error is not None or self.response is None:
            raise rebuilt_error(self.error or ErrorInfo(type="ModelError", message=""), ModelError)
        return self.response.model_copy(deep=True)


class ReplayedTool(BaseModel):
    """What a replay tells the security actor about one tool call: the recorded result or
    error when the tape holds the call, and whether a live side effect is allowed otherwise."""

    tool: str
    result: ToolResult | None = None
    error: ErrorInfo | None = None
    live_effects: bool = False

    @property
    def served(self) -> bool:
        return self.result is not None or self.error is not None

    def answer(self, *, side_effecting: bool) -> ToolResult | None:
        """The recorded result (None: call the tool live); the recorded error raised, or
        ReplayEffectError for a side effect the recording lacks."""
        if self.error is not None:
            raise rebuilt_error(self.error, ToolCallError)
        if self.result is not None:
            return self.result.model_copy(deep=True)
        if side_effecting and not self.live_effects:
            raise ReplayEffectError(self.tool)
        return None


def _model_entry(body: ModelCallEvent, answered: dict[str, set[str]]) -> TapeModel:
    calls = [ToolCall.model_validate(c) for c in body.tool_calls]
    response = GenerateResponse(
        text=body.text,
        tool_calls=calls,
        model=body.backend_model or body.model,
        backend=body.backend or "replay",
        prompt_tokens=body.prompt_tokens,
        completion_tokens=body.completion_tokens,
        duration_s=0.0,
        finish_reason=body.finish_reason or ("tool_calls" if calls else "stop"),
        cached=body.cached,
        version=body.version,
        digest=body.digest,
        fallbacks=body.fallbacks,
        served_by=body.model,
    )
    if body.error is not None:
        return TapeModel(identities=sorted(answered.get(body.asked or "", ())), error=body.error)
    return TapeModel(
        identities=[identity(body.model, body.version, body.digest)], response=response
    )


def _tool_entry(body: ToolCallEvent) -> ReplayedTool | None:
    if body.replayed or (body.error is not None and body.error.type not in _TOOL_ERRORS):
        return None  # served from a journal, or refused by the mesh: not the tool's answer
    if body.error is not None:
        return ReplayedTool(tool=body.tool, error=body.error)
    result = ToolResult(
        server=body.server,
        tool=body.tool.partition(".")[2] or body.tool,
        is_error=body.is_error,
        text=body.text,
        structured=body.structured,
        duration_s=0.0,
    )
    return ReplayedTool(tool=body.tool, result=result)


class ReplayTape:
    """The recorded answers of one run, served once each in recorded order (a Ray actor)."""

    def __init__(self, events: Sequence[RunEvent], *, live_effects: bool = False) -> None:
        self.live_effects = live_effects
        self._models: dict[str, deque[TapeModel]] = {}
        self._tools: dict[str, deque[ReplayedTool]] = {}
        self._counts = ReplayCounts()
        answered: dict[str, set[str]] = {}  # model or route name -> the models that answered
        for e in events:
            if isinstance(e.body, ModelCallEvent) and e.body.error is None and e.body.asked:
                found = identity(e.body.model, e.body.version, e.body.digest)
                answered.setdefault(e.body.asked, set()).add(found)
        for event in events:
            body = event.body
            if event.node is None:
                continue  # the planner's calls: a replay runs the recorded plans
            if isinstance(body, ModelCallEvent) and not body.replayed:
                key = model_key(event.node, event.agent, body.asked or body.model, body.request)
                self._models.setdefault(key, deque()).append(_model_entry(body, answered))
            elif isinstance(body, ToolCallEvent) and (entry := _tool_entry(body)) is not None:
                key = tool_key(event.node, event.agent, body.tool, body.arguments)
                self._tools.setdefault(key, deque()).append(entry)
        self._counts.recorded = sum(map(len, self._models.values())) + sum(
            map(len, self._tools.values())
        )

    def model(self, key: str, identities: Sequence[str]) -> TapeModel | None:
        """The next recorded answer to this call, if the model that gave it is still here."""
        queue = self._models.get(key)
        if queue and (not queue[0].identities or set(queue[0].identities) & set(identities)):
            self._counts.served_model_calls += 1
            return queue.popleft()
        self._counts.live_model_calls += 1
        return None

    def tool(self, key: str, tool: str) -> ReplayedTool:
        """The next recorded answer to this call, or a miss saying whether effects may go live."""
        queue = self._tools.get(key)
        if queue:
            self._counts.served_tool_calls += 1
            return queue.popleft().model_copy(update={"live_effects": self.live_effects})
        self._counts.live_tool_calls += 1
        return ReplayedTool(tool=tool, live_effects=self.live_effects)

    def counts(self) -> ReplayCounts:
        left = sum(map(len, self._models.values())) + sum(map(len, self._tools.values()))
        return self._counts.model_copy(update={"unused": left})


def start_tape(name: str, events: Sequence[RunEvent], *, live_effects: bool) -> ActorHandle:
    """The tape as a named actor (no CPU): hosts find it by the name their run stamp carries."""
    actor = ray.remote(num_cpus=0)(ReplayTape).options(name=name)
    return cast(ActorHandle, actor.remote(list(events), live_effects=live_effects))


_HANDLES: dict[str, ActorHandle] = {}


def _tape(scope: TaskScope | None) -> tuple[ActorHandle, str] | None:
    """The tape this task's run is served from, and its node (None outside a replay)."""
    stamp = scope.idempotency if scope is not None else None
    if stamp is None or stamp.replay is None:
        return None
    handle = _HANDLES.get(stamp.replay)
    if handle is None:
        if len(_HANDLES) > 64:  # replays long gone
            _HANDLES.clear()
        handle = _HANDLES[stamp.replay] = ray.get_actor(stamp.replay)
    return handle, stamp.step_id


def _identities(models: ModelRouter, asked: str, request: GenerateRequest) -> list[str]:
    """The models of this mesh that may answer ``request`` sent to ``asked``."""
    try:
        candidates = models.candidates(asked, request)
    except AgentMeshError:
        return []  # the live call fails the same way
    return [
        identity(m, models.models[m].entry.version, models.models[m].digest) for m in candidates
    ]


async def served_model(
    scope: TaskScope | None,
    agent: str,
    asked: str,
    request: GenerateRequest,
    models: ModelRouter,
) -> TapeModel | None:
    """The recorded answer a replay serves for this model call (None: call the model)."""
    tape = _tape(scope)
    if tape is None:
        return None
    handle, node = tape
    key = model_key(node, agent, asked, redacted(request.model_dump(mode="json")))
    identities = _identities(models, asked, request)
    found: TapeModel | None = await await_ray(
        handle.model.remote(key, identities), what="replay tape"
    )
    return found


async def served_tool(
    scope: TaskScope | None, agent: str, tool: str, args: dict[str, Any]
) -> ReplayedTool | None:
    """What a replay tells the security actor about this tool call (None outside a replay)."""
    tape = _tape(scope)
    if tape is None:
        return None
    handle, node = tape
    key = tool_key(node, agent, tool, redacted(args))
    found: ReplayedTool = await await_ray(handle.tool.remote(key, tool), what="replay tape")
    return found
