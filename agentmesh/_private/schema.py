"""Skill schemas from type hints and docstrings, built when the skill is defined.

A skill's input schema is a pydantic model made from its parameters; its output schema comes
from the return annotation. Descriptions come from the docstring (Google style ``Args:``), so
the code is the single source of truth, as in MCP's and the OpenAI Agents SDK's decorators.
"""

from __future__ import annotations

import collections.abc
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from agentmesh.errors import AgentDefinitionError

__all__ = ["SkillSchema", "build_skill_schema", "parse_docstring"]

_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Note):\s*$")
_PARAM = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Return (description, {param: description}) from a Google-style docstring."""
    text = inspect.cleandoc(doc or "")
    description: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    base_indent: int | None = None
    for line in text.splitlines():
        header = _SECTION.match(line)
        if header:
            section, current, base_indent = header.group(1), None, None
            continue
        if section is None:
            description.append(line)
        elif section in ("Args", "Arguments", "Parameters") and line.strip():
            indent = len(line) - len(line.lstrip())
            match = _PARAM.match(line)
            if match and (base_indent is None or indent <= base_indent):
                base_indent = indent
                current = match.group(1).lstrip("*")
                params[current] = match.group(2).strip()
            elif current:  # a continuation line, indented deeper than the parameter
                params[current] = f"{params[current]} {line.strip()}".strip()
    return "\n".join(description).strip(), params


@dataclass(frozen=True)
class SkillSchema:
    """Everything the mesh knows about one skill, derived once at definition time."""

    name: str
    attr: str
    description: str
    input_model: type[BaseModel]
    output_adapter: TypeAdapter[Any]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    is_async: bool
    #: A generator skill: each yielded item is one chunk of its result, streamed as produced;
    #: ``item_adapter`` validates one item, ``output_adapter`` the list of them all.
    streams: bool = False
    item_adapter: TypeAdapter[Any] | None = None
    tags: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    param_names: tuple[str, ...] = field(default=())


_STREAM_HINTS = (
    collections.abc.Iterator,
    collections.abc.Iterable,
    collections.abc.Generator,
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.AsyncGenerator,
)


def _yielded_type(hint: Any, where: str) -> Any:
    """``T`` of a generator skill's ``Iterator[T]`` / ``AsyncIterator[T]`` (or Generator) hint."""
    origin, args = get_origin(hint), get_args(hint)
    if origin not in _STREAM_HINTS or not args:
        raise AgentDefinitionError(
            f"skill {where} is a generator: annotate its return as Iterator[T] or "
            "AsyncIterator[T], where T is the type of each chunk it yields"
        )
    return args[0]


def build_skill_schema(
    func: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    tags: tuple[str, ...] = (),
    examples: tuple[str, ...] = (),
) -> SkillSchema:
    """Build the schema of a skill method; raise AgentDefinitionError if a hint is missing."""
    where = getattr(func, "__qualname__", repr(func))
    try:
        hints = get_type_hints(func, include_extras=True)
    except Exception as exc:  # NameError for an unresolvable forward reference, mostly
        raise AgentDefinitionError(f"skill {where}: cannot resolve its type hints: {exc}") from exc
    doc_description, param_docs = parse_docstring(func.__doc__)
    text = description if description is not None else doc_description
    if not text:
        raise AgentDefinitionError(
            f"skill {where} has no description: add a docstring (it becomes the A2A skill's "
            "description that planners and other agents read)"
        )
    fields: dict[str, Any] = {}
    params = list(inspect.signature(func).parameters.values())
    if not params or params[0].name != "self":
        raise AgentDefinitionError(f"skill {where} must be a method whose first parameter is self")
    for param in params[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise AgentDefinitionError(
                f"skill {where}: *{param.name} is not allowed; skills take named, typed parameters"
            )
        if param.name not in hints:
            raise AgentDefinitionError(
                f"skill {where}: parameter {param.name!r} has no type hint; "
                "skills need one on every parameter to build their input schema"
            )
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (
            hints[param.name],
            Field(default=default, description=param_docs.get(param.name)),
        )
    if "return" not in hints:
        raise AgentDefinitionError(
            f"skill {where} has no return type hint; add one (use -> None for no result)"
        )
    model_name = re.sub(r"\W", "_", where) + "_Input"
    streams = inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)
    item: Any = _yielded_type(hints["return"], where) if streams else None
    try:
        input_model = create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
        item_adapter: TypeAdapter[Any] | None = TypeAdapter(item) if streams else None
        returned: Any = list.__class_getitem__(item) if streams else hints["return"]
        output_adapter: TypeAdapter[Any] = TypeAdapter(returned)
        input_schema = input_model.model_json_schema()
        output_schema = output_adapter.json_schema()
    except Exception as exc:  # pydantic cannot build a schema for some hint
        raise AgentDefinitionError(f"skill {where}: its type hints give no schema: {exc}") from exc
    return SkillSchema(
        name=name or func.__name__,
        attr=func.__name__,
        description=text,
        input_model=input_model,
        output_adapter=output_adapter,
        input_schema=input_schema,
        output_schema=output_schema,
        is_async=inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func),
        streams=streams,
        item_adapter=item_adapter,
        tags=tags,
        examples=examples,
        param_names=tuple(fields),
    )
