"""A JSON schema as a llama.cpp grammar, limited to what llama-cpp-python 0.3.36 translates right.

Its converter (``llama_cpp.llama_grammar``) ignores numeric bounds (``minimum``, ``maximum``,
``multipleOf``) and the ``email`` / ``uri`` formats: the answer is validated afterwards, so
those are caught there and the model is re-prompted. Patterns are worse: it refuses a pattern
without ``^...$`` anchors, and turns escapes such as ``\\d`` into literal text that llama.cpp
cannot parse; llama-cpp-python then uses the failed (NULL) grammar sampler, and the process
dies (seen here: SIGSEGV on ``{"pattern": "^\\\\d{3}$"}``). So a pattern it cannot translate is
left out of the grammar, and every grammar is parsed by llama.cpp once before it is used.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import JsonValue

from agentmesh.errors import ModelError

__all__ = ["build_grammar", "grammar_schema"]


def _translatable(pattern: str) -> bool:
    """Whether the converter renders this regex faithfully: anchored, no escapes or groups
    with ``(?`` (lookarounds, named and non-capturing groups)."""
    return (
        len(pattern) >= 2
        and pattern.startswith("^")
        and pattern.endswith("$")
        and "\\" not in pattern
        and "(?" not in pattern
    )


def grammar_schema(schema: JsonValue, *, keep_patterns: bool = True) -> JsonValue:
    """``schema`` without the patterns the grammar cannot hold (all of them if not
    ``keep_patterns``); a property that happens to be named ``pattern`` is kept."""
    if isinstance(schema, list):
        return [grammar_schema(item, keep_patterns=keep_patterns) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, JsonValue] = {}
    for key, value in schema.items():
        if key == "pattern" and isinstance(value, str):
            if keep_patterns and _translatable(value):
                out[key] = value
            continue
        out[key] = grammar_schema(value, keep_patterns=keep_patterns)
    return out


def _parses(llama_cpp: Any, vocab: Any, grammar: Any) -> bool:
    # The same call llama-cpp-python makes when sampling; NULL means llama.cpp refused it.
    sampler = llama_cpp.llama_sampler_init_grammar(
        vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
    )
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def build_grammar(llama_cpp: Any, vocab: Any, schema: dict[str, JsonValue]) -> Any:
    """A ``LlamaGrammar`` that constrains output to ``schema`` as far as llama.cpp can;
    ModelError if not even the schema without its patterns gives one."""
    problem = "llama.cpp could not parse the grammar"
    for keep_patterns in (True, False):
        relaxed = grammar_schema(schema, keep_patterns=keep_patterns)
        try:
            grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(relaxed), verbose=False)
        except Exception as exc:  # the converter asserts on schemas it does not know
            problem = f"{type(exc).__name__}: {exc}"
            continue
        if _parses(llama_cpp, vocab, grammar):
            return grammar
    raise ModelError(f"cannot turn the JSON schema into a grammar: {problem}")
