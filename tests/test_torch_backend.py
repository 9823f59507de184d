"""The torch backend: the bundled Gemma GGUF dequantised into transformers, its weights cached.

The module converts the GGUF once into a temporary cache (the slow path, minutes on two busy
cores), then every other build in the module loads that cache entry.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from agentmesh._private import torch_cache
from agentmesh._private.model_service import actor_options, launch_model_service
from agentmesh._private.torch_backend import TorchBackend, first_json
from agentmesh.errors import ConfigError, ModelError, ModelNotFoundError
from agentmesh.inference import (
    GenerateChunk,
    GenerateRequest,
    GenerateResponse,
    ModelInfo,
    TorchModel,
)

from .mesh_agents import WEATHER

pytest.importorskip("transformers", reason="needs the `torch` extra")
pytest.importorskip("gguf", reason="needs the `torch` extra")

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("torch-cache")


@pytest.fixture(scope="module")
def builds(cache_dir: Path) -> Iterator[tuple[TorchBackend, TorchBackend, list[str]]]:
    """The first build (converts) and a second one with conversion made impossible."""
    spec = TorchModel(cache_dir=str(cache_dir), device="auto")
    first = spec.build(n_threads=1)
    converted: list[str] = []
    with pytest.MonkeyPatch.context() as patch:

        def no_conversion(path: str, dtype: object) -> tuple[object, object]:
            converted.append(path)
            raise AssertionError("the cached weights should have been used")

        patch.setattr(torch_cache, "convert_gguf", no_conversion)
        second = spec.build(n_threads=1)
    assert isinstance(first, TorchBackend) and isinstance(second, TorchBackend)
    yield first, second, converted


@pytest.fixture(scope="module")
def model(builds: tuple[TorchBackend, TorchBackend, list[str]]) -> TorchBackend:
    return builds[1]


def test_second_build_loads_the_cache(
    builds: tuple[TorchBackend, TorchBackend, list[str]], cache_dir: Path
) -> None:
    first, second, converted = builds
    assert not first.loaded_from_cache and second.loaded_from_cache and converted == []
    assert first.cache_path == second.cache_path
    (entry,) = os.listdir(cache_dir)  # <sha256>-float32, nothing half-written beside it
    digest, dtype = entry.rsplit("-", 1)
    assert dtype == "float32" and len(digest) == 64 and Path(first.cache_path).name == entry
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(
        os.listdir(cache_dir / entry)
    )
    # Conversion dequantises every tensor and rebuilds the tokenizer; the cache skips both.
    assert second.load_s < first.load_s / 2, (first.load_s, second.load_s)
    assert first.device == second.device == "cpu"  # the test machine has no GPU


def test_greedy_seeded_and_stopped(model: TorchBackend) -> None:
    request = GenerateRequest(prompt="The capital of France is", max_tokens=8)
    response = model.generate(request)
    assert response.text.strip() and response.backend == "torch"
    assert response.model.endswith(".gguf") and response.prompt_tokens > 0
    assert response.completion_tokens == 8 and response.finish_reason == "length"
    assert model.generate(request).text == response.text
    sampled = request.model_copy(update={"temperature": 0.9, "seed": 3})
    assert model.generate(sampled).text == model.generate(sampled).text
    word = response.text.split()[1]
    stopped = model.generate(request.model_copy(update={"stop": [word]}))
    assert stopped.text == response.text[: response.text.index(word)]
    assert stopped.finish_reason == "stop" and stopped.completion_tokens < 8


def test_stream_joins_to_the_text(model: TorchBackend) -> None:
    request = GenerateRequest(prompt="The capital of France is", max_tokens=8)
    *pieces, last = list(model.generate_stream(request))
    assert last.response is not None and len(pieces) > 2
    assert "".join(p.text for p in pieces) == last.response.text == model.generate(request).text
    word = last.response.text.split()[1]
    *pieces, last = list(model.generate_stream(request.model_copy(update={"stop": [word]})))
    assert last.response is not None and last.response.finish_reason == "stop"
    text = "".join(p.text for p in pieces)
    assert text == last.response.text and word not in text


def test_json_schema_validated_and_asked_again(model: TorchBackend) -> None:
    schema: dict = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    few_shot = 'People as JSON:\n{"name": "Ann", "age": 31}\n{"name": "Bob", "age": 42}\n'
    request = GenerateRequest(prompt=few_shot, max_tokens=20, json_schema=schema)
    response = model.generate(request)
    value = json.loads(response.text)
    assert set(value) == {"name", "age"} and isinstance(value["age"], int)
    assert response.finish_reason == "stop"
    # An impossible schema: every answer fails, so a second attempt runs on a prompt holding
    # the first one and its errors (the counts add up over attempts).
    impossible = request.model_copy(
        update={"json_schema": {"type": "object", "required": ["zz"], "properties": {}}}
    )
    assert model.json_attempts == 2
    model.json_attempts = 1
    try:
        single = model.generate(impossible)
    finally:
        model.json_attempts = 2
    twice = model.generate(impossible)
    assert twice.prompt_tokens > 2 * single.prompt_tokens
    assert twice.completion_tokens > single.completion_tokens


def test_tool_call_from_a_few_shot_prompt(model: TorchBackend) -> None:
    weather = WEATHER
    prompt = (
        'Question: What is the weather in Paris?\n{"tool": "get_weather", "arguments": '
        '{"city": "Paris"}}\nQuestion: What is the weather in Rome?\n'
    )
    response = model.generate(GenerateRequest(prompt=prompt, max_tokens=24, tools=[weather]))
    assert response.finish_reason == "tool_calls", response
    (call,) = response.tool_calls
    assert call.name == "get_weather" and isinstance(call.arguments["city"], str)


def test_first_json() -> None:
    assert first_json('Sure: {"a": [1, {"b": 2}]} and more') == '{"a": [1, {"b": 2}]}'
    assert first_json("x {broken [1, 2] y") == "[1, 2]"
    assert first_json("no json here") is None


def test_model_service_on_ray(ray_session: None, model: TorchBackend, cache_dir: Path) -> None:
    spec = TorchModel(cache_dir=str(cache_dir))
    assert "num_gpus" not in actor_options(spec)  # no GPU in the test cluster: none asked for
    with pytest.raises(ConfigError, match="needs a GPU"):
        launch_model_service("gpu", TorchModel(device="cuda", cache_dir=str(cache_dir)))
    actor = launch_model_service("torch", spec)
    try:
        request = GenerateRequest(prompt="The capital of France is", max_tokens=8)
        response: GenerateResponse = ray.get(actor.generate.remote(request))
        assert response.text == model.generate(request).text
        chunks: list[GenerateChunk] = [ray.get(r) for r in actor.generate_stream.remote(request)]
        assert "".join(c.text for c in chunks) == response.text
        info: ModelInfo = ray.get(actor.info.remote())
        assert (info.backend, info.device, info.n_threads) == ("torch", "cpu", 1)
        assert info.path is not None and info.path.endswith(".gguf")
    finally:
        ray.kill(actor)


def test_bad_weights(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        TorchModel(path=str(tmp_path / "none.gguf")).check()
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF but nothing else")
    with pytest.raises(ModelError, match="transformers could not load"):
        TorchModel(path=str(bogus), cache_dir=str(tmp_path / "c")).build(n_threads=1)
