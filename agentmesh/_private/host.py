"""What runs inside an agent's Ray actor: the user's plain agent object and the mesh around it.

The host decodes A2A skill calls, validates arguments against the skill's schema, runs the
skill and answers with an A2A task. It also gives the agent its :class:`AgentContext`: calls to
other agents (through the router and the security actor), tool calls (run by the security
actor, which holds the MCP sessions) and model calls (through the model services).
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import Mapping

import ray
from pydantic import JsonValue, ValidationError
from ray.actor import ActorHandle

from agentmesh._private.router import Peer, Router, await_ray
from agentmesh._private.tool_channel import ToolChannelClient
from agentmesh.agent import Agent
from agentmesh.errors import (
    AgentMeshError,
    SkillFailedError,
    SkillInputError,
    UnknownModelError,
    UnknownSkillError,
)
from agentmesh.inference import GenerateRequest, GenerateResponse
from agentmesh.protocols import a2a
from agentmesh.protocols.mcp import ToolInfo, ToolResult

__all__ = ["AgentHost", "validation_messages"]

# The A2A context (one per run) of the call being served, so nested calls stay in it.
_CONTEXT_ID: contextvars.ContextVar[str] = contextvars.ContextVar("agentmesh_context_id")


def validation_messages(exc: ValidationError) -> list[str]:
    """pydantic's errors as short 'field: problem' lines."""
    return [
        f"{'.'.join(str(p) for p in err['loc']) or '(input)'}: {err['msg']}" for err in exc.errors()
    ]


class _HostContext:
    """The AgentContext the host binds to its agent."""

    def __init__(self, host: AgentHost) -> None:
        self._host = host

    async def call(self, agent: str, skill: str, args: dict[str, JsonValue]) -> JsonValue:
        context_id = _CONTEXT_ID.get(uuid.uuid4().hex)
        result, _task = await self._host.router.send(agent, skill, args, context_id=context_id)
        return result

    async def use_tool(self, tool: str, args: dict[str, JsonValue]) -> ToolResult:
        if self._host.tools is not None:  # the node-local socket: same checks, no Ray hop
            return await self._host.tools.call(self._host.name, tool, args)
        result: ToolResult = await await_ray(
            self._host.security.call_tool.remote(self._host.name, tool, args),
            what="security actor",
        )
        return result

    async def list_tools(self) -> list[ToolInfo]:
        tools: list[ToolInfo] = await await_ray(
            self._host.security.tools_for.remote(self._host.name), what="security actor"
        )
        return tools

    async def generate(
        self,
        prompt: str,
        *,
        model: str | None,
        max_tokens: int,
        system: str | None,
        stop: list[str],
        json_schema: dict[str, JsonValue] | None,
    ) -> GenerateResponse:
        name = model or self._host.agent.model
        handle = self._host.models.get(name) if name else None
        if handle is None:
            raise UnknownModelError(
                f"agent {self._host.name!r} asked for model {name!r}; the mesh has "
                f"{sorted(self._host.models)}"
            )
        request = GenerateRequest(
            prompt=prompt, system=system, max_tokens=max_tokens, stop=stop, json_schema=json_schema
        )
        response: GenerateResponse = await await_ray(
            handle.generate.remote(request), what=f"model {name!r}"
        )
        return response


class AgentHost:
    """The actor body around one agent; the mesh wraps it with ``ray.remote``."""

    def __init__(self, agent_cls: type[Agent], *, models: Mapping[str, ActorHandle]) -> None:
        self.agent = agent_cls()
        self.name = agent_cls.name
        self.models = dict(models)
        self.directory: dict[str, Peer] = {}
        self.router = Router(self.name, self.directory, None)
        self.tools: ToolChannelClient | None = None
        self.agent.bind(_HostContext(self))

    @property
    def security(self) -> ActorHandle:
        if self.router.security is None:
            raise AgentMeshError(f"agent {self.name!r} has not joined its mesh yet")
        return self.router.security

    def node_id(self) -> str:
        """The Ray node this agent was placed on (its security actor runs there too)."""
        return str(ray.get_runtime_context().get_node_id())

    def join(
        self, directory: Mapping[str, Peer], security: ActorHandle, tool_channel: str | None
    ) -> None:
        """Tell the agent who else is in the mesh, which security actor guards its node, and
        the socket that actor answers tool calls on."""
        self.directory.clear()
        self.directory.update(directory)
        self.router.security = security
        self.tools = ToolChannelClient(tool_channel) if tool_channel else None

    async def handle(self, raw: bytes) -> bytes:
        """Serve one A2A skill-call message; always answer with a task, never raise."""

        async def run(call: a2a.SkillCall) -> JsonValue:
            _CONTEXT_ID.set(call.context_id)
            return await self._run(call.skill, call.args)

        def wrap(skill: str, exc: Exception) -> AgentMeshError:
            return SkillFailedError(self.name, skill, type(exc).__name__, str(exc))

        return await a2a.answer_skill_call(raw, run, wrap)

    async def _run(self, skill: str, args: dict[str, JsonValue]) -> JsonValue:
        spec = self.agent.skills.get(skill)
        if spec is None:
            raise UnknownSkillError(self.name, skill, known=list(self.agent.skills))
        try:
            inputs = spec.input_model.model_validate(args)
        except ValidationError as exc:
            raise SkillInputError(self.name, skill, validation_messages(exc)) from None
        kwargs = {name: getattr(inputs, name) for name in spec.param_names}
        method = getattr(self.agent, spec.attr)
        if spec.is_async:
            value = await method(**kwargs)
        else:
            value = await asyncio.to_thread(method, **kwargs)
        try:
            output: JsonValue = spec.output_adapter.dump_python(
                spec.output_adapter.validate_python(value), mode="json"
            )
        except ValidationError as exc:
            raise SkillFailedError(
                self.name, skill, "OutputValidationError", "; ".join(validation_messages(exc))
            ) from None
        return output

    def card(self) -> bytes:
        """This agent's A2A Agent Card, serialised."""
        return a2a.build_agent_card(type(self.agent)).SerializeToString()
