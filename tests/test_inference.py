"""The inference plane: scripted model, model service on real Ray, and the real llama.cpp model."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from pydantic import TypeAdapter, ValidationError
from ray import cloudpickle

from agentmesh._private.model_service import ModelService, launch_model_service
from agentmesh.errors import ModelError, ModelNotFoundError, ScriptExhaustedError
from agentmesh.inference import (
    GenerateRequest,
    GenerateResponse,
    LlamaCppModel,
    ModelInfo,
    ModelSpec,
    ScriptedError,
    ScriptedModel,
    ScriptedToolCall,
    ToolCall,
    ToolSpec,
)

# --- scripted model ---------------------------------------------------------------------------


def test_scripted_replies_in_order_and_records_calls() -> None:
    model = ScriptedModel(["first", "second reply"])
    r1 = model.generate(GenerateRequest(prompt="a", system="be brief"))
    r2 = model.generate(GenerateRequest(prompt="b c", max_tokens=5))
    assert (r1.text, r2.text) == ("first", "second reply")
    assert r1.finish_reason == "stop" and r1.tool_calls == []
    assert (r1.backend, r1.model) == ("scripted", "scripted")
    assert (r2.prompt_tokens, r2.completion_tokens) == (2, 2)
    assert [c.prompt for c in model.calls] == ["a", "b c"]
    assert model.calls[0].system == "be brief" and model.calls[1].max_tokens == 5
    assert model.remaining == []
    model.assert_consumed()


def test_scripted_tool_call() -> None:
    model = ScriptedModel([ScriptedToolCall(name="search", arguments={"q": "ray", "k": 3})])
    tools = [ToolSpec(name="search", description="Search the web.")]
    response = model.generate(GenerateRequest(prompt="find ray", tools=tools))
    assert response.tool_calls == [ToolCall(name="search", arguments={"q": "ray", "k": 3})]
    assert response.text == "" and response.finish_reason == "tool_calls"
    assert model.calls[0].tools[0].name == "search"


def test_scripted_error_raises_model_error_then_continues() -> None:
    model = ScriptedModel([ScriptedError(message="backend overloaded"), "recovered"])
    with pytest.raises(ModelError, match="backend overloaded"):
        model.generate(GenerateRequest(prompt="x"))
    assert model.generate(GenerateRequest(prompt="y")).text == "recovered"
    assert len(model.calls) == 2


def test_scripted_exhaustion_names_queue_size() -> None:
    model = ScriptedModel(["only"])
    model.generate(GenerateRequest(prompt="1"))
    with pytest.raises(ScriptExhaustedError, match="called 2 times but only 1 replies were queued"):
        model.generate(GenerateRequest(prompt="2"))
    empty = ScriptedModel()
    with pytest.raises(ScriptExhaustedError, match="only 0 replies"):
        empty.generate(GenerateRequest(prompt="x"))


def test_assert_consumed_lists_leftovers() -> None:
    model = ScriptedModel(["a", ScriptedToolCall(name="t"), ScriptedError(message="boom")])
    model.generate(GenerateRequest(prompt="x"))
    assert len(model.remaining) == 2
    with pytest.raises(AssertionError, match="2 of 3 replies left") as info:
        model.assert_consumed()
    assert "name='t'" in str(info.value) and "boom" in str(info.value)


def test_build_returns_fresh_copy_and_leaves_spec_alone() -> None:
    spec = ScriptedModel(["a", "b"])
    backend = spec.build(n_threads=4)
    assert backend is not spec
    backend.generate(GenerateRequest(prompt="x"))
    assert spec.calls == [] and len(spec.remaining) == 2
    assert len(backend.remaining) == 1


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_scripted_pickle_round_trip_keeps_queue_and_calls(dumps: object) -> None:
    model = ScriptedModel(["a", ScriptedToolCall(name="t", arguments={"x": [1, None]}), "c"])
    model.generate(GenerateRequest(prompt="first"))
    clone = pickle.loads(dumps(model))  # type: ignore[operator]
    assert clone.remaining == model.remaining
    assert [c.prompt for c in clone.calls] == ["first"]
    assert clone.generate(GenerateRequest(prompt="2")).tool_calls[0].arguments == {"x": [1, None]}
    assert len(model.remaining) == 2  # the original is independent


def test_model_spec_union_from_config_dicts() -> None:
    adapter: TypeAdapter[ModelSpec] = TypeAdapter(ModelSpec)
    scripted = adapter.validate_python(
        {"kind": "scripted", "replies": ["hi", {"name": "t", "arguments": {}}, {"message": "x"}]}
    )
    assert isinstance(scripted, ScriptedModel)
    assert scripted.replies == ["hi", ScriptedToolCall(name="t"), ScriptedError(message="x")]
    llama = adapter.validate_python({"kind": "llama_cpp", "path": "/m.gguf", "num_cpus": 2})
    assert llama == LlamaCppModel(path="/m.gguf", num_cpus=2)
    with pytest.raises(ValidationError):
        adapter.validate_python({"kind": "llama_cpp", "n_ctxx": 10})


def test_request_validation() -> None:
    with pytest.raises(ValidationError):
        GenerateRequest(prompt="x", max_tokens=0)
    with pytest.raises(ValidationError, match="unique"):
        GenerateRequest(prompt="x", tools=[ToolSpec(name="a"), ToolSpec(name="a")])


def test_check_reports_missing_and_non_gguf_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelNotFoundError, match=str(missing)):
        LlamaCppModel(path=str(missing)).check()
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a model")
    with pytest.raises(ModelNotFoundError, match="not a GGUF file"):
        LlamaCppModel(path=str(bogus)).check()


def test_model_service_outside_ray_uses_one_thread() -> None:
    service = ModelService("m", ScriptedModel(["hi"]))
    assert service.generate(GenerateRequest(prompt="x")).text == "hi"
    assert service.info() == ModelInfo(
        name="m", backend="scripted", n_threads=1, path=None, calls_served=1
    )
    service.assert_consumed()


# --- model service on real Ray ----------------------------------------------------------------


def _call(method: Any, *args: Any) -> Any:
    """Call an actor method and wait (Ray's stubs cannot type actor calls)."""
    return ray.get(method.remote(*args))


@pytest.fixture
def actors(ray_session: None) -> Iterator[list[ray.actor.ActorHandle]]:
    """Actors a test starts; killed when the test ends."""
    started: list[ray.actor.ActorHandle] = []
    yield started
    for actor in started:
        ray.kill(actor)


def test_scripted_model_service_in_ray(actors: list[ray.actor.ActorHandle]) -> None:
    spec = ScriptedModel(["hello", ScriptedToolCall(name="t", arguments={"a": 1}), "left over"])
    actor = launch_model_service("planner", spec)
    actors.append(actor)
    r1: GenerateResponse = _call(actor.generate, GenerateRequest(prompt="hi there"))
    r2: GenerateResponse = _call(actor.generate, GenerateRequest(prompt="call t"))
    assert r1.text == "hello" and r1.duration_s >= 0
    assert r2.tool_calls == [ToolCall(name="t", arguments={"a": 1})]
    assert [c.prompt for c in _call(actor.calls)] == ["hi there", "call t"]
    with pytest.raises(AssertionError, match="1 of 3 replies left"):
        _call(actor.assert_consumed)
    info: ModelInfo = _call(actor.info)
    assert info == ModelInfo(
        name="planner", backend="scripted", n_threads=1, path=None, calls_served=2
    )
    assert spec.calls == [] and len(spec.remaining) == 3  # the user's spec is untouched


def test_model_service_errors_cross_ray(actors: list[ray.actor.ActorHandle]) -> None:
    actor = launch_model_service("m", ScriptedModel([ScriptedError(message="rate limited")]))
    actors.append(actor)
    with pytest.raises(ModelError, match="rate limited"):
        _call(actor.generate, GenerateRequest(prompt="x"))
    with pytest.raises(ScriptExhaustedError, match="only 1 replies"):
        _call(actor.generate, GenerateRequest(prompt="y"))
    info: ModelInfo = _call(actor.info)
    assert info.calls_served == 2


def test_missing_model_file_fails_in_driver(ray_session: None, tmp_path: Path) -> None:
    missing = tmp_path / "missing.gguf"
    with pytest.raises(ModelNotFoundError, match=str(missing)):
        launch_model_service("m", LlamaCppModel(path=str(missing)))


# --- the real bundled Gemma 3 270M through llama.cpp ------------------------------------------


@pytest.fixture
def llama_actors(actors: list[ray.actor.ActorHandle]) -> list[ray.actor.ActorHandle]:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (`llama` extra)")
    return actors


@pytest.mark.llama
def test_llama_generates_with_granted_threads(
    llama_actors: list[ray.actor.ActorHandle],
) -> None:
    actor = launch_model_service("gemma", LlamaCppModel(num_cpus=1))
    llama_actors.append(actor)
    request = GenerateRequest(prompt="The capital of France is", max_tokens=12)
    response: GenerateResponse = _call(actor.generate, request)
    assert response.text.strip()
    assert response.backend == "llama_cpp" and response.model.endswith(".gguf")
    assert 0 < response.completion_tokens <= 12 and response.prompt_tokens > 0
    assert response.finish_reason in {"stop", "length"}
    # Greedy decoding is deterministic; so is sampling with the request's seed.
    assert _call(actor.generate, request).text == response.text
    sampled = request.model_copy(update={"temperature": 0.8, "seed": 3})
    assert _call(actor.generate, sampled).text == _call(actor.generate, sampled).text
    info: ModelInfo = _call(actor.info)
    assert info.n_threads == 1 and info.backend == "llama_cpp" and info.device == "cpu"
    assert info.path is not None and Path(info.path).is_absolute() and info.calls_served == 4
    assert _call(actor.calls) == []


@pytest.mark.llama
@pytest.mark.parametrize(("num_cpus", "threads"), [(2, 2), (0.5, 1)])
def test_llama_threads_follow_the_cpu_grant(
    llama_actors: list[ray.actor.ActorHandle], num_cpus: float, threads: int
) -> None:
    actor = launch_model_service("gemma", LlamaCppModel(num_cpus=num_cpus))
    llama_actors.append(actor)
    assert _call(actor.info).n_threads == threads


@pytest.mark.llama
def test_llama_json_schema_output_parses(llama_actors: list[ray.actor.ActorHandle]) -> None:
    actor = launch_model_service("gemma", LlamaCppModel())
    llama_actors.append(actor)
    schema: dict = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "age": {"type": "integer"},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    request = GenerateRequest(prompt="A person record in JSON:", max_tokens=32, json_schema=schema)
    response: GenerateResponse = _call(actor.generate, request)
    assert response.finish_reason == "stop"
    value = json.loads(response.text)
    assert set(value) == {"name", "age"}
    assert isinstance(value["name"], str) and len(value["name"]) <= 12
    assert isinstance(value["age"], int)


@pytest.mark.llama
def test_llama_schema_beyond_the_grammar(llama_actors: list[ray.actor.ActorHandle]) -> None:
    actor = launch_model_service("gemma", LlamaCppModel())
    llama_actors.append(actor)
    # llama-cpp-python 0.3.36 turns this escape into a grammar llama.cpp cannot parse, then
    # crashed the process on it; the backend leaves the pattern out of the grammar instead.
    schema: dict = {
        "type": "object",
        "properties": {"zip": {"type": "string", "pattern": "^\\d{5}$", "maxLength": 5}},
        "required": ["zip"],
    }
    request = GenerateRequest(prompt="A zip code in JSON:", max_tokens=24, json_schema=schema)
    response: GenerateResponse = _call(actor.generate, request)
    assert set(json.loads(response.text)) == {"zip"}
    # A schema the converter does not know is a typed error, and the model serves on.
    odd = request.model_copy(update={"json_schema": {"type": "no-such-type"}})
    with pytest.raises(ModelError, match="cannot turn the JSON schema into a grammar"):
        _call(actor.generate, odd)
    assert json.loads(_call(actor.generate, request).text) == json.loads(response.text)


@pytest.mark.llama
def test_llama_tool_call(llama_actors: list[ray.actor.ActorHandle]) -> None:
    actor = launch_model_service("gemma", LlamaCppModel())
    llama_actors.append(actor)
    weather = ToolSpec(
        name="get_weather",
        description="Current weather for a city.",
        input_schema={
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"],
        },
    )
    request = GenerateRequest(
        prompt="What is the weather in Paris?", max_tokens=32, tools=[weather]
    )
    response: GenerateResponse = _call(actor.generate, request)
    # The grammar allows a tool call or a direct answer; greedy Gemma 270M calls the tool.
    assert response.finish_reason == "tool_calls", response
    (call,) = response.tool_calls
    assert call.name == "get_weather" and isinstance(call.arguments["city"], str)


# A Gemma-style turn template: the bundled base model's file carries none of its own.
TURNS = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>"
    "{{ 'model' if m.role == 'assistant' else 'user' }}\n{{ m.content }}<end_of_turn>\n"
    "{% endfor %}<start_of_turn>model\n"
)


@pytest.mark.llama
def test_llama_chat_prompts_go_through_the_template(
    llama_actors: list[ray.actor.ActorHandle],
) -> None:
    from agentmesh._private.llama_backend import LlamaCppBackend

    path = LlamaCppModel().resolve_path()
    backend = LlamaCppBackend(
        path=path, n_ctx=512, n_threads=1, seed=0, chat=True, chat_template=TURNS
    )
    assert backend.chat_prompt("Be brief.", "Name a color.") == (
        "<start_of_turn>user\nBe brief.<end_of_turn>\n"
        "<start_of_turn>user\nName a color.<end_of_turn>\n<start_of_turn>model"
    )  # the template's BOS left out: llama.cpp adds its own when it tokenizes
    request = GenerateRequest(prompt="Name a color.", max_tokens=4)
    chat = launch_model_service("chat", LlamaCppModel(prompt_format="chat", chat_template=TURNS))
    plain = launch_model_service("plain", LlamaCppModel())
    llama_actors.extend([chat, plain])
    chatted: GenerateResponse = _call(chat.generate, request)
    completed: GenerateResponse = _call(plain.generate, request)
    assert chatted.prompt_tokens > completed.prompt_tokens  # the turns' tokens around it
    with pytest.raises(ModelError, match="has no chat template"):
        LlamaCppBackend(path=path, n_ctx=512, n_threads=1, seed=0, chat=True)
