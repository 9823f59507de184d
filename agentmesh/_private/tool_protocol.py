"""The JSON protocol for tool calls on models without a native tool API.

The llama.cpp and torch backends run base models by plain completion: the tools are listed in
the prompt, and the model answers one JSON object, ``{"tool": <name>, "arguments": {...}}`` or
``{"answer": ...}``. llama.cpp constrains that answer with a grammar built from
:func:`tools_schema`; torch validates it against the same schema afterwards.
"""

from __future__ import annotations

import json

from pydantic import JsonValue

from agentmesh.inference import GenerateRequest, ToolCall

__all__ = ["parse_tools_answer", "tools_preamble", "tools_schema"]


def tools_preamble(request: GenerateRequest) -> str:
    """The tool list and the answer format, put before the prompt."""
    lines = [
        "Tools you can call:",
        *(
            f"- {t.name}: {t.description} Arguments (JSON schema): {json.dumps(t.input_schema)}"
            for t in request.tools
        ),
        'Reply with one JSON object: {"tool": <name>, "arguments": {...}} to call a tool, '
        'or {"answer": ...} to answer directly.',
        "",
        "",
    ]
    return "\n".join(lines)


def tools_schema(request: GenerateRequest) -> dict[str, JsonValue]:
    """A grammar schema: exactly one tool call, or a direct answer."""
    options: list[JsonValue] = [
        {
            "type": "object",
            "properties": {"tool": {"const": t.name}, "arguments": t.input_schema},
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        for t in request.tools
    ]
    answer: JsonValue = request.json_schema or {"type": "string"}
    options.append(
        {
            "type": "object",
            "properties": {"answer": answer},
            "required": ["answer"],
            "additionalProperties": False,
        }
    )
    return {"oneOf": options}


def parse_tools_answer(
    raw: str, *, json_answer: dict[str, JsonValue] | None
) -> tuple[str, list[ToolCall]]:
    """Split a grammar-constrained tools reply; truncated output comes back as raw text."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return raw, []  # cut at max_tokens: finish_reason says "length"
    if isinstance(obj, dict) and isinstance(obj.get("tool"), str):
        args = obj.get("arguments")
        return "", [ToolCall(name=obj["tool"], arguments=args if isinstance(args, dict) else {})]
    if isinstance(obj, dict) and "answer" in obj:
        answer = obj["answer"]
        if isinstance(answer, str) and json_answer is None:
            return answer, []
        return json.dumps(answer), []
    return raw, []
