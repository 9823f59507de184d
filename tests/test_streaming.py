"""Streaming tokens from a model service: a Ray streaming generator over the backend's pieces."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import ray

from agentmesh._private.model_calls import generate_stream
from agentmesh._private.model_service import ModelService, launch_model_service
from agentmesh.errors import ModelError, ScriptExhaustedError
from agentmesh.inference import (
    GenerateChunk,
    GenerateRequest,
    GenerateResponse,
    LlamaCppModel,
    ScriptedError,
    ScriptedModel,
)


def _collect(actor: ray.actor.ActorHandle, request: GenerateRequest) -> list[GenerateChunk]:
    """Every chunk the actor streams, fetched one by one as they arrive."""
    return [ray.get(ref) for ref in actor.generate_stream.remote(request)]


def _split(chunks: list[GenerateChunk]) -> tuple[list[str], GenerateResponse]:
    *pieces, last = chunks
    assert last.response is not None and last.text == ""
    assert all(c.response is None for c in pieces)
    return [c.text for c in pieces], last.response


def test_backend_without_streaming_streams_one_piece() -> None:
    service = ModelService("m", ScriptedModel(["all at once"]))
    pieces, response = _split(list(service.generate_stream(GenerateRequest(prompt="x"))))
    assert pieces == ["all at once"] and response.text == "all at once"
    assert service.info().calls_served == 1


def test_stream_errors_are_typed_outside_ray() -> None:
    service = ModelService("m", ScriptedModel([ScriptedError(message="overloaded")]))
    with pytest.raises(ModelError, match="overloaded"):
        list(service.generate_stream(GenerateRequest(prompt="x")))
    with pytest.raises(ScriptExhaustedError):
        list(service.generate_stream(GenerateRequest(prompt="y")))
    assert service.info().calls_served == 2


@pytest.fixture(scope="module")
def gemma(ray_session: None) -> Iterator[ray.actor.ActorHandle]:
    """One llama.cpp service with the bundled Gemma for the module."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (`llama` extra)")
    actor = launch_model_service("gemma", LlamaCppModel())
    yield actor
    ray.kill(actor)


@pytest.mark.llama
def test_llama_stream_pieces_join_to_the_full_text(gemma: ray.actor.ActorHandle) -> None:
    request = GenerateRequest(prompt="The capital of France is", max_tokens=16)
    pieces, response = _split(_collect(gemma, request))
    # Greedy: the streamed answer is the same as the one-shot answer, piece by piece.
    whole: GenerateResponse = ray.get(gemma.generate.remote(request))
    assert len(pieces) > 3 and all(pieces)
    assert "".join(pieces) == response.text == whole.text
    assert response.finish_reason == whole.finish_reason
    assert response.prompt_tokens == whole.prompt_tokens
    assert abs(response.completion_tokens - whole.completion_tokens) <= 1
    assert response.backend == "llama_cpp" and response.duration_s > 0


@pytest.mark.llama
def test_llama_stream_stops_and_parses_json(gemma: ray.actor.ActorHandle) -> None:
    whole: GenerateResponse = ray.get(
        gemma.generate.remote(GenerateRequest(prompt="The capital of France is", max_tokens=16))
    )
    stop = whole.text.split()[2]  # a word in the middle of the greedy answer
    request = GenerateRequest(prompt="The capital of France is", max_tokens=16, stop=[stop])
    pieces, response = _split(_collect(gemma, request))
    assert "".join(pieces) == response.text == whole.text[: whole.text.index(stop)]
    assert response.finish_reason == "stop"
    schema: dict = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 10}},
        "required": ["city"],
    }
    request = GenerateRequest(prompt="A city in JSON:", max_tokens=24, json_schema=schema)
    pieces, response = _split(_collect(gemma, request))
    assert len(pieces) > 1 and "".join(pieces).strip() == response.text
    assert json.loads(ray.get(gemma.generate.remote(request)).text) == json.loads(response.text)


@pytest.mark.llama
async def test_stream_helper_yields_as_generated(gemma: ray.actor.ActorHandle) -> None:
    request = GenerateRequest(prompt="Once upon a time", max_tokens=12)
    chunks = [chunk async for chunk in generate_stream(gemma, "gemma", request)]
    pieces, response = _split(chunks)
    assert "".join(pieces) == response.text and response.completion_tokens > 0


async def test_stream_helper_raises_typed_errors(ray_session: None) -> None:
    actor = launch_model_service("m", ScriptedModel([ScriptedError(message="rate limited")]))
    try:
        with pytest.raises(ModelError, match="rate limited"):
            async for _ in generate_stream(actor, "m", GenerateRequest(prompt="x")):
                pass
    finally:
        ray.kill(actor)
