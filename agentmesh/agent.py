"""Agents are plain Python classes; skills are typed methods marked with :func:`skill`.

The class says what it needs (resources, a model, tools) and what it offers (skills). Running
it is the runtime's business: inside a mesh each agent becomes a Ray actor, and the agent
reaches other agents, tools and models only through the :class:`AgentContext` it is bound to,
so every such path passes the security actor.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar, Literal, Protocol, TypeVar, overload

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)

from agentmesh._private.placement import resource_problems
from agentmesh._private.schema import SkillSchema, build_skill_schema, parse_docstring
from agentmesh._private.structured import error_lines, generate_output
from agentmesh.errors import AgentDefinitionError, AgentMeshError, GenerateArgumentsError
from agentmesh.inference import GenerateRequest, GenerateResponse
from agentmesh.protocols.mcp import ToolInfo, ToolResult

__all__ = ["Agent", "AgentContext", "Resources", "skill"]

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_SKILL_ATTR = "__agentmesh_skill__"
_EMPTY_CLASS_KEYS = frozenset({"__module__", "__doc__", "__dict__", "__weakref__"})


class Resources(BaseModel):
    """What an agent's actors ask Ray for; Ray places them on nodes that have it.

    ``labels`` must all match the node's labels (``ray start --labels``): that pins an agent to
    a class of nodes, such as edge devices or one machine. Values may use Ray's selector
    operators (``"!gpu"``, ``"in(a,b)"``). ``strategy`` places the agent's replicas: ``spread``
    over different nodes when there are enough, ``pack`` on as few nodes as possible (reserved
    together), ``default`` as Ray sees fit. A declaration that cannot mean anything raises
    AgentDefinitionError when it is written.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_cpus: float = Field(default=0.25, ge=0)
    num_gpus: float = Field(default=0, ge=0)
    custom: dict[str, float] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    strategy: Literal["default", "spread", "pack"] = "default"

    @model_validator(mode="wrap")
    @classmethod
    def _typed_errors(cls, data: Any, handler: ModelWrapValidatorHandler[Resources]) -> Resources:
        try:
            res = handler(data)
        except ValidationError as exc:
            raise AgentDefinitionError("bad resources: " + "; ".join(error_lines(exc))) from None
        if problems := resource_problems(res):
            raise AgentDefinitionError("bad resources: " + "; ".join(problems))
        return res


class AgentContext(Protocol):
    """What a running agent can reach; the runtime supplies the implementation."""

    async def call(self, agent: str, skill: str, args: dict[str, JsonValue]) -> JsonValue: ...

    async def use_tool(self, tool: str, args: dict[str, JsonValue]) -> ToolResult: ...

    async def list_tools(self) -> list[ToolInfo]: ...

    async def generate(
        self,
        prompt: str,
        *,
        model: str | None,
        max_tokens: int,
        system: str | None,
        stop: list[str],
        json_schema: dict[str, JsonValue] | None,
    ) -> GenerateResponse: ...


@overload
def skill(func: F, /) -> F: ...
@overload
def skill(
    *, name: str | None = None, tags: tuple[str, ...] = (), examples: tuple[str, ...] = ()
) -> Callable[[F], F]: ...
def skill(
    func: Any = None,
    /,
    *,
    name: str | None = None,
    tags: tuple[str, ...] = (),
    examples: tuple[str, ...] = (),
) -> Any:
    """Mark a method as a skill other agents and planners may call.

    Every parameter and the return value need type hints, and the docstring is the skill's
    description: the schema is built here, so a missing hint fails when the class is defined.
    """

    def mark(f: F) -> F:
        setattr(f, _SKILL_ATTR, build_skill_schema(f, name=name, tags=tags, examples=examples))
        return f

    return mark(func) if func is not None else mark


def _default_name(cls: type) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


class Agent:
    """Base class of every agent: subclass it and mark skills with :func:`skill`.

    Class attributes (all optional):
        name: the agent's name in the mesh (default: the class name in snake_case).
        description: for the Agent Card (default: the class docstring).
        resources: what its actor asks Ray for.
        replicas: how many actors serve it (default 1), each with those resources; new tasks
            go to the least busy one, so CPU-bound skills run in parallel across processes.
            Each replica keeps its own instance state. ``Mesh(replicas=...)`` overrides it.
        max_concurrency: how many skill calls one replica runs at once (default None: 32);
            more wait their turn there. A CPU-bound agent sets it to the cores each replica
            has, so its calls do not fight over one process's GIL; an agent that mostly waits
            (on a remote service) and has many calls in flight sets it higher. Calls that wait
            on nested calls to an agent whose own calls wait on them need room on both sides.
            Streaming calls are not counted.
        model: the name of the mesh model :meth:`generate` uses by default.
        tools: MCP tools ("server.tool") it intends to call; the policy still decides.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    version: ClassVar[str] = "0.1.0"
    resources: ClassVar[Resources] = Resources()
    replicas: ClassVar[int] = 1
    max_concurrency: ClassVar[int | None] = None
    model: ClassVar[str | None] = None
    tools: ClassVar[tuple[str, ...]] = ()
    skills: ClassVar[dict[str, SkillSchema]] = {}

    _context: AgentContext | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not set(cls.__dict__) - _EMPTY_CLASS_KEYS:
            # An empty body: either a class with nothing in it (Mesh checks it again) or
            # cloudpickle rebuilding a class by value in a worker, whose attributes it sets
            # only after creating the class.
            return
        cls._define()

    @classmethod
    def _define(cls) -> None:
        """Derive name, description and skills; raise AgentDefinitionError if malformed."""
        if "name" not in cls.__dict__:
            cls.name = _default_name(cls)
        if not _NAME.match(cls.name):
            raise AgentDefinitionError(
                f"agent name {cls.name!r} must be lowercase letters, digits, '_' or '-', "
                "starting with a letter"
            )
        if "description" not in cls.__dict__:
            cls.description = parse_docstring(cls.__doc__)[0]
        if not cls.description:
            raise AgentDefinitionError(f"agent {cls.__name__} needs a docstring or description")
        if not isinstance(cls.resources, Resources):
            raise AgentDefinitionError(f"agent {cls.__name__}: resources must be a Resources")
        if isinstance(cls.replicas, bool) or not isinstance(cls.replicas, int) or cls.replicas < 1:
            raise AgentDefinitionError(
                f"agent {cls.__name__}: replicas is a whole number >= 1, not {cls.replicas!r}"
            )
        bound = cls.max_concurrency
        if bound is not None and (
            isinstance(bound, bool) or not isinstance(bound, int) or bound < 1
        ):
            raise AgentDefinitionError(
                f"agent {cls.__name__}: max_concurrency is None or a whole number >= 1, "
                f"not {bound!r}"
            )
        if isinstance(cls.tools, str):
            raise AgentDefinitionError(f"agent {cls.__name__}: tools must be a tuple of names")
        found: dict[str, SkillSchema] = {}
        for klass in reversed(cls.__mro__):
            for attr in vars(klass).values():
                schema = getattr(attr, _SKILL_ATTR, None)
                if isinstance(schema, SkillSchema):
                    found[schema.name] = schema
        cls.skills = found

    # --- what a running agent can do; each goes through the mesh and its security actor ---

    @property
    def context(self) -> AgentContext:
        if self._context is None:
            raise AgentMeshError(
                f"agent {self.name!r} is not running in a mesh: start it with Mesh(...)"
            )
        return self._context

    def bind(self, context: AgentContext) -> None:
        """Attach the runtime's context; called by the runtime, not by users."""
        self._context = context

    async def call(self, agent: str, skill: str, /, **args: Any) -> JsonValue:
        """Call another agent's skill (an A2A message vetted by the security actor)."""
        return await self.context.call(agent, skill, args)

    async def use_tool(self, tool: str, /, **args: Any) -> ToolResult:
        """Call an MCP tool ("server.tool") the policy grants this agent."""
        return await self.context.use_tool(tool, args)

    async def list_tools(self) -> list[ToolInfo]:
        """The MCP tools the policy grants this agent (it sees no others)."""
        return await self.context.list_tools()

    @overload
    async def generate(
        self,
        prompt: str,
        *,
        model: str | None = None,
        max_tokens: int = 128,
        system: str | None = None,
        stop: list[str] | None = None,
        json_schema: dict[str, JsonValue] | None = None,
    ) -> GenerateResponse: ...
    @overload
    async def generate(
        self,
        prompt: str,
        *,
        output: type[M],
        max_attempts: int = 3,
        model: str | None = None,
        max_tokens: int = 128,
        system: str | None = None,
        stop: list[str] | None = None,
    ) -> M: ...
    async def generate(
        self,
        prompt: str,
        *,
        model: str | None = None,
        max_tokens: int = 128,
        system: str | None = None,
        stop: list[str] | None = None,
        json_schema: dict[str, JsonValue] | None = None,
        output: type[BaseModel] | None = None,
        max_attempts: int = 3,
    ) -> GenerateResponse | BaseModel:
        """Run a mesh model (this agent's ``model`` unless another is named).

        With ``output=SomeModel`` the answer comes back as a validated ``SomeModel``: the
        request carries its JSON schema (a grammar on llama.cpp), and an answer that does not
        validate is sent back to the model with the errors, up to ``max_attempts`` calls in
        all; then OutputValidationError, holding every answer and its errors.
        """
        try:
            request = GenerateRequest(
                prompt=prompt,
                system=system,
                max_tokens=max_tokens,
                stop=stop or [],
                json_schema=json_schema,
            )
        except ValidationError as exc:
            raise GenerateArgumentsError(
                "bad generate arguments: " + "; ".join(error_lines(exc))
            ) from None
        context = self.context

        async def send(request: GenerateRequest) -> GenerateResponse:
            return await context.generate(
                request.prompt,
                model=model,
                max_tokens=request.max_tokens,
                system=request.system,
                stop=request.stop,
                json_schema=request.json_schema,
            )

        if output is None:
            return await send(request)
        return await generate_output(
            send, request, output, max_attempts=max_attempts, model=model or self.model or ""
        )
