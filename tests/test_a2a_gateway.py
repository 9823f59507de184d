"""The A2A gateway: the session's mesh served to a2a-sdk clients over HTTP.

No mocks of the protocol: a2a-sdk's own client drives the gateway in-process (httpx's ASGI
transport) and over a real loopback HTTP server (uvicorn); raw httpx requests check what a
client library would never send.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import ClientCallContext, ClientConfig, create_client
from a2a.client.auth import AuthInterceptor, CredentialService
from a2a.client.errors import A2AClientError
from a2a.types import (
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import InvalidParamsError, TaskNotFoundError
from google.protobuf import json_format, struct_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from starlette.applications import Starlette

from agentmesh import Mesh
from agentmesh._private.a2a_server import OwnedTaskStore
from agentmesh.a2a_gateway import (
    GatewayAuth,
    GatewayIdentity,
    TaskRetention,
    build_a2a_app,
    serve_a2a,
)
from agentmesh.protocols.a2a_tasks import RECORD

from .mesh_agents import INJECTION

ALICE_KEY = "alice-key-0123456789abcdef"
BOB_TOKEN = "bob-token-0123456789abcdef"
CAROL_KEY = "carol-key-0123456789abcdef"
AUTH = GatewayAuth(
    identities=[
        GatewayIdentity(
            name="alice", api_keys=[SecretStr(ALICE_KEY)], allow=["echo.*", "left.echo"]
        ),
        GatewayIdentity(name="bob", bearer_tokens=[SecretStr(BOB_TOKEN)], allow=["echo.echo"]),
        GatewayIdentity(name="carol", api_keys=[SecretStr(CAROL_KEY)], allow=["left"]),
    ]
)
ALICE = {"X-API-Key": ALICE_KEY}
BOB = {"Authorization": f"Bearer {BOB_TOKEN}"}
CAROL = {"X-API-Key": CAROL_KEY}
BASE = "http://testserver/agents/echo/"
V1 = {"A2A-Version": "1.0"}
LIMIT = 64_000


@pytest.fixture(scope="module")
def app(mesh: Mesh) -> Starlette:
    return build_a2a_app(mesh, auth=AUTH, max_request_bytes=LIMIT)


def _http(app: Starlette, headers: dict[str, str]) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, headers=headers, timeout=60)


def _call(skill: str, args: dict[str, Any] | None = None, *, text: str | None = None) -> Message:
    meta = struct_pb2.Struct()
    meta.update({"skill": skill})
    part = (
        Part(text=text)
        if text is not None
        else Part(data=json_format.ParseDict(args, struct_pb2.Value()))
    )
    return Message(message_id=f"m-{skill}", role=Role.ROLE_USER, parts=[part], metadata=meta)


async def _send(app: Starlette, headers: dict[str, str], message: Message) -> Task:
    async with _http(app, headers) as http:
        client = await create_client(BASE, ClientConfig(httpx_client=http, streaming=False))
        events = [event async for event in client.send_message(SendMessageRequest(message=message))]
    tasks = [e.task for e in events if e.HasField("task")]
    assert tasks, events
    return tasks[-1]


def _result(task: Task) -> Any:
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status
    (artifact,) = task.artifacts
    assert artifact.name == "result"
    return json_format.MessageToDict(artifact.parts[0].data)


def _error(task: Task) -> dict[str, Any]:
    assert task.status.state == TaskState.TASK_STATE_FAILED, task.status
    meta = json_format.MessageToDict(task.status.message.metadata)
    error: dict[str, Any] = meta["agentmesh"]["error"]
    assert task.status.message.parts[0].text == error["message"]
    return error


async def _rpc(app: Starlette, body: bytes | str, headers: dict[str, str] | None = None) -> Any:
    async with _http(app, {**ALICE, **V1, **(headers or {})}) as http:
        response = await http.post(BASE, content=body)
    assert response.status_code == 200, response.text
    return response.json()


# --- calls through a2a-sdk's client -------------------------------------------------------------


async def test_echo_completes_with_the_result_artifact(app: Starlette) -> None:
    task = await _send(app, ALICE, _call("echo", {"text": "hi", "times": 2}))
    assert _result(task) == "hi hi"
    # a lone text part fills a skill's only required str parameter
    assert _result(await _send(app, BOB, _call("echo", text="plain"))) == "plain"


async def test_what_agents_did_inside_stays_inside(app: Starlette) -> None:
    # the echo agent's nested call is flight-recorded in its task's final status: the mesh's
    # driver reads it there, an outside caller never sees it
    forward = _call("forward", {"agent": "left", "skill": "echo", "text": "inside"})
    task = await _send(app, ALICE, forward)
    assert _result(task) == "inside"
    assert RECORD not in task.metadata.fields
    assert RECORD not in task.status.message.metadata.fields


async def test_the_card_declares_security_and_only_granted_skills(app: Starlette) -> None:
    async with _http(app, BOB) as http:
        card = (await http.get(BASE + ".well-known/agent-card.json")).json()
    assert [s["id"] for s in card["skills"]] == ["echo"]
    assert set(card["securitySchemes"]) == {"apiKey", "bearer"}
    assert card["securitySchemes"]["apiKey"]["apiKeySecurityScheme"]["name"] == "X-API-Key"
    assert {i["protocolBinding"] for i in card["supportedInterfaces"]} == {"JSONRPC", "HTTP+JSON"}
    assert {i["url"] for i in card["supportedInterfaces"]} == {BASE}


async def test_a_skill_error_fails_the_task_with_its_type(app: Starlette) -> None:
    error = _error(await _send(app, ALICE, _call("fail", {"message": "boom"})))
    assert error["type"] == "SkillFailedError"
    assert "ValueError: boom" in error["message"]
    assert "Traceback" not in error["message"]
    bad = _error(await _send(app, ALICE, _call("echo", {"times": 2})))
    assert bad["type"] == "SkillInputError"


async def test_security_denials_name_the_rule_not_the_content(app: Starlette) -> None:
    held = await _send(app, ALICE, _call("inject", {}))
    error = _error(held)
    assert error["type"] == "ContentQuarantined"
    assert "refused by the security actor" in error["message"]
    assert INJECTION not in json_format.MessageToJson(held)
    blocked = await _send(app, ALICE, _call("echo", {"text": INJECTION}))
    assert _error(blocked)["type"] in {"MessageBlocked", "ContentQuarantined"}
    assert INJECTION not in json_format.MessageToJson(blocked.status)


# --- authentication and grants ------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "wrong-key-0123456789abcdef"}, {"Authorization": "Bearer nope"}],
)
async def test_unauthenticated_requests_get_401_and_learn_nothing(
    app: Starlette, headers: dict[str, str]
) -> None:
    rpc = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}})
    async with _http(app, {**headers, **V1}) as http:
        answers = [
            await http.get(BASE + ".well-known/agent-card.json"),
            await http.post(BASE, content=rpc),
            await http.get(BASE + "tasks"),
            await http.get("http://testserver/agents/no-such-agent/tasks/x"),
            await http.post(BASE, content=b"x" * (LIMIT + 1)),
        ]
    for response in answers:
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["error"]["status"] == "UNAUTHENTICATED"
        assert "echo" not in response.text
    with pytest.raises(A2AClientError):
        async with _http(app, headers) as http:
            await create_client(BASE, ClientConfig(httpx_client=http))


async def test_an_identity_cannot_call_agents_or_skills_it_is_not_granted(app: Starlette) -> None:
    # carol may call left only: echo is refused at the door, card included
    async with _http(app, {**CAROL, **V1}) as http:
        card = await http.get(BASE + ".well-known/agent-card.json")
        rpc = await http.post(BASE, content=b'{"jsonrpc":"2.0","id":1,"method":"ListTasks"}')
    assert card.status_code == rpc.status_code == 403
    assert card.json()["error"]["status"] == "PERMISSION_DENIED"
    with pytest.raises(A2AClientError):
        await _send(app, CAROL, _call("echo", {"text": "x"}))
    # bob may reach echo but only its echo skill: fail is invalid params, no task is made
    async with _http(app, BOB) as http:
        client = await create_client(BASE, ClientConfig(httpx_client=http, streaming=False))
        before = len((await client.list_tasks(ListTasksRequest())).tasks)
        refused = SendMessageRequest(message=_call("fail", {"message": "x"}))
        with pytest.raises(InvalidParamsError, match="may not call skill 'fail'"):
            async for _ in client.send_message(refused):
                pass
        unknown = SendMessageRequest(message=_call("nope", {}))
        with pytest.raises(InvalidParamsError, match="may not call skill 'nope'"):
            async for _ in client.send_message(unknown):
                pass
        assert len((await client.list_tasks(ListTasksRequest())).tasks) == before


async def test_tasks_belong_to_the_identity_that_made_them(app: Starlette) -> None:
    mine = await _send(app, ALICE, _call("echo", {"text": "alice's"}))
    theirs = await _send(app, BOB, _call("echo", {"text": "bob's"}))
    async with _http(app, ALICE) as alice_http, _http(app, BOB) as bob_http:
        alice = await create_client(BASE, ClientConfig(httpx_client=alice_http))
        bob = await create_client(BASE, ClientConfig(httpx_client=bob_http))
        assert (await alice.get_task(GetTaskRequest(id=mine.id))).id == mine.id
        with pytest.raises(TaskNotFoundError):
            await bob.get_task(GetTaskRequest(id=mine.id))
        with pytest.raises(TaskNotFoundError):
            await alice.get_task(GetTaskRequest(id=theirs.id))
        listed = {t.id for t in (await bob.list_tasks(ListTasksRequest())).tasks}
        assert theirs.id in listed
        assert mine.id not in listed
        # a follow-up message naming another identity's task finds no task either
        follow = _call("echo", {"text": "hijack"})
        follow.task_id = mine.id
        with pytest.raises(TaskNotFoundError):
            async for _ in bob.send_message(SendMessageRequest(message=follow)):
                pass
        # over HTTP+JSON too: get and cancel are "not found"
        got = await bob_http.get(BASE + f"tasks/{mine.id}", headers=V1)
        cancel = await bob_http.post(BASE + f"tasks/{mine.id}:cancel", headers=V1, json={})
    assert got.status_code == cancel.status_code == 404
    assert "alice" not in got.text


# --- hostile bodies -------------------------------------------------------------------------------


async def test_oversized_bodies_get_413_before_parsing(app: Starlette) -> None:
    big = b'{"jsonrpc":"2.0","id":1,"method":"ListTasks","params":{"x":"' + b"a" * LIMIT + b'"}}'

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(4):
            yield b"a" * (LIMIT // 2)

    async with _http(app, {**ALICE, **V1}) as http:
        declared = await http.post(BASE, content=big)
        streamed = await http.post(BASE, content=chunks())
        rest = await http.post(BASE + "message:send", content=big)
    for response in (declared, streamed, rest):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == 413


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"jsonrpc": "2.0", "id": 1, "method": ', -32700),
        (b"", -32700),
        (b'{"jsonrpc": "2.0", "id": "\xff\xfe", "method": "GetTask"}', -32700),
        (b'{"jsonrpc": "2.0", "id": "\\ud800", "method": "GetTask"}', -32700),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": NaN}', -32700),
        (b"[" * 5000 + b"]" * 5000, -32600),
        (b'{"a":' * 100 + b"1" + b"}" * 100, -32600),
        (b"[]", -32600),
        (b'"just a string"', -32600),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "Explode"}', -32601),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": [1]}', -32602),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {}}', -32602),
    ],
)
async def test_malformed_json_rpc_gets_the_spec_errors(
    app: Starlette, body: bytes, code: int
) -> None:
    answer = await _rpc(app, body)
    assert answer["error"]["code"] == code, answer
    assert "Traceback" not in json.dumps(answer)


async def test_a_missing_version_header_is_refused_as_0_3(app: Starlette) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "ListTasks", "params": {}})
    async with _http(app, ALICE) as http:
        response = await http.post(BASE, content=body)
    assert response.status_code == 200
    assert response.json()["error"]["code"] == -32009  # VersionNotSupportedError


async def test_malformed_rest_bodies_get_400(app: Starlette) -> None:
    async with _http(app, {**ALICE, **V1}) as http:
        for body in (b"\xff\xfe{}", b"{", b'{"message": ' * 80 + b"1" + b"}" * 80):
            response = await http.post(BASE + "message:send", content=body)
            assert response.status_code == 400, response.text
            assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
_METHODS = st.sampled_from(["SendMessage", "GetTask", "ListTasks", "CancelTask", "Nope", ""])
_ENVELOPES = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "1.0"]) | _JSON, "method": _METHODS | _JSON},
    optional={"id": _JSON, "params": _JSON},
).map(lambda d: json.dumps(d, allow_nan=True).encode())
_BODIES = st.binary(max_size=300) | st.text(max_size=300).map(str.encode) | _ENVELOPES


def _send_message(message_id: str, size: int, seed: str) -> bytes:
    """A valid SendMessage to echo with about ``size`` bytes of text (the body may pass
    ``LIMIT``: then it is a 413)."""
    text = seed * (size // len(seed.encode()))
    message = {
        "messageId": message_id,
        "role": "ROLE_USER",
        "parts": [{"text": text}],
        "metadata": {"skill": "echo"},
    }
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}}
    return json.dumps(rpc, ensure_ascii=False).encode()


# hypothesis favours small integers: a size drawn as thousands plus a rest spreads over the
# whole range, and a large text is a short seed repeated (examples draw few bytes each)
_SIZES = st.builds(lambda k, r: k * 1000 + r, st.integers(0, LIMIT // 1000), st.integers(0, 999))
_SENDS = st.builds(_send_message, st.uuids().map(str), _SIZES, st.text(min_size=1, max_size=8))
_SMALL = TaskRetention(max_finished_per_owner=2, max_history=1, max_artifact_bytes=LIMIT)
# A stored task holds at most max_history messages of one request each, its artifacts (the
# gateway fails a task whose result outgrows them) and a little more: ids, status, metadata.
_TASK_BYTES = _SMALL.max_history * LIMIT + _SMALL.max_artifact_bytes + 4096


def _held_bytes(app: Starlette) -> int:
    """The bytes of every task the app's stores hold, each store checked against ``_SMALL``.

    The task stores are a2a-sdk's in-memory dicts inside ``OwnedTaskStore``: read directly,
    since a client only ever sees its own tasks, and to count what is really kept.
    """
    held = 0
    for handler in app.state.a2a_handlers:
        store = handler.task_store
        assert isinstance(store, OwnedTaskStore)
        for finished in store._finished.values():
            assert len(finished) <= _SMALL.max_finished_per_owner
        for tasks in store._inner._impl.tasks.values():  # per owner
            assert len(tasks) <= _SMALL.max_finished_per_owner
            for task in tasks.values():
                assert len(task.history) <= _SMALL.max_history
                assert task.ByteSize() <= _TASK_BYTES
                held += task.ByteSize()
        assert len(store._owners) <= len(store._finished) * _SMALL.max_finished_per_owner
    return held


async def test_garbage_bodies_never_get_5xx_or_internal_errors(mesh: Mesh) -> None:
    """Garbage, and valid calls with texts up to the request bound, never get a 5xx or an
    internal error, and the gateway stays within its memory bound: after each of two equal
    batches its stores hold no more than the retention allows, and the second batch does not
    grow the Python heap (tracemalloc) beyond noise."""
    small = build_a2a_app(mesh, auth=AUTH, max_request_bytes=LIMIT, retention=_SMALL)
    loop = asyncio.get_running_loop()
    accepted = [0]  # bytes of the SendMessage bodies that made a task

    async def post(body: bytes) -> httpx.Response:
        async with _http(small, {**ALICE, **V1}) as http:
            return await http.post(BASE, content=body)

    @settings(
        max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(body=_BODIES | _SENDS | _SENDS)
    def check(body: bytes) -> None:
        response = asyncio.run_coroutine_threadsafe(post(body), loop).result(timeout=60)
        assert response.status_code < 500, (body[:300], response.text)
        assert b"-32603" not in response.content, (body[:300], response.text)
        if response.status_code == 200 and "result" in response.json():
            accepted[0] += len(body)

    async def settled() -> int:
        """The traced heap once the SDK has let go of every task (it does so a little after
        the last response)."""
        registries = [h._active_task_registry._active_tasks for h in small.state.a2a_handlers]
        for _ in range(200):
            if not any(registries):
                break
            await asyncio.sleep(0.05)
        assert not any(registries), "tasks still active after their answers"
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    # pytest keeps every log record of a test for its report, tracebacks and their frames
    # included: that is the harness's memory, not the gateway's (whose logs leave it)
    logging.disable(logging.CRITICAL)
    tracemalloc.start()
    try:
        await asyncio.to_thread(check)  # fills the stores to their bound, warms every cache
        before = await settled()
        _held_bytes(small)
        await asyncio.to_thread(check)
        growth = await settled() - before
    finally:
        tracemalloc.stop()
        logging.disable(logging.NOTSET)
    held = _held_bytes(small)
    bound = _SMALL.max_finished_per_owner * _TASK_BYTES  # alice is the only caller
    assert held <= bound
    # the stream was large enough that keeping what it sent would break the bound many times
    assert accepted[0] > 4 * bound, accepted[0]
    # Task payloads live in protobuf's (upb) arenas, outside tracemalloc's view: the byte
    # counts above bound those. tracemalloc sees the Python objects requests leave behind
    # (bodies, responses, event queues, tracebacks and their frames). Once the first batch has
    # warmed every cache, the second, as many requests again, grew the heap by under 10 KiB
    # in runs here (up to 70 KiB without waiting for the SDK to let go of tasks); a leak of
    # 1 KiB per request would add about 300 KiB. 256 KiB sits well clear of both.
    assert growth < 256 * 1024, growth


# --- a real loopback server ------------------------------------------------------------------


class _Tokens(CredentialService):
    async def get_credentials(self, scheme: str, context: ClientCallContext | None) -> str | None:
        return BOB_TOKEN if scheme == "bearer" else None


async def test_over_a_real_loopback_server(mesh: Mesh) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serving = asyncio.ensure_future(serve_a2a(mesh, auth=AUTH, port=port))
    try:
        async with httpx.AsyncClient(timeout=5) as probe_http:
            for _ in range(200):  # until it listens
                assert not serving.done(), serving
                with contextlib.suppress(httpx.ConnectError):
                    await probe_http.get(f"http://127.0.0.1:{port}/")
                    break
                await asyncio.sleep(0.05)
        url = f"http://127.0.0.1:{port}/agents/echo/"
        async with httpx.AsyncClient(timeout=60) as http:
            assert (await http.get(url + ".well-known/agent-card.json")).status_code == 401
            # the card is fetched with the token; the card's schemes then make a2a-sdk's
            # AuthInterceptor attach it to every call
            client = await create_client(
                url,
                ClientConfig(httpx_client=http, streaming=False),
                interceptors=[AuthInterceptor(_Tokens())],
                resolver_http_kwargs={"headers": BOB},
            )
            message = _call("echo", {"text": "over tcp", "times": 2})
            events = [e async for e in client.send_message(SendMessageRequest(message=message))]
            task = next(e.task for e in events if e.HasField("task"))
            assert _result(task) == "over tcp over tcp"
            assert (await client.get_task(GetTaskRequest(id=task.id))).id == task.id
            assert (await http.get(url + f"tasks/{task.id}", headers=V1)).status_code == 401
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving


def test_cli_serves_the_demo_mesh_over_a2a(tmp_path: Path) -> None:
    """`agentmesh serve --a2a --auth FILE`: a real process, its own Ray, raw JSON-RPC."""
    key = "ops-key-0123456789abcdef"
    auth = tmp_path / "identities.yaml"
    auth.write_text(f"identities:\n  - name: ops\n    api_keys: [{key}]\n    allow: [analyst]\n")
    exe = str(Path(sys.executable).parent / "agentmesh")
    refused = subprocess.run([exe, "serve", "--a2a"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--auth" in refused.stderr
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [exe, "serve", "--a2a", "--auth", str(auth), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
    )
    base = f"http://127.0.0.1:{port}/agents/analyst/"
    headers = {"X-API-Key": key, "A2A-Version": "1.0"}
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the gateway did not start"
            with contextlib.suppress(httpx.HTTPError):
                card = httpx.get(base + ".well-known/agent-card.json", headers=headers)
                if card.status_code == 200:
                    break
            time.sleep(0.5)
        assert card.json()["name"] == "analyst"
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "SendMessage",
            "params": {
                "message": {
                    "messageId": "m-1",
                    "role": "ROLE_USER",
                    "parts": [{"data": {"topic": "edge agents", "sections": 2}}],
                    "metadata": {"skill": "outline"},
                }
            },
        }
        answer = httpx.post(base, json=body, headers=headers, timeout=60).json()
        task = answer["result"]["task"]
        assert task["status"]["state"] == "TASK_STATE_COMPLETED", answer
        assert task["artifacts"][0]["parts"][0]["data"] == [
            "Context: edge agents",
            "How it works: edge agents",
        ]
        writer = httpx.post(
            f"http://127.0.0.1:{port}/agents/writer/", json=body, headers=headers, timeout=60
        )
        assert writer.status_code == 403  # ops may reach the analyst only
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


async def test_finished_tasks_are_bounded_per_identity(mesh: Mesh) -> None:
    """A stream of requests cannot grow the gateway: the oldest finished tasks are dropped."""
    small = build_a2a_app(
        mesh, auth=AUTH, retention=TaskRetention(max_finished_per_owner=2, max_history=1)
    )
    tasks = [await _send(small, ALICE, _call("echo", {"text": f"n{i}"})) for i in range(3)]
    assert [_result(t) for t in tasks] == ["n0", "n1", "n2"]
    async with _http(small, ALICE) as http:
        client = await create_client(BASE, ClientConfig(httpx_client=http))
        with pytest.raises(TaskNotFoundError):  # the oldest went when the third finished
            await client.get_task(GetTaskRequest(id=tasks[0].id))
        kept = await client.get_task(GetTaskRequest(id=tasks[2].id))
    assert _result(kept) == "n2" and len(kept.history) <= 1
