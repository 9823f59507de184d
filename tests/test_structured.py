"""Structured output: Agent.generate(output=...) validates, re-prompts with the errors, then fails
typed; skills that return pydantic models are validated and travel as JSON."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel, Field, JsonValue, TypeAdapter, ValidationError

from agentmesh import (
    Agent,
    GenerateArgumentsError,
    GenerateRequest,
    GenerateResponse,
    LlamaCppModel,
    Mesh,
    ModelError,
    ModelPlanner,
    OutputValidationError,
    RunError,
    ScriptedError,
    ScriptedModel,
    ScriptedToolCall,
    SkillFailedError,
    SkillOutputError,
    skill,
)
from agentmesh._private.llama_grammar import grammar_schema
from agentmesh._private.structured import (
    MAX_QUOTED_ERRORS,
    Rejected,
    error_lines,
    generate_output,
    parse_json,
    reprompt,
)
from agentmesh.protocols.a2a import build_agent_card, card_skill_schemas


class Person(BaseModel):
    name: str = Field(max_length=16)
    age: int = Field(ge=0, le=130)
    # The escape (\d) is more than llama-cpp-python's grammar converter translates: the grammar
    # leaves the pattern out and validation catches it.
    badge: str = Field(pattern=r"^[A-Z]{2}\d{3}$")


GOOD = {"name": "Ada", "age": 36, "badge": "AL042"}
GOOD_TEXT = json.dumps(GOOD)
BAD_BADGE = '{"name": "Ada", "age": 36, "badge": "al-42"}'
BADGE_ERROR = "badge: String should match pattern '^[A-Z]{2}\\d{3}$'"
PROMPT = "Ada Lovelace, 36, badge AL042.\nPerson as JSON:"


class Extractor(Agent):
    """Reads people out of texts with a model."""

    name = "extractor"

    @skill
    async def person(self, text: str, model: str, max_attempts: int = 3) -> Person:
        """Extract a person record from a text."""
        return await self.generate(
            text,
            model=model,
            output=Person,
            max_attempts=max_attempts,
            max_tokens=64,
            system="You extract records.",
        )

    @skill
    async def misuse(self, case: str) -> str:
        """Call generate with one kind of bad argument (the model must never be asked)."""
        generate: Any = self.generate  # the overloads rightly refuse these calls
        bad: dict[str, dict[str, Any]] = {
            "dict": {"output": dict},
            "instance": {"output": Person.model_validate(GOOD)},
            "generic": {"output": list[int]},
            "zero_attempts": {"output": Person, "max_attempts": 0},
            "bool_attempts": {"output": Person, "max_attempts": True},
            "both_schemas": {"output": Person, "json_schema": {"type": "object"}},
            "max_tokens": {"output": Person, "max_tokens": 0},
            "plain_max_tokens": {"max_tokens": -1},
        }
        await generate("x", model="unused", **bad[case])
        return "the model was asked"

    @skill
    def wrong_shape(self) -> Person:
        """Return a dict that is not a Person."""
        return {"name": "Ada", "age": -1}  # type: ignore[return-value]

    @skill
    def wrong_model(self) -> Person:
        """Return another model where a Person is declared."""
        return GenerateRequest(prompt="not a person")  # type: ignore[return-value]

    @skill
    async def people(self) -> AsyncIterator[Person]:
        """Stream one good person, then a broken one."""
        yield Person.model_validate(GOOD)
        yield {"name": "Bob"}  # type: ignore[misc]


MODELS = {
    "fixes": ScriptedModel([BAD_BADGE, GOOD_TEXT]),
    "never": ScriptedModel(
        [BAD_BADGE, "Sure, here it is", '{"name": "A very long name indeed", "age": 200}']
    ),
    "broken": ScriptedModel([ScriptedError(message="model is down"), GOOD_TEXT]),
    "late_error": ScriptedModel([BAD_BADGE, ScriptedError(message="model fell over")]),
    "prose": ScriptedModel([f"Here is the record: {GOOD_TEXT} Hope it helps!"]),
    "tool_call": ScriptedModel([ScriptedToolCall(name="lookup"), GOOD_TEXT]),
    "direct": ScriptedModel([BAD_BADGE, GOOD_TEXT]),
    "unused": ScriptedModel([]),
}


@pytest.fixture(scope="module")
async def structured_mesh(ray_session: None) -> AsyncIterator[Mesh]:
    """Each scripted model serves one test (its queue is consumed once)."""
    async with Mesh([Extractor], models=MODELS) as mesh:
        yield mesh


async def _calls(mesh: Mesh, model: str) -> list[GenerateRequest]:
    calls: list[GenerateRequest] = await mesh.model_handle(model).calls.remote()
    return calls


# --- Agent.generate(output=...) through a mesh ------------------------------------------------


async def test_rejected_answer_is_sent_back_with_its_errors(structured_mesh: Mesh) -> None:
    result = await structured_mesh.call("extractor", "person", text=PROMPT, model="fixes")
    assert result == GOOD  # the skill returned a Person; it travels as JSON
    first, second = await _calls(structured_mesh, "fixes")
    assert first.json_schema == Person.model_json_schema()
    assert first.prompt == PROMPT
    # The retry is the original request, the bad answer, then the errors quoted.
    assert second.prompt.startswith(PROMPT + " " + BAD_BADGE)
    assert BADGE_ERROR in second.prompt
    assert second.prompt.index(BAD_BADGE) < second.prompt.index(BADGE_ERROR)
    same = {"system", "json_schema", "max_tokens", "stop", "temperature"}
    assert second.model_dump(include=same) == first.model_dump(include=same)
    assert first.system == "You extract records." and first.max_tokens == 64
    await structured_mesh.model_handle("fixes").assert_consumed.remote()


async def test_gives_up_with_every_answer_and_its_errors(structured_mesh: Mesh) -> None:
    with pytest.raises(OutputValidationError) as info:
        await structured_mesh.call("extractor", "person", text=PROMPT, model="never")
    error = info.value  # raised in the agent's actor, carried back over A2A
    assert isinstance(error, RunError)
    assert error.model == "never" and error.output == "Person"
    assert error.texts == [reply for reply in MODELS["never"].replies if isinstance(reply, str)]
    assert error.attempts[0] == [BADGE_ERROR]
    assert error.attempts[1][0].startswith("the answer is not valid JSON")
    assert set(error.attempts[2]) == {
        "name: String should have at most 16 characters",
        "age: Input should be less than or equal to 130",
        "badge: Field required",
    }
    assert "3 attempt(s)" in str(error) and "badge: Field required" in str(error)
    calls = await _calls(structured_mesh, "never")
    assert len(calls) == 3
    # Each retry starts again from the original request: only the latest answer is quoted.
    assert "Sure, here it is" in calls[2].prompt and BAD_BADGE not in calls[2].prompt


async def test_max_attempts_bounds_the_calls(structured_mesh: Mesh) -> None:
    with pytest.raises(OutputValidationError) as info:
        await structured_mesh.call(
            "extractor", "person", text=PROMPT, model="late_error", max_attempts=1
        )
    assert info.value.texts == [BAD_BADGE]
    assert len(await _calls(structured_mesh, "late_error")) == 1


async def test_a_failing_model_is_not_a_validation_retry(structured_mesh: Mesh) -> None:
    with pytest.raises(ModelError, match="model is down") as info:
        await structured_mesh.call("extractor", "person", text=PROMPT, model="broken")
    assert not isinstance(info.value, OutputValidationError)
    assert len(await _calls(structured_mesh, "broken")) == 1  # the good reply is still queued


async def test_prose_around_the_json_is_accepted(structured_mesh: Mesh) -> None:
    assert await structured_mesh.call("extractor", "person", text="t", model="prose") == GOOD


async def test_a_tool_call_answer_is_rejected_and_retried(structured_mesh: Mesh) -> None:
    assert await structured_mesh.call("extractor", "person", text="t", model="tool_call") == GOOD
    _, second = await _calls(structured_mesh, "tool_call")
    assert "not valid JSON" in second.prompt


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("dict", "output must be a pydantic model class"),
        ("instance", "output must be a pydantic model class"),
        ("generic", "output must be a pydantic model class"),
        ("zero_attempts", "max_attempts must be an int >= 1, got 0"),
        ("bool_attempts", "max_attempts must be an int >= 1, got True"),
        ("both_schemas", "either output= or json_schema="),
        ("max_tokens", "max_tokens: Input should be greater than 0"),
        ("plain_max_tokens", "max_tokens: Input should be greater than 0"),
    ],
)
async def test_bad_arguments_fail_typed_before_the_model_runs(
    structured_mesh: Mesh, case: str, message: str
) -> None:
    with pytest.raises(GenerateArgumentsError, match=message):
        await structured_mesh.call("extractor", "misuse", case=case)
    assert await _calls(structured_mesh, "unused") == []


async def test_mesh_generate_with_output(structured_mesh: Mesh) -> None:
    request = GenerateRequest(prompt=PROMPT)
    person = await structured_mesh.generate("direct", request, output=Person)
    assert person == Person.model_validate(GOOD)
    assert len(await _calls(structured_mesh, "direct")) == 2
    with pytest.raises(GenerateArgumentsError, match="pydantic model class"):
        await structured_mesh.generate("unused", request, output=dict)  # type: ignore[type-var]
    with pytest.raises(GenerateArgumentsError, match="max_attempts"):
        await structured_mesh.generate("unused", request, output=Person, max_attempts=-2)


# --- skills that declare a pydantic return type ------------------------------------------------


async def test_the_output_schema_is_on_the_card_and_in_the_catalog(structured_mesh: Mesh) -> None:
    schema = TypeAdapter(Person).json_schema()
    assert card_skill_schemas(build_agent_card(Extractor))["person"]["output"] == schema
    [info] = [s for s in structured_mesh.catalog() if s.skill == "person"]
    assert info.output_schema == schema


@pytest.mark.parametrize(
    ("skill_name", "problem"),
    [
        ("wrong_shape", "age: Input should be greater than or equal to 0"),
        ("wrong_model", "(result): Input should be a valid dictionary or instance of Person"),
    ],
)
async def test_a_skill_returning_a_wrong_shape_fails_typed(
    structured_mesh: Mesh, skill_name: str, problem: str
) -> None:
    with pytest.raises(SkillOutputError) as info:
        await structured_mesh.call("extractor", skill_name)
    error = info.value
    assert isinstance(error, SkillFailedError)  # what callers already catch
    assert error.agent == "extractor" and error.skill == skill_name and error.output == "Person"
    assert problem in error.errors
    assert str(error).startswith(f"extractor.{skill_name} returned a value that is not a valid")


async def test_a_streamed_item_of_a_wrong_shape_fails_typed(structured_mesh: Mesh) -> None:
    with pytest.raises(SkillOutputError, match=r"extractor\.people") as info:
        await structured_mesh.call("extractor", "people")
    assert "age: Field required" in info.value.errors


# --- the loop's pieces, in-process --------------------------------------------------------------


class _Direct:
    """A scripted model driven in-process, as a model service would."""

    def __init__(self, model: ScriptedModel) -> None:
        self.model = model

    async def __call__(self, request: GenerateRequest) -> GenerateResponse:
        return self.model.generate(request)


async def test_a_cut_off_answer_says_so() -> None:
    model = ScriptedModel(['{"name": "Ada", "age"', GOOD_TEXT])
    send = _Direct(model)
    person = await generate_output(
        send, GenerateRequest(prompt="p", max_tokens=7), Person, max_attempts=2, model="m"
    )
    assert person.badge == "AL042"
    # The scripted model reports "stop"; a real cut-off says "length": check both paths.
    assert "cut off" not in model.calls[1].prompt
    cut = ScriptedModel(['{"name": "Ada"'])

    async def length(request: GenerateRequest) -> GenerateResponse:
        return cut.generate(request).model_copy(update={"finish_reason": "length"})

    with pytest.raises(OutputValidationError) as info:
        await generate_output(
            length, GenerateRequest(prompt="p", max_tokens=7), Person, max_attempts=1, model="m"
        )
    assert info.value.attempts[0][-1] == "the answer was cut off at max_tokens=7"


def test_error_lines_name_field_paths() -> None:
    class Team(BaseModel):
        members: list[Person]

    with pytest.raises(Rejected) as info:
        parse_json('{"members": [{"name": "A", "age": 1, "badge": "AB123"}, {"age": -1}]}', Team)
    assert "members.1.age: Input should be greater than or equal to 0" in info.value.errors
    assert "members.1.name: Field required" in info.value.errors
    with pytest.raises(Rejected) as info:
        parse_json("[1, 2]", Person)
    assert info.value.errors == ["(the answer): Input should be an object"]
    with pytest.raises(ValidationError) as raw:
        Person.model_validate_json("{")
    assert error_lines(raw.value)[0].startswith("the answer is not valid JSON: ")


def test_reprompt_quotes_a_bounded_number_of_errors() -> None:
    errors = [f"field{i}: bad" for i in range(MAX_QUOTED_ERRORS + 5)]
    request = GenerateRequest(prompt="Answer:\n", system="s", json_schema={"type": "object"})
    again = reprompt(request, "{}", errors)
    assert again.prompt.startswith("Answer:\n{}\n\n")  # no gap added after whitespace
    assert f"field{MAX_QUOTED_ERRORS - 1}: bad" in again.prompt
    assert f"field{MAX_QUOTED_ERRORS}: bad" not in again.prompt
    assert "... and 5 more" in again.prompt
    assert again.system == "s" and again.json_schema == {"type": "object"}


def test_grammar_schema_leaves_out_what_the_converter_mistranslates() -> None:
    schema: JsonValue = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "pattern": "^[A-Z]{2,4}$"},  # translated faithfully
            "b": {"type": "string", "pattern": "^\\d{3}$"},  # an escape: \d
            "c": {"type": "string", "pattern": "[a-z]+"},  # not anchored
            "d": {"type": "string", "pattern": "^(?!x)[a-z]$"},  # a lookahead
            "pattern": {"type": "string", "maxLength": 3},  # a property named pattern
        },
    }
    kept = grammar_schema(schema)
    assert isinstance(kept, dict) and isinstance(kept["properties"], dict)
    props = kept["properties"]
    assert props["a"] == {"type": "string", "pattern": "^[A-Z]{2,4}$"}
    assert props["b"] == props["c"] == props["d"] == {"type": "string"}
    assert props["pattern"] == {"type": "string", "maxLength": 3}
    bare = grammar_schema(schema, keep_patterns=False)
    assert isinstance(bare, dict) and isinstance(bare["properties"], dict)
    assert bare["properties"]["a"] == {"type": "string"}


def test_model_planner_refuses_a_bad_bound() -> None:
    with pytest.raises(GenerateArgumentsError, match="max_attempts"):
        ModelPlanner("planner", max_attempts=0)


# --- the real bundled model through llama.cpp ----------------------------------------------------


class Review(BaseModel):
    film: str = Field(max_length=16)
    stars: int = Field(ge=1, le=5)
    verdict: str = Field(pattern=r"^(good|bad)$")
    # Not expressible in the grammar (an escape): left out of it, checked by validation.
    code: str = Field(max_length=8, pattern=r"^\w+$")


class Critic(Agent):
    """Reviews films with the local model."""

    name = "critic"
    model = "gemma"

    @skill
    async def review(self, film: str) -> Review:
        """Review a film."""
        return await self.generate(f"A review of the film {film} as JSON:", output=Review)


@pytest.mark.llama
async def test_llama_constrained_output_validates(ray_session: None) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (`llama` extra)")
    async with Mesh([Critic], models={"gemma": LlamaCppModel()}) as mesh:
        review = Review.model_validate(await mesh.call("critic", "review", film="Alien"))
    assert 1 <= review.stars <= 5 and review.verdict in {"good", "bad"}
