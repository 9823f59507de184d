"""OpenAI-compatible HTTP backend: chat completions against a server someone already runs.

The request becomes one ``POST {base_url}/chat/completions`` (system and user messages, tools
as functions, the JSON schema as ``response_format``); the answer is read through pydantic
models of the OpenAI shapes, so a server that answers something else is a typed error, not a
KeyError. Every failure is a :class:`~agentmesh.errors.ModelServerError` subclass naming the
URL: no connection, a timeout, an HTTP error status, or a body that is not the expected JSON.
Servers differ in what they accept (llama-cpp-python's server answers HTTP 500 to a
``json_schema`` response format it does not know): the spec's ``schema_format`` and
``tool_choice`` adapt the request, and the answer is validated above this layer anyway.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from agentmesh.errors import (
    ModelHTTPError,
    ModelResponseError,
    ModelServerTimeoutError,
    ModelUnreachableError,
)
from agentmesh.inference import (
    GenerateChunk,
    GenerateRequest,
    GenerateResponse,
    ModelBackend,
    OpenAIModel,
    ToolCall,
)

__all__ = ["OpenAIBackend"]

_DETAIL_CHARS = 300


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Function(_Wire):
    name: str = ""
    arguments: str = ""


class _ToolCallOut(_Wire):
    index: int = 0
    function: _Function = Field(default_factory=_Function)


class _Message(_Wire):
    content: str | None = None
    tool_calls: list[_ToolCallOut] | None = None


class _Choice(_Wire):
    message: _Message = Field(default_factory=_Message)
    delta: _Message = Field(default_factory=_Message)
    finish_reason: str | None = None


class _Usage(_Wire):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Completion(_Wire):
    model: str | None = None
    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage | None = None


class _Chunk(_Wire):
    model: str | None = None
    choices: list[_Choice] = Field(default_factory=list)
    usage: _Usage | None = None


class OpenAIBackend(ModelBackend):
    """An HTTP client for one model on an OpenAI-compatible server."""

    device = None

    def __init__(self, spec: OpenAIModel) -> None:
        self._spec = spec
        self.url = spec.base_url.rstrip("/") + "/chat/completions"
        key = spec.api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(timeout=spec.timeout_s, headers=headers)

    @property
    def name(self) -> str:
        return "openai"

    def body(self, request: GenerateRequest, *, stream: bool) -> dict[str, JsonValue]:
        """The chat-completions request body for ``request``."""
        messages: list[JsonValue] = [{"role": "user", "content": request.prompt}]
        if request.system:
            messages.insert(0, {"role": "system", "content": request.system})
        body: dict[str, JsonValue] = {
            "model": self._spec.model,
            "messages": messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": stream,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.input_schema,
                    },
                }
                for t in request.tools
            ]
            choice: JsonValue = self._spec.tool_choice
            if choice == "required" and len(request.tools) == 1:
                choice = {"type": "function", "function": {"name": request.tools[0].name}}
            body["tool_choice"] = choice
        if request.json_schema is not None:
            if self._spec.schema_format == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": request.json_schema},
                }
            else:
                body["response_format"] = {"type": "json_object", "schema": request.json_schema}
        return body

    def _fail(self, exc: httpx.HTTPError) -> Exception:
        if isinstance(exc, httpx.TimeoutException):
            return ModelServerTimeoutError(
                self.url, f"no answer within {self._spec.timeout_s:g}s ({type(exc).__name__})"
            )
        return ModelUnreachableError(self.url, f"{type(exc).__name__}: {exc}")

    def _check_status(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        text = response.read().decode("utf-8", "replace")
        try:
            data = json.loads(text)
            error = data.get("error", data) if isinstance(data, dict) else data
            detail = error.get("message", text) if isinstance(error, dict) else str(error)
        except ValueError:
            detail = text
        detail = " ".join(str(detail).split())[:_DETAIL_CHARS] or response.reason_phrase
        raise ModelHTTPError(self.url, detail, status=response.status_code)

    def generate(self, request: GenerateRequest) -> GenerateResponse:
        """One chat completion."""
        start = time.perf_counter()
        try:
            response = self._client.post(self.url, json=self.body(request, stream=False))
        except httpx.HTTPError as exc:
            raise self._fail(exc) from exc
        self._check_status(response)
        try:
            out = _Completion.model_validate_json(response.content)
        except ValidationError as exc:
            raise ModelResponseError(
                self.url, f"not a chat completion: {_short(exc)}; body {_excerpt(response)}"
            ) from exc
        choice = out.choices[0]
        usage = out.usage or _Usage()
        return self._response(
            out.model,
            choice.message.content or "",
            choice.message.tool_calls or [],
            choice.finish_reason,
            (usage.prompt_tokens, usage.completion_tokens),
            start,
        )

    def generate_stream(self, request: GenerateRequest) -> Iterator[GenerateChunk]:
        """Stream the completion over server-sent events, a piece per content delta.

        Servers that send no usage in the stream (llama-cpp-python's does not) get a
        completion count of one token per content delta and a prompt count of 0.
        """
        start = time.perf_counter()
        text: list[str] = []
        calls: dict[int, _ToolCallOut] = {}
        finish: str | None = None
        model: str | None = None
        usage: _Usage | None = None
        try:
            with self._client.stream("POST", self.url, json=self.body(request, stream=True)) as r:
                self._check_status(r)
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = _Chunk.model_validate_json(data)
                    except ValidationError as exc:
                        raise ModelResponseError(
                            self.url, f"bad stream event: {_short(exc)}: {data[:100]!r}"
                        ) from exc
                    model, usage = chunk.model or model, chunk.usage or usage
                    for choice in chunk.choices:
                        finish = choice.finish_reason or finish
                        if choice.delta.content:
                            text.append(choice.delta.content)
                            yield GenerateChunk(text=choice.delta.content)
                        for part in choice.delta.tool_calls or []:
                            call = calls.setdefault(part.index, _ToolCallOut(index=part.index))
                            call.function.name += part.function.name
                            call.function.arguments += part.function.arguments
        except httpx.HTTPError as exc:
            raise self._fail(exc) from exc
        counts = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, len(text))
        tools = [calls[i] for i in sorted(calls)]
        yield GenerateChunk(
            response=self._response(model, "".join(text), tools, finish, counts, start)
        )

    def _response(
        self,
        model: str | None,
        text: str,
        tools: list[_ToolCallOut],
        finish: str | None,
        usage: tuple[int, int],
        start: float,
    ) -> GenerateResponse:
        calls = [self._tool_call(t) for t in tools]
        return GenerateResponse(
            text=text,
            tool_calls=calls,
            model=model or self._spec.model,
            backend=self.name,
            prompt_tokens=usage[0],
            completion_tokens=usage[1],
            duration_s=time.perf_counter() - start,
            finish_reason="tool_calls" if calls else (finish or "stop"),
        )

    def _tool_call(self, call: _ToolCallOut) -> ToolCall:
        try:
            arguments: Any = json.loads(call.function.arguments or "{}")
        except ValueError as exc:
            raise ModelResponseError(
                self.url,
                f"tool call {call.function.name!r} has arguments that are not JSON: "
                f"{call.function.arguments[:100]!r}",
            ) from exc
        if not isinstance(arguments, dict):
            raise ModelResponseError(
                self.url, f"tool call {call.function.name!r} arguments are not a JSON object"
            )
        return ToolCall(name=call.function.name, arguments=arguments)


def _short(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or '(body)'}: {e['msg']}" for e in exc.errors()[:3]
    )


def _excerpt(response: httpx.Response) -> str:
    return repr(response.content[:100].decode("utf-8", "replace"))
