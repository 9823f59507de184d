"""Helpers of the policy schema: policy files, strict YAML, validators, error text.

Why strict: a policy is security configuration, so a duplicated key (which plain YAML loading
silently resolves to the last one) or a malformed glob is an error, not a guess.
"""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BeforeValidator, ValidationError

from agentmesh._private.scanner import CATEGORIES, RULE_NAMES
from agentmesh.errors import PolicyError

__all__ = [
    "available_packs",
    "check_glob",
    "check_rule_names",
    "check_tool_glob",
    "format_validation_error",
    "listify",
    "none_to",
    "read_policy_source",
    "read_yaml_mapping",
]

_PACKAGE = "agentmesh.policies"


def listify(value: Any) -> Any:
    """A single glob may be written without the list brackets."""
    return [value] if isinstance(value, str) else value


def none_to(empty: type) -> BeforeValidator:
    """A YAML key left empty (all its entries commented out) means the empty value."""
    return BeforeValidator(lambda v: empty() if v is None else v)


def check_glob(pattern: str) -> str:
    """Names never hold whitespace, so a glob with some is a typo that would match nothing."""
    if not pattern or any(c.isspace() for c in pattern):
        raise ValueError(f"glob {pattern!r} must be non-empty and contain no whitespace")
    return pattern


def check_tool_glob(pattern: str) -> str:
    """Tools are "server.tool"; a bare "fs" would silently grant nothing."""
    if pattern != "*" and "." not in check_glob(pattern):
        raise ValueError(f"tool glob {pattern!r} must look like 'server.tool' (e.g. 'fs.*')")
    return pattern


def check_rule_names(names: list[str]) -> list[str]:
    """A misspelt rule to disable must fail loudly, not leave the false positive in place."""
    unknown = sorted(set(names) - RULE_NAMES - CATEGORIES)
    if unknown:
        raise ValueError(
            f"unknown scanner rules or categories {unknown}; categories: {sorted(CATEGORIES)}"
        )
    return names


def available_packs() -> list[str]:
    """The bundled packs, named in every "not found" error so the user sees the choices."""
    root = importlib.resources.files(_PACKAGE)
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def read_policy_source(name_or_path: str) -> tuple[str, str, str]:
    """(YAML text, source for messages, default policy name) of a pack name or a file path."""
    if "/" in name_or_path or "\\" in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path).expanduser()
        try:
            return path.read_text(encoding="utf-8"), str(path), path.stem
        except FileNotFoundError:
            raise PolicyError(
                f"policy file {str(path)!r} not found; bundled packs: {available_packs()}"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"cannot read policy file {str(path)!r}: {exc}") from None
    resource = importlib.resources.files(_PACKAGE).joinpath(f"{name_or_path}.yaml")
    if not re.fullmatch(r"\w[\w.-]*", name_or_path) or not resource.is_file():
        raise PolicyError(
            f"unknown policy pack {name_or_path!r}; available packs: {available_packs()} "
            "(or pass a path to a .yaml file)"
        )
    text = resource.read_text(encoding="utf-8")
    return text, f"{name_or_path}.yaml ({_PACKAGE})", name_or_path


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_yaml_mapping(text: str, *, source: str) -> dict[str, Any]:
    """The top-level mapping of a YAML document; PolicyError (naming ``source``) otherwise."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PolicyError(f"invalid security policy {source}: not valid YAML: {exc}") from None
    if data is None:
        raise PolicyError(f"invalid security policy {source}: the file is empty")
    if not isinstance(data, dict):
        raise PolicyError(
            f"invalid security policy {source}: the top level must be a mapping of keys "
            f"(name, default, messages, tools, scanning, sandbox), not {type(data).__name__}"
        )
    return data


def format_validation_error(source: str, exc: ValidationError) -> str:
    """One line per problem: where in the file, what is wrong, what was there."""
    lines = [f"invalid security policy {source}: {exc.error_count()} problem(s)"]
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            lines.append(f"  - {where}: unknown key")
            continue
        message = error["msg"].removeprefix("Value error, ")
        shown = repr(error.get("input"))
        got = "" if error["type"] == "missing" else f" (got {shown[:60]})"
        lines.append(f"  - {where}: {message}{got}")
    return "\n".join(lines)
