"""Calling a task's skill: arguments validated in, results validated out as artifact events.

Kept apart from :mod:`agentmesh._private.task_runner`, which decides a task's states, because
this is the one place that touches the agent's own code: it binds the skill's method, fills its
parameters (a lone text part included), runs it sync, async or as a generator (each chunk an
artifact update as it is yielded), and checks what it returns against its schema.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Mapping
from typing import Any

from a2a.types import StreamResponse
from pydantic import JsonValue, TypeAdapter, ValidationError

from agentmesh._private.record_sink import SINK
from agentmesh._private.schema import SkillSchema
from agentmesh._private.task_book import RunningTask
from agentmesh._private.task_scope import SCOPE, stamp_result
from agentmesh.agent import Agent
from agentmesh.errors import SkillInputError, SkillOutputError, UnknownSkillError
from agentmesh.protocols.a2a_tasks import artifact_event, json_part, new_id

__all__ = ["CONTEXT_ID", "Emit", "SkillInvoker", "text_parameter", "validation_messages"]

#: Takes each event of a task, in order; called from any thread, so it must be thread-safe.
Emit = Callable[[StreamResponse], None]

#: The A2A context (one per run) of the call being served, so nested calls stay in it.
CONTEXT_ID: contextvars.ContextVar[str] = contextvars.ContextVar("agentmesh_context_id")


def validation_messages(exc: ValidationError, *, root: str = "(input)") -> list[str]:
    """pydantic's errors as short 'field: problem' lines (``root`` names an error of the whole)."""
    return [f"{'.'.join(str(p) for p in err['loc']) or root}: {err['msg']}" for err in exc.errors()]


def _name(adapter: TypeAdapter[Any]) -> str:
    """The declared type's name for an error message: a model's title, else its JSON type."""
    schema = adapter.json_schema()
    return str(schema.get("title") or schema.get("type") or "value")


def text_parameter(input_schema: Mapping[str, Any]) -> str | None:
    """The parameter a lone text part fills: the skill's one required parameter, if a string."""
    required = list(input_schema.get("required") or [])
    props = input_schema.get("properties") or {}
    if len(required) == 1 and (props.get(required[0]) or {}).get("type") == "string":
        return str(required[0])
    return None


class SkillInvoker:
    """Runs the skills of one agent for its tasks (see the module docs)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.name = agent.name

    def prepare(self, task: RunningTask) -> tuple[Callable[..., Any], dict[str, Any]]:
        """The skill's bound method and its validated arguments."""
        CONTEXT_ID.set(task.context_id)
        if task.scope is not None:
            SCOPE.set(task.scope)
            SINK.set(task.scope.events)
        spec = task.spec
        if spec is None:
            raise UnknownSkillError(self.name, task.skill, known=list(self.agent.skills))
        try:
            inputs = spec.input_model.model_validate(task.args)
        except ValidationError as exc:
            raise SkillInputError(self.name, task.skill, validation_messages(exc)) from None
        kwargs = {name: getattr(inputs, name) for name in spec.param_names}
        return getattr(self.agent, spec.attr), kwargs

    async def execute(self, task: RunningTask, emit: Emit) -> None:
        """Run the skill on the current event loop, emitting its result artifacts."""
        method, kwargs = self.prepare(task)
        spec = task.spec
        assert spec is not None  # prepare checked
        if not spec.streams:
            value = (
                await method(**kwargs)
                if spec.is_async
                else await asyncio.to_thread(method, **kwargs)
            )
            self.emit_value(task, value, emit)
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

    def emit_value(self, task: RunningTask, value: Any, emit: Emit) -> None:
        """Emit a skill's whole (validated) result as the task's one artifact."""
        assert task.spec is not None
        part = stamp_result(
            json_part(self._output(task.spec, value, item=False)), task.scope, self.name
        )
        emit(artifact_event(task.task_id, task.context_id, new_id(), [part], append=False))

    def _output(self, spec: SkillSchema, value: Any, *, item: bool) -> JsonValue:
        adapter = spec.item_adapter if item and spec.item_adapter else spec.output_adapter
        try:
            output: JsonValue = adapter.dump_python(adapter.validate_python(value), mode="json")
        except ValidationError as exc:
            errors = validation_messages(exc, root="(result)")
            raise SkillOutputError(self.name, spec.name, errors, output=_name(adapter)) from None
        return output

    def text_args(self, skill: str, field: str | None, text: str) -> dict[str, JsonValue]:
        """The arguments a lone text part makes: ``field`` (asked for) or the one parameter."""
        spec = self.agent.skills.get(skill)
        if spec is None:
            raise UnknownSkillError(self.name, skill, known=list(self.agent.skills))
        param = field or text_parameter(spec.input_schema)
        if param is None:
            problem = "(input): this skill takes no text part; send its arguments as a data part"
            raise SkillInputError(self.name, spec.name, [problem])
        return {param: text}


async def _items(produced: Any, is_async: bool) -> Any:
    """The items of a generator skill's result; a sync generator steps in a worker thread."""
    if is_async:
        async for item in produced:
            yield item
        return
    done = object()
    while (item := await asyncio.to_thread(next, produced, done)) is not done:
        yield item
