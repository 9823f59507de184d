"""Plans: a goal turned into a task DAG of skill calls, validated before anything runs.

A plan comes from a template declared in Python (:class:`TemplatePlanner`) or from a model's
JSON (:class:`ModelPlanner`). Either way :func:`validate_plan` checks it against the skills the
mesh really has (their JSON schemas from the Agent Cards) and returns the networkx DAG; a
model's plan that fails is sent back to the model with the errors, up to a bound (the same
loop as structured output, :mod:`agentmesh._private.structured`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import jsonschema
import networkx as nx
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agentmesh._private.replan import PLAN_FORMAT, replan_prompt, skills_text
from agentmesh._private.structured import (
    Rejected,
    check_max_attempts,
    generate_validated,
    parse_json,
)
from agentmesh.errors import OutputValidationError, PlanningError, PlanValidationError
from agentmesh.grants import ToolGrant
from agentmesh.inference import GenerateRequest, GenerateResponse

if TYPE_CHECKING:  # the executor imports this module
    from agentmesh.results import RunResult

__all__ = [
    "ModelPlanner",
    "Plan",
    "PlanStep",
    "Planner",
    "Replanner",
    "SkillInfo",
    "TemplatePlanner",
    "validate_plan",
]

_STEP_ID = r"^[A-Za-z_][A-Za-z0-9_-]*$"


class PlanStep(BaseModel):
    """One node of the DAG: call ``agent.skill`` with literal ``args`` and upstream ``inputs``.

    ``inputs`` maps a skill parameter to the id of the step whose result feeds it, optionally
    with a path into that result: ``{"notes": "gather"}`` or ``{"title": "draft.title"}``.
    ``tools`` locks the node to the tool calls the goal needs (see :mod:`agentmesh.grants`).
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_STEP_ID)
    agent: str
    skill: str
    args: dict[str, JsonValue] = Field(default_factory=dict)
    inputs: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    tools: list[ToolGrant] | None = None
    """The tools this node may call, with argument constraints where the goal fixes them
    (plan-locked least privilege); None: not plan-locked (only the policy's grants apply)."""
    timeout_s: float | None = Field(default=None, gt=0)
    """This node's time limit per attempt (None: the run's RetryPolicy.timeout_s)."""
    approval: str | None = Field(default=None, min_length=1)
    """A question a human must answer yes to before this node runs (the run pauses until
    then; see ``Mesh.approve_run``). None: the node runs when its inputs are ready."""

    def upstream(self) -> set[str]:
        return {ref.split(".", 1)[0] for ref in self.inputs.values()}


class Plan(BaseModel):
    """A goal and the steps that reach it; ``output`` names the step whose result is the answer."""

    model_config = ConfigDict(extra="forbid")

    goal: str
    steps: list[PlanStep] = Field(min_length=1)
    output: str | None = None


class SkillInfo(BaseModel):
    """A skill as planners see it (from the agent's card)."""

    agent: str
    skill: str
    description: str
    input_schema: dict[str, JsonValue]
    output_schema: dict[str, JsonValue]


def validate_plan(plan: Plan, catalog: Sequence[SkillInfo]) -> nx.DiGraph:
    """Check a plan against the mesh's skills; return its DAG or raise PlanValidationError.

    All problems are collected, so a model re-prompted with them can fix them in one go.
    """
    skills = {(info.agent, info.skill): info for info in catalog}
    agents = {info.agent for info in catalog}
    errors: list[str] = []
    counts = Counter(step.id for step in plan.steps)
    for dup in sorted(i for i, n in counts.items() if n > 1):
        errors.append(f"step id {dup!r} is used more than once")
    graph: nx.DiGraph = nx.DiGraph()
    for step in plan.steps:
        graph.add_node(step.id, step=step)
    for step in plan.steps:
        where = f"step {step.id!r}"
        info = skills.get((step.agent, step.skill))
        if step.agent not in agents:
            errors.append(f"{where}: unknown agent {step.agent!r} (agents: {sorted(agents)})")
        elif info is None:
            known = sorted(s for a, s in skills if a == step.agent)
            errors.append(f"{where}: agent {step.agent!r} has no skill {step.skill!r} ({known})")
        for param, ref in step.inputs.items():
            source = ref.split(".", 1)[0]
            if source not in graph:
                errors.append(f"{where}: input {param!r} refers to missing step {source!r}")
            else:
                graph.add_edge(source, step.id)
        if info is not None:
            errors.extend(_check_params(where, step, info))
    if not nx.is_directed_acyclic_graph(graph):
        cycle = " -> ".join(edge[0] for edge in nx.find_cycle(graph))
        errors.append(f"the plan has a cycle: {cycle}")
    if plan.output is not None and plan.output not in graph:
        errors.append(f"output step {plan.output!r} does not exist")
    if errors:
        raise PlanValidationError(errors)
    return graph


def _check_params(where: str, step: PlanStep, info: SkillInfo) -> list[str]:
    schema: dict[str, Any] = info.input_schema
    if not schema:  # a foreign agent's card publishes no schema: its agent judges the input
        return []
    props: dict[str, Any] = schema.get("properties", {})
    errors = []
    for param in [*step.args, *step.inputs]:
        if param not in props:
            errors.append(f"{where}: {step.agent}.{step.skill} has no parameter {param!r}")
    for param in sorted(set(step.args) & set(step.inputs)):
        errors.append(f"{where}: parameter {param!r} is given both in args and inputs")
    for param in schema.get("required", []):
        if param not in step.args and param not in step.inputs:
            errors.append(f"{where}: required input {param!r} has no producer")
    for param, value in step.args.items():
        if param in props:
            sub = {**props[param], "$defs": schema.get("$defs", {})}
            for err in jsonschema.Draft202012Validator(sub).iter_errors(value):
                errors.append(f"{where}: argument {param!r}: {err.message}")
    return errors


# --- planners --------------------------------------------------------------------------------

Generate = Callable[[str, GenerateRequest], Awaitable[GenerateResponse]]


class Planner(Protocol):
    """Turns a goal into a plan; the mesh validates what it returns."""

    async def plan(self, goal: str, catalog: Sequence[SkillInfo], generate: Generate) -> Plan: ...


@runtime_checkable
class Replanner(Protocol):
    """A planner that can revise a plan after a node failed for good (retries spent).

    ``failed`` is the run as it ended: its plan, every node's record (outputs of the succeeded
    ones, errors of the failed ones). The revised plan is for what remains of the goal: a step
    repeated exactly as it was (id, agent, skill, args, inputs) whose node succeeded, with all
    its upstream steps kept too, is not run again. None: no revision, the run fails.
    """

    async def replan(
        self, failed: RunResult, catalog: Sequence[SkillInfo], generate: Generate
    ) -> Plan | None: ...


class TemplatePlanner:
    """A plan declared in Python: ``build(goal)`` returns the Plan; ``revise(failed)``, when
    given, returns the revised plan after a node failed for good (None: give up)."""

    def __init__(
        self,
        build: Callable[[str], Plan],
        *,
        revise: Callable[[RunResult], Plan | None] | None = None,
    ) -> None:
        self.build = build
        self.revise = revise

    async def plan(self, goal: str, catalog: Sequence[SkillInfo], generate: Generate) -> Plan:
        plan = self.build(goal)
        validate_plan(plan, catalog)
        return plan

    async def replan(
        self, failed: RunResult, catalog: Sequence[SkillInfo], generate: Generate
    ) -> Plan | None:
        return self.revise(failed) if self.revise is not None else None


class ModelPlanner:
    """Asks a mesh model for a JSON plan and re-prompts with the validation errors.

    The re-prompting is structured output's (``Agent.generate(output=...)``): the model sees
    its rejected plan and the errors (schema errors, unknown skills, cycles ...), up to
    ``max_attempts`` calls in all.
    """

    def __init__(self, model: str, *, max_attempts: int = 3, max_tokens: int = 768) -> None:
        self.model = model
        self.max_attempts = check_max_attempts(max_attempts)
        self.max_tokens = max_tokens

    def prompt(self, goal: str, catalog: Sequence[SkillInfo]) -> str:
        return f"{PLAN_FORMAT}Skills:\n{skills_text(catalog)}\nGoal: {goal}\nJSON plan:"

    async def plan(self, goal: str, catalog: Sequence[SkillInfo], generate: Generate) -> Plan:
        return await self._ask(self.prompt(goal, catalog), catalog, generate)

    async def replan(
        self, failed: RunResult, catalog: Sequence[SkillInfo], generate: Generate
    ) -> Plan | None:
        """Show the model the failed plan, what its nodes gave and why they failed, and ask
        for a revised plan (validated and re-prompted like the first)."""
        return await self._ask(replan_prompt(failed, skills_text(catalog)), catalog, generate)

    async def _ask(self, prompt: str, catalog: Sequence[SkillInfo], generate: Generate) -> Plan:
        def parse(text: str) -> Plan:
            plan = parse_json(text, Plan)
            try:
                validate_plan(plan, catalog)
            except PlanValidationError as exc:
                raise Rejected(exc.errors) from None
            return plan

        request = GenerateRequest(
            prompt=prompt,
            max_tokens=self.max_tokens,
            json_schema=Plan.model_json_schema(),
        )
        try:
            return await generate_validated(
                lambda r: generate(self.model, r),
                request,
                parse,
                max_attempts=self.max_attempts,
                model=self.model,
                output="Plan",
            )
        except OutputValidationError as exc:
            raise PlanningError(
                f"no valid plan from model {self.model!r} after {self.max_attempts} attempts; "
                f"last errors: {'; '.join(exc.attempts[-1])}",
                attempts=exc.attempts,
                texts=exc.texts,
            ) from None
