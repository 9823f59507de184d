"""The two A2A servers bench/hop.py compares, each under uvicorn on a loopback port, and the one
a2a-sdk client code that calls both. tests/test_remote_agent.py builds its plain a2a-sdk server
from the same pieces (``free_port``, ``jsonrpc_card``, ``jsonrpc_routes``).

- the mesh's A2A gateway (``build_a2a_app``): JSON-RPC at ``/agents/echo/``, an API key, and the
  call runs through the mesh (security policy included) to the echo agent's actor;
- a bare a2a-sdk server: ``DefaultRequestHandler`` and an ``AgentExecutor`` that echoes the text
  back as the same kind of task (submitted, working, one ``result`` data artifact, completed).

Both get the same message (one text part, metadata ``{"skill": "echo"}``) over JSON-RPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import httpx
import uvicorn
from a2a.client import ClientConfig, create_client
from a2a.helpers import new_task
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Message,
    Part,
    Role,
    SendMessageRequest,
    TaskState,
)
from google.protobuf import struct_pb2
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from agentmesh import Mesh
from agentmesh.a2a_gateway import GatewayAuth, GatewayIdentity, build_a2a_app

API_KEY = "bench-key-0123456789abcdef"
HEADERS = {"X-API-Key": API_KEY, "A2A-Version": "1.0"}

Call = Callable[[str], Awaitable[object]]


class EchoExecutor(AgentExecutor):
    """Answers a message with a task whose ``result`` artifact holds the message's text."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None and context.task_id and context.context_id
        text = context.message.parts[0].text
        submitted = new_task(context.task_id, context.context_id, TaskState.TASK_STATE_SUBMITTED)
        await event_queue.enqueue_event(submitted)
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.start_work()
        await updater.add_artifact([Part(data=struct_pb2.Value(string_value=text))], name="result")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def free_port() -> int:
    """A port nothing listens on at 127.0.0.1 (free when asked: bind it soon)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def jsonrpc_card(
    url: str,
    *,
    name: str,
    description: str,
    skills: Sequence[AgentSkill],
    streaming: bool = False,
    input_mode: str = "application/json",
) -> AgentCard:
    """The card of a plain a2a-sdk agent served over JSON-RPC at ``url``, answering JSON."""
    return AgentCard(
        name=name,
        description=description,
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=streaming),
        default_input_modes=[input_mode],
        default_output_modes=["application/json"],
        skills=list(skills),
    )


def jsonrpc_routes(executor: AgentExecutor, card: AgentCard, *, rpc_url: str) -> list[BaseRoute]:
    """A bare a2a-sdk server's routes: ``card`` at the well-known path, and JSON-RPC at
    ``rpc_url`` by ``DefaultRequestHandler`` over an in-memory task store."""
    handler = DefaultRequestHandler(
        agent_executor=executor, task_store=InMemoryTaskStore(), agent_card=card
    )
    return [*create_agent_card_routes(card), *create_jsonrpc_routes(handler, rpc_url=rpc_url)]


def bare_app(base: str) -> Starlette:
    """A plain a2a-sdk JSON-RPC server at ``base/`` with the echo executor."""
    card = jsonrpc_card(
        f"{base}/",
        name="echo",
        description="Echoes.",
        skills=[AgentSkill(id="echo", name="echo", description="Return the text.", tags=["x"])],
        input_mode="text/plain",
    )
    return Starlette(routes=jsonrpc_routes(EchoExecutor(), card, rpc_url="/"))


def gateway_app(mesh: Mesh) -> Starlette:
    """The mesh's A2A gateway; one identity with an API key, allowed the echo skill."""
    bench = GatewayIdentity(name="bench", api_keys=[SecretStr(API_KEY)], allow=["echo.echo"])
    return build_a2a_app(mesh, auth=GatewayAuth(identities=[bench]), max_request_bytes=4_000_000)


@contextlib.asynccontextmanager
async def serving(make_app: Callable[[str], Starlette]) -> AsyncIterator[str]:
    """Serve ``make_app(base)`` with uvicorn on a free loopback port, in this event loop."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = uvicorn.Config(make_app(base), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises why it stopped
        await asyncio.sleep(0.01)
    try:
        yield base
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def echo_client(url: str) -> AsyncIterator[Call]:
    """a2a-sdk's client on JSON-RPC; each call sends the text and checks the echoed result."""
    async with httpx.AsyncClient(headers=HEADERS, timeout=60) as http:
        config = ClientConfig(
            httpx_client=http, streaming=False, supported_protocol_bindings=["JSONRPC"]
        )
        client = await create_client(url, config)
        meta = struct_pb2.Struct()
        meta.update({"skill": "echo"})

        async def call(text: str) -> object:
            message = Message(
                message_id=uuid.uuid4().hex, role=Role.ROLE_USER, parts=[Part(text=text)]
            )
            message.metadata.CopyFrom(meta)
            events = [e async for e in client.send_message(SendMessageRequest(message=message))]
            task = events[-1].task
            if task.status.state != TaskState.TASK_STATE_COMPLETED:
                raise RuntimeError(f"the call did not complete: {task.status}")
            result = task.artifacts[0].parts[0].data
            if result.string_value != text:
                raise RuntimeError("the echo came back different")
            return result

        yield call
