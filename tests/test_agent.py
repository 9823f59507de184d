"""Agent definitions: schemas from hints and docstrings, errors at class definition."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from agentmesh import Agent, AgentDefinitionError, AgentMeshError, Mesh, Resources, skill
from agentmesh._private.schema import parse_docstring


class Point(BaseModel):
    x: int
    y: int


class Geometry(Agent):
    """Does geometry."""

    resources = Resources(num_cpus=0.5, labels={"zone": "edge"})

    @skill
    def shift(self, point: Point, dx: int = 1) -> Point:
        """Move a point right.

        Args:
            point: the point to move.
            dx: how far to move it,
                in units.
        """
        return Point(x=point.x + dx, y=point.y)

    @skill(name="area", tags=("math",), examples=("area of 2x3",))
    async def rectangle_area(self, w: float, h: float) -> float:
        """Area of a rectangle."""
        return w * h


def test_skills_collected_with_schemas() -> None:
    assert Geometry.name == "geometry"
    assert Geometry.description == "Does geometry."
    assert set(Geometry.skills) == {"shift", "area"}
    shift = Geometry.skills["shift"]
    props = shift.input_schema["properties"]
    assert props["dx"]["description"] == "how far to move it, in units."
    assert props["point"] == {"$ref": "#/$defs/Point", "description": "the point to move."}
    assert shift.input_schema["required"] == ["point"]
    assert shift.output_schema["title"] == "Point"
    assert shift.description == "Move a point right."
    area = Geometry.skills["area"]
    assert area.attr == "rectangle_area" and area.is_async and area.tags == ("math",)


def test_input_model_rejects_bad_and_extra_arguments() -> None:
    model = Geometry.skills["shift"].input_model
    assert model.model_validate({"point": {"x": 1, "y": 2}}).dx == 1
    with pytest.raises(ValidationError):
        model.model_validate({"point": {"x": "a", "y": 2}})
    with pytest.raises(ValidationError):
        model.model_validate({"point": {"x": 1, "y": 2}, "extra": 1})


def test_missing_parameter_hint_fails_at_definition() -> None:
    with pytest.raises(AgentDefinitionError, match="parameter 'x' has no type hint"):

        class Bad(Agent):
            """Bad."""

            @skill
            def f(self, x) -> int:  # type: ignore[no-untyped-def]
                """Doc."""
                return 1


def test_missing_return_hint_fails_at_definition() -> None:
    with pytest.raises(AgentDefinitionError, match="no return type hint"):

        class Bad(Agent):
            """Bad."""

            @skill
            def f(self, x: int):  # type: ignore[no-untyped-def]
                """Doc."""
                return x


def test_missing_docstring_and_varargs_fail() -> None:
    with pytest.raises(AgentDefinitionError, match="no description"):

        class NoDoc(Agent):
            """Agent."""

            @skill
            def f(self, x: int) -> int:
                return x

    with pytest.raises(AgentDefinitionError, match=r"\*args"):

        class VarArgs(Agent):
            """Agent."""

            @skill
            def f(self, *args: int) -> int:
                """Doc."""
                return 0


def test_agent_needs_description_and_valid_name() -> None:
    with pytest.raises(AgentDefinitionError, match="docstring"):

        class Undocumented(Agent):
            @skill
            def f(self, x: int) -> int:
                """Doc."""
                return x

    class Empty(Agent):  # an empty body is checked when a mesh is made of it
        pass

    with pytest.raises(AgentDefinitionError, match="docstring"):
        Mesh([Empty])

    with pytest.raises(AgentDefinitionError, match="lowercase"):

        class Shouty(Agent):
            """Shouts."""

            name = "SHOUTY agent"


def test_unbound_agent_cannot_reach_the_mesh() -> None:
    with pytest.raises(AgentMeshError, match="not running in a mesh"):
        _ = Geometry().context


def test_docstring_parser() -> None:
    description, params = parse_docstring(
        """Summary line.

        More text.

        Args:
            a (int): first
                continued.
            b: second
        Returns:
            ignored: not a param
        """
    )
    assert description == "Summary line.\n\nMore text."
    assert params == {"a": "first continued.", "b": "second"}
