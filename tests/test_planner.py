"""Plans: validation against the catalog, and the model planner's re-prompt loop."""

from __future__ import annotations

import json

import pytest

from agentmesh import (
    GenerateRequest,
    GenerateResponse,
    ModelPlanner,
    Plan,
    PlanningError,
    PlanStep,
    PlanValidationError,
    ScriptedModel,
    SkillInfo,
    TemplatePlanner,
)
from agentmesh.planner import validate_plan

CATALOG = [
    SkillInfo(
        agent="researcher",
        skill="gather",
        description="Gather notes.",
        input_schema={
            "type": "object",
            "properties": {"topic": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["topic"],
        },
        output_schema={"type": "object"},
    ),
    SkillInfo(
        agent="writer",
        skill="compose",
        description="Write.",
        input_schema={
            "type": "object",
            "properties": {"topic": {"type": "string"}, "notes": {"type": "object"}},
            "required": ["topic", "notes"],
        },
        output_schema={"type": "string"},
    ),
]

GOOD = {
    "goal": "g",
    "steps": [
        {"id": "a", "agent": "researcher", "skill": "gather", "args": {"topic": "t"}},
        {
            "id": "b",
            "agent": "writer",
            "skill": "compose",
            "args": {"topic": "t"},
            "inputs": {"notes": "a"},
        },
    ],
    "output": "b",
}


def plan(steps: list[dict[str, object]], **extra: object) -> Plan:
    return Plan.model_validate({"goal": "g", "steps": steps, **extra})


def test_valid_plan_gives_a_dag() -> None:
    graph = validate_plan(Plan.model_validate(GOOD), CATALOG)
    assert list(graph.edges) == [("a", "b")]


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"id": "a", "agent": "ghost", "skill": "gather"}], "unknown agent 'ghost'"),
        ([{"id": "a", "agent": "researcher", "skill": "fly", "args": {}}], "has no skill 'fly'"),
        ([{"id": "a", "agent": "researcher", "skill": "gather"}], "'topic' has no producer"),
        (
            [{"id": "a", "agent": "researcher", "skill": "gather", "args": {"topic": 3}}],
            "argument 'topic': 3 is not of type 'string'",
        ),
        (
            [{"id": "a", "agent": "researcher", "skill": "gather", "args": {"topic": "t", "x": 1}}],
            "has no parameter 'x'",
        ),
        (
            [
                {
                    "id": "b",
                    "agent": "writer",
                    "skill": "compose",
                    "args": {"topic": "t"},
                    "inputs": {"notes": "missing"},
                },
            ],
            "refers to missing step 'missing'",
        ),
        (
            [
                {
                    "id": "a",
                    "agent": "writer",
                    "skill": "compose",
                    "args": {"topic": "t"},
                    "inputs": {"notes": "b"},
                },
                {
                    "id": "b",
                    "agent": "writer",
                    "skill": "compose",
                    "args": {"topic": "t"},
                    "inputs": {"notes": "a"},
                },
            ],
            "cycle",
        ),
        (
            [
                {"id": "a", "agent": "researcher", "skill": "gather", "args": {"topic": "t"}},
                {"id": "a", "agent": "researcher", "skill": "gather", "args": {"topic": "u"}},
            ],
            "used more than once",
        ),
    ],
)
def test_invalid_plans_are_rejected_with_reasons(
    steps: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(PlanValidationError) as info:
        validate_plan(plan(steps), CATALOG)
    assert any(message in error for error in info.value.errors), info.value.errors


def test_all_errors_are_collected() -> None:
    bad = plan(
        [
            {"id": "a", "agent": "ghost", "skill": "x"},
            {"id": "b", "agent": "researcher", "skill": "gather"},
        ],
        output="zzz",
    )
    with pytest.raises(PlanValidationError) as info:
        validate_plan(bad, CATALOG)
    assert len(info.value.errors) == 3


class Recorder:
    """Drives a ScriptedModel in-process as a planner's generate function."""

    def __init__(self, model: ScriptedModel) -> None:
        self.model = model
        self.names: list[str] = []

    async def __call__(self, name: str, request: GenerateRequest) -> GenerateResponse:
        self.names.append(name)
        return self.model.generate(request)


async def test_model_planner_reprompts_with_validation_errors() -> None:
    bad_plan = json.dumps(
        {"goal": "g", "steps": [{"id": "a", "agent": "researcher", "skill": "fly"}]}
    )
    model = ScriptedModel(["this is not json", "Sure! " + bad_plan, json.dumps(GOOD) + " done"])
    generate = Recorder(model)
    result = await ModelPlanner("planner", max_attempts=3).plan("g", CATALOG, generate)
    assert [s.id for s in result.steps] == ["a", "b"]
    model.assert_consumed()
    prompts = [call.prompt for call in model.calls]
    assert "rejected" not in prompts[0]
    assert "not valid JSON" in prompts[1]
    assert "has no skill 'fly'" in prompts[2]
    # Each retry is the first prompt, the rejected answer, then its errors.
    assert prompts[1].startswith(prompts[0] + " this is not json\n")
    assert prompts[2].startswith(prompts[0] + " Sure! " + bad_plan + "\n")
    assert "not valid JSON" not in prompts[2]
    assert generate.names == ["planner"] * 3
    assert model.calls[0].json_schema is not None


async def test_model_planner_gives_up_with_a_typed_error() -> None:
    model = ScriptedModel(["{}", '{"goal": "g", "steps": []}'])
    with pytest.raises(PlanningError) as info:
        await ModelPlanner("planner", max_attempts=2).plan("g", CATALOG, Recorder(model))
    assert len(info.value.attempts) == 2
    assert any("steps" in e for e in info.value.attempts[-1])
    assert info.value.texts == ["{}", '{"goal": "g", "steps": []}']


async def test_template_planner_validates_its_plan() -> None:
    planner = TemplatePlanner(
        lambda goal: Plan(
            goal=goal,
            steps=[
                PlanStep(id="a", agent="researcher", skill="gather", args={"topic": goal}),
            ],
        )
    )
    assert (await planner.plan("edge", CATALOG, Recorder(ScriptedModel()))).steps[0].args == {
        "topic": "edge"
    }
    broken = TemplatePlanner(
        lambda goal: Plan(
            goal=goal,
            steps=[
                PlanStep(id="a", agent="researcher", skill="gather"),
            ],
        )
    )
    with pytest.raises(PlanValidationError):
        await broken.plan("edge", CATALOG, Recorder(ScriptedModel()))
