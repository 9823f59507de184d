"""How an agent's host runs a skill call as an A2A task: its events, cancellation and input.

One runner per agent actor. :meth:`TaskRunner.run` turns a skill-call message into the task's
events (see :mod:`agentmesh.protocols.a2a_tasks`) and hands each to ``emit``: the host either
folds them into one task (``handle``, the fast path) or streams them to the caller
(``stream``), so both give the same states and artifacts by construction.

- A generator skill's chunks are artifact updates, sent as they are yielded.
- :meth:`TaskRunner.cancel` stops a running task: an async skill gets ``CancelledError`` at its
  next ``await``; a sync skill's thread cannot be interrupted, so it runs on and its result is
  dropped. The task ends ``canceled``.
- A skill that raises :class:`~agentmesh.InputRequired` leaves its task waiting
  (``input-required``) with its arguments kept here; a message on that task from the same sender
  runs the skill again with the arguments updated by the reply. Waiting tasks are bounded
  (count and age) so callers that never answer cannot grow the actor.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from a2a.types import Message, StreamResponse, TaskState
from pydantic import JsonValue, ValidationError

from agentmesh._private.schema import SkillSchema
from agentmesh.agent import Agent
from agentmesh.errors import (
    AgentMeshError,
    InputRequired,
    SkillFailedError,
    SkillInputError,
    UnknownSkillError,
    UnknownTaskError,
    UserError,
)
from agentmesh.protocols import a2a
from agentmesh.protocols.a2a_tasks import (
    artifact_event,
    error_message,
    input_message,
    json_part,
    new_task,
    status_event,
)

__all__ = ["CONTEXT_ID", "Emit", "TaskRunner", "text_parameter", "validation_messages"]

Emit = Callable[[StreamResponse], Awaitable[None]]

#: The A2A context (one per run) of the call being served, so nested calls stay in it.
CONTEXT_ID: contextvars.ContextVar[str] = contextvars.ContextVar("agentmesh_context_id")


def validation_messages(exc: ValidationError) -> list[str]:
    """pydantic's errors as short 'field: problem' lines."""
    return [
        f"{'.'.join(str(p) for p in err['loc']) or '(input)'}: {err['msg']}" for err in exc.errors()
    ]


def text_parameter(input_schema: Mapping[str, Any]) -> str | None:
    """The parameter a lone text part fills: the skill's one required parameter, if a string."""
    required = list(input_schema.get("required") or [])
    props = input_schema.get("properties") or {}
    if len(required) == 1 and (props.get(required[0]) or {}).get("type") == "string":
        return str(required[0])
    return None


@dataclass
class _Running:
    """A task being run: the asyncio task running it, its sender, and whether it was canceled
    (a CancelledError is ours to report only then; otherwise the caller went away)."""

    job: asyncio.Task[Any] | None
    sender: str
    canceled: bool = False


@dataclass
class _Waiting:
    skill: str
    args: dict[str, JsonValue]
    sender: str
    field: str | None
    since: float


class TaskRunner:
    """Runs one agent's skill calls as tasks (see the module docs)."""

    def __init__(
        self, agent: Agent, *, max_waiting: int = 1024, waiting_ttl_s: float = 3600.0
    ) -> None:
        self.agent = agent
        self.name = agent.name
        self.max_waiting = max_waiting
        self.waiting_ttl_s = waiting_ttl_s
        self._running: dict[str, _Running] = {}
        self._waiting: dict[str, _Waiting] = {}

    async def run(self, request: Message, emit: Emit, *, progress: bool = True) -> None:
        """Run the call ``request`` carries as a task, emitting its events; never raises.

        ``progress=False`` leaves out the ``working`` update, which a caller that folds the
        events into the final task would overwrite anyway (the in-mesh fast path).
        """
        started = time.time()
        context_id = request.context_id
        try:
            call = a2a.parse_skill_call(request)
        except AgentMeshError as exc:
            task_id = request.task_id or uuid.uuid4().hex
            if not request.task_id:
                await emit(new_task(request, task_id, skill="", streams=False))
            await self._fail(emit, task_id, context_id, exc, started)
            return
        task_id = call.task_id or uuid.uuid4().hex
        skill, args, field = call.skill, call.args, None
        if call.continues:
            waiting = self._take_waiting(task_id, call.sender)
            if waiting is None:
                await self._fail(
                    emit, task_id, context_id, UnknownTaskError(task_id, agent=self.name), started
                )
                return
            skill, args, field = waiting.skill, {**waiting.args, **call.args}, waiting.field
        else:
            spec = self.agent.skills.get(skill)
            await emit(new_task(request, task_id, skill=skill, streams=bool(spec and spec.streams)))
            if task_id in self._running or task_id in self._waiting:
                taken = UserError(f"task id {task_id[:64]!r} is already in use at {self.name!r}")
                await self._fail(emit, task_id, context_id, taken, started)
                return
        if progress:
            await emit(status_event(task_id, context_id, TaskState.TASK_STATE_WORKING))
        if call.text is not None:  # a lone text part fills one parameter
            try:
                args = {**args, **self._text_args(skill, field, call.text)}
            except AgentMeshError as exc:
                await self._fail(emit, task_id, context_id, exc, started)
                return
        running = _Running(asyncio.current_task(), call.sender)
        self._running[task_id] = running
        error: BaseException | None = None
        try:
            await self._execute(skill, args, task_id, context_id, emit)
        except asyncio.CancelledError:
            if not running.canceled:  # the caller itself went away: not ours to report
                raise
            if running.job is not None:
                running.job.uncancel()
        except Exception as exc:
            error = exc
        finally:
            self._running.pop(task_id, None)
        timing = (started, time.time())
        if running.canceled:
            await emit(
                status_event(task_id, context_id, TaskState.TASK_STATE_CANCELED, timing=timing)
            )
            return
        if error is None:
            await emit(
                status_event(task_id, context_id, TaskState.TASK_STATE_COMPLETED, timing=timing)
            )
        elif isinstance(error, InputRequired):
            error.agent, error.skill, error.task_id = self.name, skill, task_id
            self._park(task_id, _Waiting(skill, args, call.sender, error.field, time.monotonic()))
            question = input_message(context_id, task_id, error)
            await emit(
                status_event(
                    task_id,
                    context_id,
                    TaskState.TASK_STATE_INPUT_REQUIRED,
                    message=question,
                    timing=timing,
                )
            )
        else:
            if not isinstance(error, AgentMeshError):
                error = SkillFailedError(self.name, skill, type(error).__name__, str(error))
            await self._fail(emit, task_id, context_id, error, started)

    def cancel(self, task_id: str, sender: str) -> bool:
        """Cancel ``sender``'s running or waiting task; False if it has none of that id."""
        running = self._running.get(task_id)
        if running is not None and running.sender == sender and not running.canceled:
            running.canceled = True
            if running.job is not None:
                running.job.cancel()
            return True
        waiting = self._waiting.get(task_id)
        if waiting is not None and waiting.sender == sender:
            del self._waiting[task_id]
            return True
        return False

    # --- internals ---------------------------------------------------------------------------

    async def _execute(
        self,
        skill: str,
        args: dict[str, JsonValue],
        task_id: str,
        context_id: str,
        emit: Emit,
    ) -> None:
        CONTEXT_ID.set(context_id)
        spec = self.agent.skills.get(skill)
        if spec is None:
            raise UnknownSkillError(self.name, skill, known=list(self.agent.skills))
        try:
            inputs = spec.input_model.model_validate(args)
        except ValidationError as exc:
            raise SkillInputError(self.name, skill, validation_messages(exc)) from None
        kwargs = {name: getattr(inputs, name) for name in spec.param_names}
        method = getattr(self.agent, spec.attr)
        artifact_id = uuid.uuid4().hex
        if spec.streams:
            sent = 0
            async for item in _items(method(**kwargs), spec.is_async):
                part = json_part(self._output(spec, item, item=True))
                await emit(
                    artifact_event(task_id, context_id, artifact_id, [part], append=sent > 0)
                )
                sent += 1
            return
        value = (
            await method(**kwargs) if spec.is_async else await asyncio.to_thread(method, **kwargs)
        )
        part = json_part(self._output(spec, value, item=False))
        await emit(artifact_event(task_id, context_id, artifact_id, [part], append=False))

    def _output(self, spec: SkillSchema, value: Any, *, item: bool) -> JsonValue:
        adapter = spec.item_adapter if item and spec.item_adapter else spec.output_adapter
        try:
            output: JsonValue = adapter.dump_python(adapter.validate_python(value), mode="json")
        except ValidationError as exc:
            detail = "; ".join(validation_messages(exc))
            raise SkillFailedError(self.name, spec.name, "OutputValidationError", detail) from None
        return output

    def _text_args(self, skill: str, field: str | None, text: str) -> dict[str, JsonValue]:
        spec = self.agent.skills.get(skill)
        if spec is None:
            raise UnknownSkillError(self.name, skill, known=list(self.agent.skills))
        param = field or text_parameter(spec.input_schema)
        if param is None:
            problem = "(input): this skill takes no text part; send its arguments as a data part"
            raise SkillInputError(self.name, spec.name, [problem])
        return {param: text}

    async def _fail(
        self, emit: Emit, task_id: str, context_id: str, error: AgentMeshError, started: float
    ) -> None:
        timing = (started, time.time())
        message = error_message(context_id, task_id, error)
        await emit(
            status_event(
                task_id, context_id, TaskState.TASK_STATE_FAILED, message=message, timing=timing
            )
        )

    def _park(self, task_id: str, waiting: _Waiting) -> None:
        now = time.monotonic()
        for old in [t for t, w in self._waiting.items() if now - w.since > self.waiting_ttl_s]:
            del self._waiting[old]
        while len(self._waiting) >= self.max_waiting:  # oldest first (insertion order)
            del self._waiting[next(iter(self._waiting))]
        self._waiting[task_id] = waiting

    def _take_waiting(self, task_id: str, sender: str) -> _Waiting | None:
        waiting = self._waiting.get(task_id)
        if waiting is None or waiting.sender != sender:
            return None
        del self._waiting[task_id]
        if time.monotonic() - waiting.since > self.waiting_ttl_s:
            return None
        return waiting


async def _items(produced: Any, is_async: bool) -> Any:
    """The items of a generator skill's result; a sync generator steps in a worker thread."""
    if is_async:
        async for item in produced:
            yield item
        return
    done = object()
    while (item := await asyncio.to_thread(next, produced, done)) is not done:
        yield item
