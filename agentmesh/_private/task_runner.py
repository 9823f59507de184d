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
import time
from functools import partial

from a2a.types import Message, TaskState
from pydantic import JsonValue

from agentmesh._private.skill_invoke import Emit, SkillInvoker
from agentmesh._private.task_book import RunningTask, TaskBook, WaitingTask
from agentmesh._private.task_scope import (
    approval_question,
    request_scope,
    resumed_scope,
    take_approval,
)
from agentmesh.agent import Agent
from agentmesh.errors import (
    AgentMeshError,
    ApprovalRequired,
    InputRequired,
    SkillFailedError,
    UnknownTaskError,
    UserError,
)
from agentmesh.protocols import a2a
from agentmesh.protocols.a2a_tasks import (
    error_message,
    input_message,
    new_id,
    new_task,
    status_event,
)

__all__ = ["TaskRunner"]


class TaskRunner:
    """Runs one agent's skill calls as tasks (see the module docs). Thread-safe: the host calls
    it from Ray's threads, and async skills run on the host's event loop thread."""

    def __init__(
        self, agent: Agent, *, max_waiting: int = 1024, waiting_ttl_s: float = 3600.0
    ) -> None:
        self.agent = agent
        self.name = agent.name
        self._book = TaskBook(max_waiting=max_waiting, waiting_ttl_s=waiting_ttl_s)
        self._skills = SkillInvoker(agent)

    async def run(self, request: Message, emit: Emit, *, progress: bool = True) -> None:
        """Run the call ``request`` carries as a task, emitting its events; never raises."""
        task = self.begin(request, emit, progress=progress)
        if task is not None:
            await self.finish(task, emit)

    def begin(self, request: Message, emit: Emit, *, progress: bool = True) -> RunningTask | None:
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
            waiting = self._book.take_waiting(task_id, call.sender)
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
        task = RunningTask(task_id, context_id, skill, args, call.sender, started, spec, scope)
        if not self._book.claim(task):
            in_use = UserError(f"task id {task_id[:64]!r} is already in use at {self.name!r}")
            self._fail(emit, task_id, context_id, in_use, started)
            return None
        if progress:
            emit(status_event(task_id, context_id, TaskState.TASK_STATE_WORKING))
        if text is not None:  # a lone text part fills one parameter
            try:
                task.args = {**args, **self._skills.text_args(skill, field, text)}
            except AgentMeshError as exc:
                self._book.forget(task)
                self._fail(emit, task_id, context_id, exc, started)
                return None
        return task

    def finish_inline(self, task: RunningTask, emit: Emit) -> None:
        """Run a sync, non-streaming skill (``task.inline``) in this thread, then end the task."""
        error: Exception | None = None
        try:
            if not task.canceled:
                method, kwargs = self._skills.prepare(task)
                self._skills.emit_value(task, method(**kwargs), emit)
        except Exception as exc:
            error = exc
        finally:
            self._book.forget(task)
        self._end(task, error, emit)

    async def finish(self, task: RunningTask, emit: Emit) -> None:
        """Run any skill on the current event loop, then end the task; never raises (but for
        the CancelledError of a caller that went away)."""
        job = asyncio.current_task()
        if job is not None:
            task.stop = partial(asyncio.get_running_loop().call_soon_threadsafe, job.cancel)
        error: Exception | None = None
        try:
            if not task.canceled:
                await self._skills.execute(task, emit)
        except asyncio.CancelledError:
            if not task.canceled:  # the caller itself went away: not ours to report
                raise
            if job is not None:
                job.uncancel()
        except Exception as exc:
            error = exc
        finally:
            self._book.forget(task)
        self._end(task, error, emit)

    def cancel(self, task_id: str, sender: str) -> bool:
        """Cancel ``sender``'s running or waiting task; False if it has none of that id."""
        return self._book.cancel(task_id, sender)

    # --- internals ---------------------------------------------------------------------------

    def _end(self, task: RunningTask, error: Exception | None, emit: Emit) -> None:
        """The task's final event: canceled, completed, input-required or failed."""
        task_id, context_id = task.task_id, task.context_id
        timing = (task.started, time.time())
        usage = task.scope.usage if task.scope is not None else None
        if task.canceled:
            emit(status_event(task_id, context_id, TaskState.TASK_STATE_CANCELED, timing=timing))
        elif error is None:
            used = usage.model_dump(mode="json") if usage and usage.models else None
            record = task.scope.events if task.scope is not None else None
            state = TaskState.TASK_STATE_COMPLETED
            emit(status_event(task_id, context_id, state, timing=timing, usage=used, record=record))
        elif isinstance(error, InputRequired | ApprovalRequired):
            approval, tool = None, ""
            if isinstance(error, ApprovalRequired):  # asks the human: this exact call, once?
                approval, tool, error = error.key, error.tool, approval_question(error)
            error.agent, error.skill, error.task_id = self.name, task.skill, task_id
            waiting = WaitingTask(
                task.skill,
                task.args,
                task.sender,
                error.field,
                time.monotonic(),
                task.scope,
                approval,
                tool,
            )
            self._book.park(task_id, waiting)
            question = input_message(context_id, task_id, error)
            state = TaskState.TASK_STATE_INPUT_REQUIRED
            emit(status_event(task_id, context_id, state, message=question, timing=timing))
        else:
            if not isinstance(error, AgentMeshError):
                error = SkillFailedError(self.name, task.skill, type(error).__name__, str(error))
            record = task.scope.events if task.scope is not None else None
            self._fail(emit, task_id, context_id, error, task.started, record)

    @staticmethod
    def _fail(
        emit: Emit,
        task_id: str,
        context_id: str,
        error: AgentMeshError,
        started: float,
        record: list[dict[str, JsonValue]] | None = None,
    ) -> None:
        """Fail the task with ``error``; ``record``: what it did first, for the recorder."""
        timing = (started, time.time())
        message = error_message(context_id, task_id, error)
        state = TaskState.TASK_STATE_FAILED
        emit(
            status_event(task_id, context_id, state, message=message, timing=timing, record=record)
        )
