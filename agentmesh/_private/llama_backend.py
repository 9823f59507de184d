"""llama.cpp backend: plain completion with a GGUF model through llama-cpp-python.

llama_cpp is imported lazily so the core framework works without the ``llama`` extra.
The bundled Gemma 3 270M is a base model (not instruction tuned), so requests run as plain
completion over ``system + prompt``; the chat API and its templates are not used.
``generate_stream`` yields the same answer piece by piece as llama.cpp samples it.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from agentmesh._private.llama_grammar import build_grammar
from agentmesh._private.tool_protocol import parse_tools_answer, tools_preamble, tools_schema
from agentmesh.errors import ModelError
from agentmesh.inference import (
    GenerateChunk,
    GenerateRequest,
    GenerateResponse,
    ModelBackend,
    ToolCall,
)

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

    device = "cpu"  # no layers are offloaded: the actor's CPUs are what it holds

    def __init__(
        self,
        *,
        path: str,
        n_ctx: int,
        n_threads: int,
        seed: int,
        chat: bool = False,
        chat_template: str | None = None,
    ) -> None:
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
        self._bos = ""
        self._chat = self._formatter(chat_template) if chat else None

    def _formatter(self, template: str | None) -> Any:
        """The chat template's renderer (the file's own template unless one is given)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = template or self._llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelError(
                f"{self._model} has no chat template: give LlamaCppModel(chat_template=...) or "
                'use prompt_format="plain"'
            )
        eos, bos = self._llama.token_eos(), self._llama.token_bos()
        self._bos = self._llama._model.token_get_text(bos) if bos != -1 else ""
        eos_text = self._llama._model.token_get_text(eos) if eos != -1 else ""
        return Jinja2ChatFormatter(template=template, eos_token=eos_text, bos_token=self._bos)

    @property
    def name(self) -> str:
        return "llama_cpp"

    def _prepare(self, request: GenerateRequest) -> tuple[str, Any]:
        """The completion prompt and grammar (None: unconstrained) of a request."""
        prompt = request.prompt
        if request.tools:
            prompt = tools_preamble(request) + prompt
        if self._chat is not None:
            prompt = self.chat_prompt(request.system, prompt)
        elif request.system:
            prompt = f"{request.system}\n\n{prompt}"
        schema = tools_schema(request) if request.tools else request.json_schema
        grammar = None
        if schema is not None:
            grammar = build_grammar(self._llama_cpp, self._llama._model.vocab, schema)
        return prompt, grammar

    def chat_prompt(self, system: str | None, prompt: str) -> str:
        """``system`` and ``prompt`` as chat messages through the template (without its BOS:
        llama.cpp adds one when it tokenizes)."""
        if self._chat is None:
            raise ModelError(f"{self._model} was not loaded with prompt_format='chat'")
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        rendered: str = self._chat(messages=messages).prompt
        return (
            rendered[len(self._bos) :] if self._bos and rendered.startswith(self._bos) else rendered
        )

    def _complete(self, prompt: str, grammar: Any, request: GenerateRequest, stream: bool) -> Any:
        try:
            return self._llama.create_completion(
                prompt,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                stop=list(request.stop),
                seed=self.seed if request.seed is None else request.seed,
                grammar=grammar,
                stream=stream,
            )
        except ValueError as exc:  # e.g. the prompt does not fit the context window
            raise ModelError(f"llama.cpp rejected the request: {exc}") from exc

    def _response(
        self,
        request: GenerateRequest,
        text: str,
        finish: str,
        usage: tuple[int, int],
        *,
        constrained: bool,
        start: float,
    ) -> GenerateResponse:
        tool_calls: list[ToolCall] = []
        if constrained:
            text = text.strip()  # the JSON grammar allows a trailing space
        if request.tools:
            text, tool_calls = parse_tools_answer(text, json_answer=request.json_schema)
            if tool_calls:
                finish = "tool_calls"
        return GenerateResponse(
            text=text,
            tool_calls=tool_calls,
            model=self._model,
            backend=self.name,
            prompt_tokens=usage[0],
            completion_tokens=usage[1],
            duration_s=time.perf_counter() - start,
            finish_reason=finish,
        )

    def generate(self, request: GenerateRequest) -> GenerateResponse:
        """Complete ``system + prompt``; constrain the output when a schema or tools are given."""
        start = time.perf_counter()
        prompt, grammar = self._prepare(request)
        out = self._complete(prompt, grammar, request, stream=False)
        choice = out["choices"][0]
        usage = (out["usage"]["prompt_tokens"], out["usage"]["completion_tokens"])
        return self._response(
            request,
            choice["text"],
            choice["finish_reason"] or "stop",
            usage,
            constrained=grammar is not None,
            start=start,
        )

    def generate_stream(self, request: GenerateRequest) -> Iterator[GenerateChunk]:
        """Yield the text as llama.cpp produces it (about a token a piece), then the response.

        The pieces are the raw generated text (for tools: the JSON reply, parsed only in the
        final response). llama.cpp's stream carries no usage, so the counts come from
        tokenizing the prompt and the text, as llama.cpp itself would.
        """
        start = time.perf_counter()
        prompt, grammar = self._prepare(request)
        pieces: list[str] = []
        finish = "stop"
        for out in self._complete(prompt, grammar, request, stream=True):
            choice = out["choices"][0]
            if choice["text"]:
                pieces.append(choice["text"])
                yield GenerateChunk(text=choice["text"])
            finish = choice["finish_reason"] or finish
        text = "".join(pieces)
        usage = (
            len(self._llama.tokenize(prompt.encode("utf-8"), add_bos=True)),
            len(self._llama.tokenize(text.encode("utf-8"), add_bos=False)) if text else 0,
        )
        yield GenerateChunk(
            response=self._response(
                request, text, finish, usage, constrained=grammar is not None, start=start
            )
        )
