"""llama.cpp backend: plain completion with a GGUF model through llama-cpp-python.

llama_cpp is imported lazily so the core framework works without the ``llama`` extra.
The bundled Gemma 3 270M is a base model (not instruction tuned), so requests run as plain
completion over ``system + prompt``; the chat API and its templates are not used.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time
from typing import Any

from pydantic import JsonValue

from agentmesh._private.llama_grammar import build_grammar
from agentmesh.errors import ModelError
from agentmesh.inference import GenerateRequest, GenerateResponse, ModelBackend, ToolCall

__all__ = ["LlamaCppBackend"]

# ggml's log levels as llama.cpp numbers them now; llama-cpp-python 0.3.36's own callback uses
# an older order, so it prints warnings as errors and hides real errors.
_GGML_ERROR, _GGML_CONT = 4, 5
_log_state = {"last": 0}
_log_callback: Any = None


def _install_log_filter(llama_cpp: Any) -> None:
    """Print llama.cpp's errors (and their continuation lines) to stderr; drop the rest."""
    global _log_callback
    if _log_callback is not None:
        return

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: Any) -> None:
        level = _log_state["last"] if level == _GGML_CONT else level
        _log_state["last"] = level
        if level == _GGML_ERROR:
            sys.stderr.write(text.decode("utf-8", "replace"))

    _log_callback = callback  # keep a reference: C holds only the pointer
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


class LlamaCppBackend(ModelBackend):
    """A loaded GGUF model; one request at a time (the model service enforces that)."""

    def __init__(self, *, path: str, n_ctx: int, n_threads: int, seed: int) -> None:
        try:
            import llama_cpp
        except ImportError as exc:
            raise ModelError(
                "llama-cpp-python is not installed; install the `llama` extra: "
                "pip install 'agentmesh[llama]'"
            ) from exc
        self._llama_cpp = llama_cpp
        _install_log_filter(llama_cpp)
        self.path = path
        self.n_threads = n_threads
        self.seed = seed
        try:
            self._llama = llama_cpp.Llama(
                model_path=path,
                n_ctx=n_ctx,
                # More threads than granted CPUs makes generation collapse (library-facts.md).
                n_threads=n_threads,
                n_threads_batch=n_threads,
                seed=seed,
                verbose=False,
            )
        except Exception as exc:
            raise ModelError(f"llama.cpp could not load {path!r}: {exc}") from exc
        self._model = os.path.basename(path)

    @property
    def name(self) -> str:
        return "llama_cpp"

    def generate(self, request: GenerateRequest) -> GenerateResponse:
        """Complete ``system + prompt``; constrain the output when a schema or tools are given."""
        start = time.perf_counter()
        prompt = request.prompt
        if request.tools:
            prompt = _tools_preamble(request) + prompt
        if request.system:
            prompt = f"{request.system}\n\n{prompt}"
        schema = _tools_schema(request) if request.tools else request.json_schema
        grammar = None
        if schema is not None:
            grammar = build_grammar(self._llama_cpp, self._llama._model.vocab, schema)
        try:
            out: Any = self._llama.create_completion(
                prompt,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                stop=list(request.stop),
                seed=self.seed if request.seed is None else request.seed,
                grammar=grammar,
            )
        except ValueError as exc:  # e.g. the prompt does not fit the context window
            raise ModelError(f"llama.cpp rejected the request: {exc}") from exc
        choice = out["choices"][0]
        text: str = choice["text"]
        finish: str = choice["finish_reason"] or "stop"
        tool_calls: list[ToolCall] = []
        if grammar is not None:
            text = text.strip()  # the JSON grammar allows a trailing space
        if request.tools:
            text, tool_calls = _parse_tools_answer(text, json_answer=request.json_schema)
            if tool_calls:
                finish = "tool_calls"
        return GenerateResponse(
            text=text,
            tool_calls=tool_calls,
            model=self._model,
            backend=self.name,
            prompt_tokens=out["usage"]["prompt_tokens"],
            completion_tokens=out["usage"]["completion_tokens"],
            duration_s=time.perf_counter() - start,
            finish_reason=finish,
        )


def _tools_preamble(request: GenerateRequest) -> str:
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


def _tools_schema(request: GenerateRequest) -> dict[str, JsonValue]:
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


def _parse_tools_answer(
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
