"""Structured output: a model's answer parsed and validated, re-prompted with the errors.

One loop serves ``Agent.generate(output=...)``, ``Mesh.generate(output=...)`` and
:class:`~agentmesh.planner.ModelPlanner`. The request carries the type's JSON schema (the
llama.cpp backend turns it into a grammar where it can); the answer is parsed and validated;
a rejected answer goes back to the model: the original request, the answer, then the errors
(field paths and messages), up to ``max_attempts``, then :class:`OutputValidationError` with
every answer and its errors. Backends complete plain prompts, not chat turns, so that
conversation is written out in the prompt. A model that fails (``ModelError``) is not retried
here: only answers that do not validate are.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from agentmesh.errors import GenerateArgumentsError, OutputValidationError
from agentmesh.inference import GenerateRequest, GenerateResponse

__all__ = [
    "Rejected",
    "check_max_attempts",
    "error_lines",
    "generate_output",
    "generate_validated",
    "parse_json",
    "reprompt",
    "with_output_schema",
]

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
Send = Callable[[GenerateRequest], Awaitable[GenerateResponse]]

#: At most this many errors are quoted back to the model (the error keeps them all).
MAX_QUOTED_ERRORS = 10


class Rejected(Exception):
    """Raised by a parse function: the answer cannot be used, for these reasons."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def check_max_attempts(max_attempts: object) -> int:
    """``max_attempts`` as an int of at least 1, or GenerateArgumentsError."""
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise GenerateArgumentsError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
    return max_attempts


def with_output_schema(request: GenerateRequest, output: object) -> GenerateRequest:
    """The request with ``output``'s JSON schema, once ``output`` is checked to be a model class."""
    if not (isinstance(output, type) and issubclass(output, BaseModel)):
        raise GenerateArgumentsError(
            f"output must be a pydantic model class (a BaseModel subclass), got {output!r}"
        )
    if request.json_schema is not None:
        raise GenerateArgumentsError(
            "give either output= or json_schema=, not both: output= sets the schema"
        )
    return request.model_copy(update={"json_schema": output.model_json_schema()})


def error_lines(exc: ValidationError) -> list[str]:
    """pydantic's errors as short ``field.path: message`` lines, as a model can act on them."""
    lines = []
    for err in exc.errors(include_url=False):
        if err["type"] == "json_invalid":
            detail = err["msg"].removeprefix("Invalid JSON: ")
            lines.append(f"the answer is not valid JSON: {detail}")
            continue
        path = ".".join(str(part) for part in err["loc"]) or "(the answer)"
        lines.append(f"{path}: {err['msg']}")
    return lines


def parse_json(text: str, output: type[M]) -> M:
    """Validate an answer as ``output``; raise Rejected with the errors.

    The answer's outermost ``{...}`` is used when the whole text is not JSON: small models
    like to put prose around it.
    """
    body = text.strip()
    try:
        json.loads(body)
    except ValueError:
        start, end = body.find("{"), body.rfind("}")
        body = body[start : end + 1] if 0 <= start < end else body
    try:
        return output.model_validate_json(body)
    except ValidationError as exc:
        raise Rejected(error_lines(exc)) from None


def reprompt(request: GenerateRequest, answer: str, errors: list[str]) -> GenerateRequest:
    """The next attempt: the original request, the rejected answer, and what was wrong."""
    quoted = [f"- {line}" for line in errors[:MAX_QUOTED_ERRORS]]
    if len(errors) > MAX_QUOTED_ERRORS:
        quoted.append(f"- ... and {len(errors) - MAX_QUOTED_ERRORS} more")
    gap = "" if not request.prompt or request.prompt[-1].isspace() else " "
    prompt = (
        f"{request.prompt}{gap}{answer}\n\n"
        "That answer was rejected:\n" + "\n".join(quoted) + "\n"
        "Answer again with corrected JSON only.\nCorrected JSON:"
    )
    return request.model_copy(update={"prompt": prompt})


async def generate_validated(
    send: Send,
    request: GenerateRequest,
    parse: Callable[[str], T],
    *,
    max_attempts: int,
    model: str,
    output: str,
) -> T:
    """Send ``request`` until ``parse`` accepts an answer, at most ``max_attempts`` times.

    Every retry starts from the original request (not the previous retry), so the prompt
    grows by one answer and its errors, never more.
    """
    check_max_attempts(max_attempts)
    texts: list[str] = []
    attempts: list[list[str]] = []
    current = request
    for _ in range(max_attempts):
        response = await send(current)
        try:
            return parse(response.text)
        except Rejected as exc:
            errors = list(exc.errors)
        if response.finish_reason == "length":
            errors.append(f"the answer was cut off at max_tokens={current.max_tokens}")
        texts.append(response.text)
        attempts.append(errors)
        current = reprompt(request, response.text, errors)
    raise OutputValidationError(model=model, output=output, texts=texts, attempts=attempts)


async def generate_output(
    send: Send, request: GenerateRequest, output: type[M], *, max_attempts: int, model: str
) -> M:
    """A validated ``output`` instance from the model behind ``send`` (arguments checked first)."""
    check_max_attempts(max_attempts)
    request = with_output_schema(request, output)
    return await generate_validated(
        send,
        request,
        lambda text: parse_json(text, output),
        max_attempts=max_attempts,
        model=model,
        output=output.__name__,
    )
