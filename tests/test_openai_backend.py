"""The OpenAI-compatible HTTP backend against a real server on loopback.

The server is llama-cpp-python's own (``python -m llama_cpp.server``, the ``[server]`` extra)
running the bundled Gemma; the bad paths use real sockets that refuse, hang or answer garbage.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import ray
from pydantic import BaseModel, Field

from agentmesh import Agent, Mesh, skill
from agentmesh._private.model_service import launch_model_service
from agentmesh._private.openai_backend import OpenAIBackend
from agentmesh.errors import (
    ConfigError,
    ModelHTTPError,
    ModelResponseError,
    ModelTimeoutError,
    ModelUnreachableError,
)
from agentmesh.inference import (
    GenerateChunk,
    GenerateRequest,
    GenerateResponse,
    OpenAIModel,
    default_model_path,
)

from .mesh_agents import WEATHER

KEY_ENV = "AGENTMESH_TEST_OPENAI_KEY"
KEY = "test-key-7f3a"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server with the bundled Gemma, behind a key."""
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
    port = _free_port()
    # A file, not a pipe: the server logs a lot, and a full pipe would stall it.
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", default_model_path()]
    argv += ["--model_alias", "gemma", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--n_threads", "1", "--n_ctx", "2048", "--api_key", KEY]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/models", headers={"Authorization": f"Bearer {KEY}"}).is_success:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"llama_cpp.server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.5)
    yield base
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY_ENV


@pytest.fixture
def service(ray_session: None, server: str, key: str) -> Iterator[ray.actor.ActorHandle]:
    """A model service for the server, the key handed over from the driver's environment."""
    spec = OpenAIModel(base_url=server, model="gemma", api_key_env=key, schema_format="json_object")
    actor = launch_model_service("remote", spec)
    yield actor
    ray.kill(actor)


def _generate(actor: ray.actor.ActorHandle, request: GenerateRequest) -> GenerateResponse:
    response: GenerateResponse = ray.get(actor.generate.remote(request))
    return response


@pytest.mark.llama
def test_chat_completion_through_a_model_service(
    service: ray.actor.ActorHandle, server: str
) -> None:
    request = GenerateRequest(prompt="The capital of France is", max_tokens=12)
    response = _generate(service, request)
    assert response.text.strip() and response.backend == "openai"
    assert response.model == "gemma" and response.finish_reason in {"stop", "length"}
    assert response.prompt_tokens > 0 and 0 < response.completion_tokens <= 12
    # The same request straight to the server gives the same greedy text.
    direct = httpx.post(
        f"{server}/chat/completions",
        headers={"Authorization": f"Bearer {KEY}"},
        json={
            "messages": [{"role": "user", "content": request.prompt}],
            "max_tokens": 12,
            "temperature": 0,
        },
        timeout=60,
    ).json()
    assert direct["choices"][0]["message"]["content"] == response.text
    stopped = _generate(service, request.model_copy(update={"stop": [response.text.split()[1]]}))
    assert response.text.startswith(stopped.text) and len(stopped.text) < len(response.text)


@pytest.mark.llama
def test_json_schema_and_tools(service: ray.actor.ActorHandle) -> None:
    schema: dict = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    request = GenerateRequest(prompt="A person record in JSON:", max_tokens=40, json_schema=schema)
    value = json.loads(_generate(service, request).text)
    assert isinstance(value["name"], str) and isinstance(value["age"], int)
    # This server's chat handler calls a tool only when the tool is named: tool_choice="required".
    auto = _generate(service, GenerateRequest(prompt="Weather in Paris?", tools=[WEATHER]))
    assert auto.tool_calls == [] and auto.finish_reason != "tool_calls"


@pytest.mark.llama
def test_required_tool_call_and_stream(ray_session: None, server: str, key: str) -> None:
    spec = OpenAIModel(base_url=server, model="gemma", api_key_env=key, tool_choice="required")
    actor = launch_model_service("remote-tools", spec)
    try:
        request = GenerateRequest(prompt="What is the weather in Paris?", tools=[WEATHER])
        response = _generate(actor, request)
        assert response.finish_reason == "tool_calls"
        (call,) = response.tool_calls
        assert call.name == "get_weather" and isinstance(call.arguments["city"], str)
        plain = GenerateRequest(prompt="The capital of France is", max_tokens=12)
        chunks: list[GenerateChunk] = [ray.get(r) for r in actor.generate_stream.remote(plain)]
        *pieces, last = chunks
        assert len(pieces) > 3 and last.response is not None
        assert "".join(p.text for p in pieces) == last.response.text
        assert last.response.text == _generate(actor, plain).text
        # The default json_schema response format is one this server refuses (HTTP 500).
        schema_request = plain.model_copy(update={"json_schema": {"type": "object"}})
        with pytest.raises(ModelHTTPError, match="json_object") as info:
            _generate(actor, schema_request)
        assert info.value.status == 500 and info.value.url == f"{server}/chat/completions"
    finally:
        ray.kill(actor)


class Person(BaseModel):
    name: str = Field(max_length=12)
    age: int


class Filer(Agent):
    """Files people, with the model behind the HTTP server."""

    model = "remote"

    @skill
    async def person(self, text: str) -> Person:
        """A person record from a text."""
        return await self.generate(text, output=Person, max_attempts=3)


@pytest.mark.llama
async def test_structured_output_through_a_mesh(ray_session: None, server: str, key: str) -> None:
    spec = OpenAIModel(base_url=server, model="gemma", api_key_env=key, schema_format="json_object")
    async with Mesh([Filer], models={"remote": spec}) as mesh:
        person = Person.model_validate(
            await mesh.call("filer", "person", text="A person record in JSON:")
        )
        info = await mesh.model_handle("remote").info.remote()
    assert person.name and info.backend == "openai" and info.calls_served >= 1


@pytest.mark.llama
def test_http_errors(server: str, key: str) -> None:
    request = GenerateRequest(prompt="hi", max_tokens=2)
    no_key = OpenAIBackend(OpenAIModel(base_url=server, model="gemma"))
    with pytest.raises(ModelHTTPError) as info:
        no_key.generate(request)
    assert info.value.status == 401
    wrong_path = OpenAIBackend(OpenAIModel(base_url=server + "/nope", model="g", api_key_env=key))
    with pytest.raises(ModelHTTPError, match="HTTP 404"):
        wrong_path.generate(request)
    with pytest.raises(ModelHTTPError, match="HTTP 404"):
        list(wrong_path.generate_stream(request))


def test_spec_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="http"):
        OpenAIModel(base_url="127.0.0.1:8080/v1", model="m").check()
    with pytest.raises(ConfigError, match="http"):
        OpenAIModel(base_url="ftp://host/v1", model="m").check()
    monkeypatch.delenv("AGENTMESH_NO_SUCH_KEY", raising=False)
    with pytest.raises(ConfigError, match="AGENTMESH_NO_SUCH_KEY"):
        OpenAIModel(base_url="http://h/v1", model="m", api_key_env="AGENTMESH_NO_SUCH_KEY").check()
    OpenAIModel(base_url="https://h:1/v1", model="m").check()


def test_connection_refused_crosses_ray(ray_session: None) -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there any more
    with pytest.raises(ModelUnreachableError, match="ConnectError"):
        OpenAIBackend(OpenAIModel(base_url=url, model="m")).generate(GenerateRequest(prompt="x"))
    actor = launch_model_service("gone", OpenAIModel(base_url=url, model="m"))
    try:
        with pytest.raises(ModelUnreachableError) as info:
            ray.get(actor.generate.remote(GenerateRequest(prompt="x")))
        assert info.value.url == f"{url}/chat/completions"
    finally:
        ray.kill(actor)


def test_timeout() -> None:
    with socket.socket() as listener:  # accepts connections (backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        spec = OpenAIModel(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout_s=0.5)
        start = time.monotonic()
        with pytest.raises(ModelTimeoutError, match=r"no answer within 0.5s"):
            OpenAIBackend(spec).generate(GenerateRequest(prompt="x"))
        assert time.monotonic() - start < 5


class _Garbage(BaseHTTPRequestHandler):
    """Answers 200 with whatever body the path names."""

    bodies = {
        "/text/chat/completions": b"this is not json",
        "/shape/chat/completions": b'{"choices": []}',
        "/args/chat/completions": json.dumps(
            {
                "choices": [
                    {"message": {"tool_calls": [{"function": {"name": "t", "arguments": "{oops"}}]}}
                ]
            }
        ).encode(),
        "/sse/chat/completions": b"data: {not json}\n\n",
    }

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = self.bodies[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def garbage() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("text", "not a chat completion"),
        ("shape", "choices: List should have at least 1 item"),
        ("args", "arguments that are not JSON"),
    ],
)
def test_bad_bodies(garbage: str, path: str, message: str) -> None:
    backend = OpenAIBackend(OpenAIModel(base_url=f"{garbage}/{path}", model="m"))
    with pytest.raises(ModelResponseError, match=message):
        backend.generate(GenerateRequest(prompt="x"))


def test_bad_stream_event(garbage: str) -> None:
    backend = OpenAIBackend(OpenAIModel(base_url=f"{garbage}/sse", model="m"))
    with pytest.raises(ModelResponseError, match="bad stream event"):
        list(backend.generate_stream(GenerateRequest(prompt="x")))
