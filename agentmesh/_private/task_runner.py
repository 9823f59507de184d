"""How an agent's host runs a skill call as an A2A task: its events, cancellation and input.

One runner per agent actor. A task runs in two halves that emit its events (see
:mod:`agentmesh.protocols.a2a_tasks`) to ``emit``: :meth:`TaskRunner.begin` (the checks and the
opening events, in any thread), then :meth:`TaskRunner.finish_inline` (a plain sync skill, in
the calling thread: the fast path needs no event loop) or :meth:`TaskRunner.finish` (anything,
on an event loop). The host either folds the events into one task (``handle``) or streams
them to the caller (``stream``), so both give the same states and artifacts by construction.

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
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from a2a.types import Message, StreamResponse, TaskState
from pydantic import JsonValue, ValidationError

from agentmesh._private.schema import SkillSchema
from agentmesh._private.task_scope import (
    SCOPE,
    TaskScope,
    approval_question,
    request_scope,
    resumed_scope,
    stamp_result,
    take_approval,
)
from agentmesh.agent import Agent
from agentmesh.errors import (
    AgentMeshError,
    ApprovalRequired,
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
    new_id,
    new_task,
    status_event,
)

__all__ = ["CONTEXT_ID", "Emit", "TaskRunner", "text_parameter", "validation_messages"]

#: Takes each event of a task, in order; called from any thread, so it must be thread-safe.
Emit = Callable[[StreamResponse], None]

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
    """A task past its checks: what it runs and for whom, and how to stop it.

    ``stop`` interrupts it (set once an async skill is running on the event loop; a sync skill
    cannot be interrupted). ``canceled`` marks a cancel by its sender: a CancelledError is ours
    to report only then; otherwise the caller went away.
    """

    task_id: str
    context_id: str
    skill: str
    args: dict[str, JsonValue]
    sender: str
    started: float
    spec: SkillSchema | None
    scope: TaskScope | None = None
    stop: Callable[[], object] | None = None
    canceled: bool = False

    @property
    def inline(self) -> bool:
        """Whether it runs best in the calling thread: a plain sync skill (no event loop)."""
        return self.spec is not None and not self.spec.is_async and not self.spec.streams


@dataclass
class _Waiting:
    skill: str
    args: dict[str, JsonValue]
    sender: str
    field: str | None
    since: float
    scope: TaskScope | None = None
    approval: str | None = None  # the key of the one call the question asks to approve
    tool: str = ""


class TaskRunner:
    """Runs one agent's skill calls as tasks (see the module docs). Thread-safe: the host calls
    it from Ray's threads, and async skills run on the host's event loop thread."""

    def __init__(
        self, agent: Agent, *, max_waiting: int = 1024, waiting_ttl_s: float = 3600.0
    ) -> None:
        self.agent = agent
        self.name = agent.name
        self.max_waiting = max_waiting
        self.waiting_ttl_s = waiting_ttl_s
        self._running: dict[str, _Running] = {}
        self._waiting: dict[str, _Waiting] = {}
        self._lock = threading.Lock()

    async def run(self, request: Message, emit: Emit, *, progress: bool = True) -> None:
        """Run the call ``request`` carries as a task, emitting its events; never raises."""
        task = self.begin(request, emit, progress=progress)
        if task is not None:
            await self.finish(task, emit)

    def begin(self, request: Message, emit: Emit, *, progress: bool = True) -> _Running | None:
        """The checks before a skill runs: parse the call, resolve a continued task, emit the
        opening events. The task to run, or None if it already ended (failed).

        ``progress=False`` leaves out the ``working`` update, which a caller that folds the
        events into the final task would overwrite anyway (the in-mesh fast path).
        """
        started = time.time()
        context_id = request.context_id
        try:
            call = a2a.parse_skill_call(request)
            scope = request_scope(request, call.sender)
            scope.run = context_id  # a resumed task keeps its first run's (below)
        except AgentMeshError as exc:
            task_id = request.task_id or new_id()
            if not request.task_id:
                emit(new_task(request, task_id, skill="", streams=False))
            self._fail(emit, task_id, context_id, exc, started)
            return None
        task_id = call.task_id or new_id()
        skill, args, field, text = call.skill, call.args, None, call.text
        if call.continues:
            waiting = self._take_waiting(task_id, call.sender)
            if waiting is None:
                error = UnknownTaskError(task_id, agent=self.name)
                self._fail(emit, task_id, context_id, error, started)
                return None
            skill, args, field = waiting.skill, {**waiting.args, **call.args}, waiting.field
            if waiting.scope is not None:
                scope = resumed_scope(waiting.scope, request, call.sender)
            if waiting.approval is not None:  # the answer approves one call, or ends the task
                try:
                    key, rest = take_approval(waiting.approval, waiting.tool, call.args, text)
                except AgentMeshError as exc:
                    self._fail(emit, task_id, context_id, exc, started)
                    return None
                args, text, field = {**waiting.args, **rest}, None, None
                scope.approve(key)
        spec = self.agent.skills.get(skill)
        if not call.continues:
            emit(new_task(request, task_id, skill=skill, streams=bool(spec and spec.streams)))
        task = _Running(task_id, context_id, skill, args, call.sender, started, spec, scope)
        with self._lock:
            taken = task_id in self._running or task_id in self._waiting
            if not taken:
                self._running[task_id] = task
        if taken:
            in_use = UserError(f"task id {task_id[:64]!r} is already in use at {self.name!r}")
            self._fail(emit, task_id, context_id, in_use, started)
            return None
        if progress:
            emit(status_event(task_id, context_id, TaskState.TASK_STATE_WORKING))
        if text is not None:  # a lone text part fills one parameter
            try:
                task.args = {**args, **self._text_args(skill, field, text)}
            except AgentMeshError as exc:
                self._forget(task)
                self._fail(emit, task_id, context_id, exc, started)
                return None
        return task

    def finish_inline(self, task: _Running, emit: Emit) -> None:
        """Run a sync, non-streaming skill (``task.inline``) in this thread, then end the task."""
        error: Exception | None = None
        try:
            if not task.canceled:
                method, kwargs = self._prepare(task)
                self._emit_value(task, method(**kwargs), emit)
        except Exception as exc:
            error = exc
        finally:
            self._forget(task)
        self._end(task, error, emit)

    async def finish(self, task: _Running, emit: Emit) -> None:
        """Run any skill on the current event loop, then end the task; never raises (but for
        the CancelledError of a caller that went away)."""
        job = asyncio.current_task()
        if job is not None:
            task.stop = partial(asyncio.get_running_loop().call_soon_threadsafe, job.cancel)
        error: Exception | None = None
        try:
            if not task.canceled:
                await self._execute(task, emit)
        except asyncio.CancelledError:
            if not task.canceled:  # the caller itself went away: not ours to report
                raise
            if job is not None:
                job.uncancel()
        except Exception as exc:
            error = exc
        finally:
            self._forget(task)
        self._end(task, error, emit)

    def cancel(self, task_id: str, sender: str) -> bool:
        """Cancel ``sender``'s running or waiting task; False if it has none of that id."""
        with self._lock:
            running = self._running.get(task_id)
            if running is not None and running.sender == sender and not running.canceled:
                running.canceled = True
                if running.stop is not None:
                    running.stop()
                return True
            waiting = self._waiting.get(task_id)
            if waiting is not None and waiting.sender == sender:
                del self._waiting[task_id]
                return True
        return False

    # --- internals ---------------------------------------------------------------------------

    def _prepare(self, task: _Running) -> tuple[Callable[..., Any], dict[str, Any]]:
        """The skill's bound method and its validated arguments."""
        CONTEXT_ID.set(task.context_id)
        if task.scope is not None:
            SCOPE.set(task.scope)
        spec = task.spec
        if spec is None:
            raise UnknownSkillError(self.name, task.skill, known=list(self.agent.skills))
        try:
            inputs = spec.input_model.model_validate(task.args)
        except ValidationError as exc:
            raise SkillInputError(self.name, task.skill, validation_messages(exc)) from None
        kwargs = {name: getattr(inputs, name) for name in spec.param_names}
        return getattr(self.agent, spec.attr), kwargs

    async def _execute(self, task: _Running, emit: Emit) -> None:
        method, kwargs = self._prepare(task)
        spec = task.spec
        assert spec is not None  # _prepare checked
        if not spec.streams:
            value = (
                await method(**kwargs)
                if spec.is_async
                else await asyncio.to_thread(method, **kwargs)
            )
            self._emit_value(task, value, emit)
            return
        artifact_id, sent = new_id(), 0
        async for item in _items(method(**kwargs), spec.is_async):
            part = stamp_result(
                json_part(self._output(spec, item, item=True)), task.scope, self.name
            )
            emit(
                artifact_event(task.task_id, task.context_id, artifact_id, [part], append=sent > 0)
            )
            sent += 1

    def _emit_value(self, task: _Running, value: Any, emit: Emit) -> None:
        assert task.spec is not None
        part = stamp_result(
            json_part(self._output(task.spec, value, item=False)), task.scope, self.name
        )
        emit(artifact_event(task.task_id, task.context_id, new_id(), [part], append=False))

    def _forget(self, task: _Running) -> None:
        with self._lock:
            self._running.pop(task.task_id, None)

    def _end(self, task: _Running, error: Exception | None, emit: Emit) -> None:
        """The task's final event: canceled, completed, input-required or failed."""
        task_id, context_id = task.task_id, task.context_id
        timing = (task.started, time.time())
        if task.canceled:
            emit(status_event(task_id, context_id, TaskState.TASK_STATE_CANCELED, timing=timing))
        elif error is None:
            emit(status_event(task_id, context_id, TaskState.TASK_STATE_COMPLETED, timing=timing))
        elif isinstance(error, InputRequired | ApprovalRequired):
            approval, tool = None, ""
            if isinstance(error, ApprovalRequired):  # asks the human: this exact call, once?
                approval, tool, error = error.key, error.tool, approval_question(error)
            error.agent, error.skill, error.task_id = self.name, task.skill, task_id
            waiting = _Waiting(
                task.skill,
                task.args,
                task.sender,
                error.field,
                time.monotonic(),
                task.scope,
                approval,
                tool,
            )
            self._park(task_id, waiting)
            question = input_message(context_id, task_id, error)
            state = TaskState.TASK_STATE_INPUT_REQUIRED
            emit(status_event(task_id, context_id, state, message=question, timing=timing))
        else:
            if not isinstance(error, AgentMeshError):
                error = SkillFailedError(self.name, task.skill, type(error).__name__, str(error))
            self._fail(emit, task_id, context_id, error, task.started)

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

    @staticmethod
    def _fail(
        emit: Emit, task_id: str, context_id: str, error: AgentMeshError, started: float
    ) -> None:
        timing = (started, time.time())
        message = error_message(context_id, task_id, error)
        emit(
            status_event(
                task_id, context_id, TaskState.TASK_STATE_FAILED, message=message, timing=timing
            )
        )

    def _park(self, task_id: str, waiting: _Waiting) -> None:
        now = time.monotonic()
        with self._lock:
            for old in [t for t, w in self._waiting.items() if now - w.since > self.waiting_ttl_s]:
                del self._waiting[old]
            while len(self._waiting) >= self.max_waiting:  # oldest first (insertion order)
                del self._waiting[next(iter(self._waiting))]
            self._waiting[task_id] = waiting

    def _take_waiting(self, task_id: str, sender: str) -> _Waiting | None:
        with self._lock:
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
