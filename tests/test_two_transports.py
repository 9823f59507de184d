"""One semantics, two transports: the same conversations inside the mesh and over the gateway.

Each scenario runs twice: inside the mesh (``Mesh.stream``, A2A messages over Ray actor calls)
and at the edge (a2a-sdk's own client over the gateway's HTTP binding, streaming). Both must
give the same task states, in the same order, and the same artifacts. The gateway's side also
streams over a real loopback server, survives a client that disconnects, and lets only a
task's owner subscribe to it or cancel it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from a2a.client import Client, ClientConfig, create_client
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import TaskNotFoundError
from google.protobuf import json_format
from pydantic import SecretStr
from starlette.applications import Starlette

from agentmesh import Mesh
from agentmesh.a2a_gateway import (
    GatewayAuth,
    GatewayIdentity,
    TaskRetention,
    build_a2a_app,
    serve_a2a,
)
from agentmesh.protocols.a2a import card_skill_schemas
from agentmesh.protocols.a2a_tasks import FINAL_STATES, apply_event, state_name
from agentmesh.remote import RemoteAgent, fetch_card

from .test_tasks import call_message, started

DANA_KEY = "dana-key-0123456789abcdef"
ERIN_KEY = "erin-key-0123456789abcdef"
FAY_KEY = "fay-key-0123456789abcdefg"
AUTH = GatewayAuth(
    identities=[
        GatewayIdentity(name="dana", api_keys=[SecretStr(DANA_KEY)], allow=["tasker", "echo"]),
        GatewayIdentity(name="erin", api_keys=[SecretStr(ERIN_KEY)], allow=["tasker"]),
        GatewayIdentity(
            name="fay", api_keys=[SecretStr(FAY_KEY)], allow=["tasker.count"], extended_card=True
        ),
    ]
)
BOUND = 20_000
Send = Callable[[Message], Awaitable[list[StreamResponse]]]


@pytest.fixture(scope="module")
def app(mesh: Mesh) -> Starlette:
    return build_a2a_app(mesh, auth=AUTH, retention=TaskRetention(max_artifact_bytes=BOUND))


@contextlib.asynccontextmanager
async def a2a_client(
    target: Starlette | str, key: str, *, streaming: bool = True
) -> AsyncIterator[Client]:
    """a2a-sdk's client for tasker: in-process (an app) or over HTTP (a base URL). Streaming
    over httpx's ASGI transport arrives all at once; the real server streams."""
    headers = {"X-API-Key": key}
    if isinstance(target, str):
        http = httpx.AsyncClient(headers=headers, timeout=60)
        base = f"{target}/agents/tasker/"
    else:
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=target), headers=headers, timeout=60
        )
        base = "http://testserver/agents/tasker/"
    async with http:
        client = await create_client(base, ClientConfig(httpx_client=http, streaming=streaming))
        yield client


def view(event: StreamResponse) -> tuple[Any, ...]:
    """What a scenario may depend on: kinds, states, question texts, error types, values."""
    if event.HasField("task"):
        return ("task", state_name(event.task.status.state))
    if event.HasField("artifact_update"):
        update = event.artifact_update
        values = [json_format.MessageToDict(p.data) for p in update.artifact.parts]
        return ("artifact", update.artifact.name, update.append, values)
    status = event.status_update.status
    return ("status", state_name(status.state), *said(status.message))


def said(message: Message) -> tuple[Any, ...]:
    meta = json_format.MessageToDict(message.metadata).get("agentmesh", {})
    if "error" in meta:
        return ("error", meta["error"]["type"])
    return tuple(p.text for p in message.parts)


def final(task: Task) -> tuple[Any, ...]:
    values = [json_format.MessageToDict(p.data) for a in task.artifacts for p in a.parts]
    return (state_name(task.status.state), values, *said(task.status.message))


def task_of(events: list[StreamResponse]) -> Task:
    task: Task | None = None
    for event in events:
        task = apply_event(task, event)
    assert task is not None
    return task


async def in_mesh(mesh: Mesh, scenario: Callable[[Send], Awaitable[list[Any]]]) -> list[Any]:
    async def send(message: Message) -> list[StreamResponse]:
        return [e async for e in mesh.stream("tasker", message, principal="user:dana")]

    return await scenario(send)


async def at_edge(app: Starlette, scenario: Callable[[Send], Awaitable[list[Any]]]) -> list[Any]:
    async with a2a_client(app, DANA_KEY) as client:

        async def send(message: Message) -> list[StreamResponse]:
            return [e async for e in client.send_message(SendMessageRequest(message=message))]

        return await scenario(send)


async def one_call(send: Send, skill: str, args: dict[str, Any]) -> list[Any]:
    events = await send(call_message(skill, args))
    return [view(e) for e in events] + [final(task_of(events))]


async def streamed(send: Send) -> list[Any]:
    return await one_call(send, "count", {"n": 3})


async def failing(send: Send) -> list[Any]:
    return await one_call(send, "count", {"n": "many"})


async def quarantined(send: Send) -> list[Any]:
    return await one_call(send, "leak", {"where": 1})


async def conversation(send: Send) -> list[Any]:
    first = await send(call_message("greet", {"greeting": "Hi"}))
    waiting = task_of(first)
    reply = call_message("", text="Ada", task_id=waiting.id, context_id=waiting.context_id)
    second = await send(reply)
    return [view(e) for e in first + second] + [final(waiting)]


@pytest.mark.parametrize("scenario", [streamed, failing, quarantined, conversation])
async def test_the_same_conversation_gives_the_same_task_both_ways(
    mesh: Mesh, app: Starlette, scenario: Callable[[Send], Awaitable[list[Any]]]
) -> None:
    inside = await in_mesh(mesh, scenario)
    outside = await at_edge(app, scenario)
    assert inside == outside
    assert inside[-1][0] in ("completed", "failed", "input-required")


async def test_cancel_gives_the_same_canceled_task_both_ways(mesh: Mesh, app: Starlette) -> None:
    key = uuid.uuid4().hex
    running = asyncio.ensure_future(
        mesh.send(
            "tasker",
            call_message("wait", {"key": key, "seconds": 60}),
            principal="user:dana",
            task_id=key,
        )
    )
    await started(mesh, key)
    await mesh.cancel("tasker", key, principal="user:dana")
    inside = await asyncio.wait_for(running, 10)

    edge_key = uuid.uuid4().hex
    async with a2a_client(app, DANA_KEY, streaming=False) as client:
        request = SendMessageRequest(
            message=call_message("wait", {"key": edge_key, "seconds": 60}),
            configuration=SendMessageConfiguration(return_immediately=True),
        )
        first = [e async for e in client.send_message(request)]
        task_id = task_of(first).id
        await started(mesh, edge_key)
        async with a2a_client(app, ERIN_KEY) as other:  # not erin's task: it does not exist
            with pytest.raises(TaskNotFoundError):
                await other.cancel_task(CancelTaskRequest(id=task_id))
        canceled = await client.cancel_task(CancelTaskRequest(id=task_id))
        outside = await client.get_task(GetTaskRequest(id=task_id))
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED
    assert final(inside) == final(outside) == ("canceled", [])
    assert await mesh.call("tasker", "was_cancelled", key=edge_key) is True  # really stopped


async def test_a_result_past_the_artifact_bound_fails_its_task(app: Starlette) -> None:
    async with a2a_client(app, DANA_KEY) as client:
        request = SendMessageRequest(message=call_message("big", {"chunks": 50, "size": 1000}))
        task = task_of([e async for e in client.send_message(request)])
    assert final(task)[0] == "failed" and said(task.status.message) == ("error", "ResultTooLarge")
    assert sum(len(p.data.string_value) for a in task.artifacts for p in a.parts) <= BOUND


async def test_the_caller_is_its_own_principal_in_the_security_log(
    mesh: Mesh, app: Starlette
) -> None:
    async with a2a_client(app, ERIN_KEY) as client:
        request = SendMessageRequest(message=call_message("count", {"n": 1}))
        assert final(task_of([e async for e in client.send_message(request)]))[0] == "completed"
    assert any(
        d.principal == "user:erin" and d.target.startswith("tasker") for d in await mesh.decisions()
    )


@pytest.fixture(scope="module")
async def server(mesh: Mesh) -> AsyncIterator[str]:
    """The gateway on a real loopback port (uvicorn)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serving = asyncio.ensure_future(serve_a2a(mesh, auth=AUTH, port=port))
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(200):
            assert not serving.done(), serving
            with contextlib.suppress(httpx.ConnectError):
                await http.get(f"http://127.0.0.1:{port}/")
                break
            await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    serving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving


async def test_sse_delivers_chunks_as_they_are_produced(server: str) -> None:
    async with a2a_client(server, DANA_KEY) as client:
        request = SendMessageRequest(message=call_message("count", {"n": 3, "pause": 0.5}))
        arrivals = [
            time.monotonic()
            async for event in client.send_message(request)
            if event.HasField("artifact_update")
        ]
    assert len(arrivals) == 3
    assert arrivals[-1] - arrivals[0] > 0.7  # not one buffered response at the end


async def test_a_client_that_disconnects_gets_the_task_later(server: str) -> None:
    async with a2a_client(server, DANA_KEY) as client:
        request = SendMessageRequest(message=call_message("count", {"n": 4, "pause": 0.3}))
        stream = client.send_message(request)
        task_id = ""
        async for event in stream:
            task_id = task_id or task_of([event]).id
            if event.HasField("artifact_update"):
                break  # hang up after the first chunk
        await stream.aclose()
    async with a2a_client(server, DANA_KEY) as client:
        for _ in range(100):
            task = await client.get_task(GetTaskRequest(id=task_id))
            if task.status.state in FINAL_STATES:
                break
            await asyncio.sleep(0.1)
    assert final(task) == ("completed", [0, 1, 2, 3])


async def test_only_the_owner_may_subscribe_to_a_running_task(server: str) -> None:
    async with a2a_client(server, DANA_KEY, streaming=False) as client:
        request = SendMessageRequest(
            message=call_message("count", {"n": 3, "pause": 0.5}),
            configuration=SendMessageConfiguration(return_immediately=True),
        )
        task_id = task_of([e async for e in client.send_message(request)]).id
    async with a2a_client(server, ERIN_KEY) as other:
        with pytest.raises(TaskNotFoundError):
            _ = [e async for e in other.subscribe(SubscribeToTaskRequest(id=task_id))]
    async with a2a_client(server, DANA_KEY) as client:
        events = [e async for e in client.subscribe(SubscribeToTaskRequest(id=task_id))]
    assert events[0].HasField("task")  # the spec: a subscription starts with the task
    assert final(task_of(events)) == ("completed", [0, 1, 2])


async def test_a_remote_agent_gets_the_schemas_from_the_extended_card(server: str) -> None:
    """Another mesh joining this gateway's agent sees its skills' schemas only when its
    identity may read the extended card (the public card leaves them out)."""
    url = f"{server}/agents/tasker/"
    granted = await fetch_card(
        RemoteAgent(url=url, headers={"X-API-Key": FAY_KEY}, require_signature=False)
    )
    assert [s.id for s in granted.skills] == ["count"]  # only what fay may call
    assert card_skill_schemas(granted)["count"]["input"]["required"] == ["n"]
    public = await fetch_card(
        RemoteAgent(url=url, headers={"X-API-Key": ERIN_KEY}, require_signature=False)
    )
    assert len(public.skills) > 1 and card_skill_schemas(public) == {}
