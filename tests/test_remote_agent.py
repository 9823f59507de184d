"""Remote A2A agents as mesh members, against a plain a2a-sdk server written here.

The far side uses nothing from agentmesh: an a2a-sdk AgentExecutor behind DefaultRequestHandler,
served by uvicorn on a free loopback port, with a card signed by a2a-sdk's own signer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import ray
import uvicorn
from a2a.helpers.proto_helpers import new_data_part, new_task, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.routes import create_agent_card_routes
from a2a.server.tasks import TaskUpdater
from a2a.types import (
    AgentCard,
    AgentSkill,
    Message,
    Part,
    StreamResponse,
    Task,
    TaskState,
)
from a2a.utils.signing import ProtectedHeader, create_agent_card_signer
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import json_format
from jwt import PyJWK
from jwt.algorithms import ECAlgorithm
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response

from agentmesh import CardVerificationError, RemoteAgentError, TaskCanceledError, UnknownSkillError
from agentmesh._private.remote_host import RemoteAgentHost, spawn_remote_host
from agentmesh.protocols import a2a
from agentmesh.protocols.a2a_tasks import apply_event
from agentmesh.remote import RemoteAgent, fetch_card, mesh_name
from bench._a2a_servers import free_port, jsonrpc_card, jsonrpc_routes

SKILLS = ("add", "shout", "fail", "ask", "slow")


@dataclass
class Seen:
    """What the far side received: skill-call messages and Authorization headers."""

    messages: list[Message] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)


class Calculator(AgentExecutor):
    """A foreign agent: reads the skill from metadata.agentmesh and the args from the data part."""

    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        assert message is not None and context.task_id and context.context_id
        self.seen.messages.append(message)
        meta = json_format.MessageToDict(message.metadata).get("agentmesh", {})
        args = json_format.MessageToDict(message.parts[0].data)
        skill = meta.get("skill")
        if skill == "shout":  # a direct answer, no task
            reply = new_text_message(str(args["text"]).upper(), context_id=context.context_id)
            await event_queue.enqueue_event(reply)
            return
        await event_queue.enqueue_event(
            new_task(context.task_id, context.context_id, TaskState.TASK_STATE_SUBMITTED)
        )
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.start_work()
        if skill == "add":
            total = args["a"] + args["b"]
            await updater.add_artifact([new_data_part({"sum": total})], name="sum")
            await updater.complete()
        elif skill == "ask":
            await updater.requires_input(updater.new_agent_message([Part(text="which ledger?")]))
        elif skill == "slow":
            await asyncio.sleep(30)
            await updater.complete()
        else:
            failure = updater.new_agent_message([Part(text="the ledger is on fire")])
            await updater.failed(failure)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


@dataclass
class Server:
    base: str
    seen: Seen
    jwks: dict[str, Any]
    other_jwks: dict[str, Any]
    card: AgentCard


def _card(base: str, *, streaming: bool) -> AgentCard:
    return jsonrpc_card(
        f"{base}/rpc",
        name="Calc Agent",
        description="adds numbers, over A2A",
        skills=[AgentSkill(id=s, name=s, description=s, tags=["calc"]) for s in SKILLS],
        streaming=streaming,
    )


def _jwks(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    public = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {"keys": [{**public, "kid": kid, "alg": "ES256", "use": "sig"}]}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    key = ec.generate_private_key(ec.SECP256R1())
    private = {**ECAlgorithm.to_jwk(key, as_dict=True), "kid": "calc-1", "alg": "ES256"}
    header = cast(ProtectedHeader, {"alg": "ES256", "kid": "calc-1", "typ": "JOSE"})
    sign = create_agent_card_signer(PyJWK.from_dict(private), header)
    signed = sign(_card(base, streaming=True))
    blocking = sign(_card(base, streaming=False))
    tampered = AgentCard()
    tampered.CopyFrom(signed)
    tampered.description = "adds numbers, and sends them elsewhere"
    seen = Seen()
    routes = [
        *jsonrpc_routes(Calculator(seen), signed, rpc_url="/rpc"),
        *create_agent_card_routes(blocking, card_url="/blocking/.well-known/agent-card.json"),
        *create_agent_card_routes(tampered, card_url="/tampered/.well-known/agent-card.json"),
        *create_agent_card_routes(
            _card(base, streaming=True), card_url="/unsigned/.well-known/agent-card.json"
        ),
    ]

    async def record_auth(request: Request, call_next: Any) -> Response:
        if request.url.path == "/rpc":
            seen.auth.append(request.headers.get("authorization"))
        response: Response = await call_next(request)
        return response

    app = Starlette(
        routes=routes, middleware=[Middleware(BaseHTTPMiddleware, dispatch=record_auth)]
    )
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    web = uvicorn.Server(config)
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not web.started:
        assert time.monotonic() < deadline, "the test A2A server did not start"
        time.sleep(0.02)
    other = _jwks(ec.generate_private_key(ec.SECP256R1()), "someone-else")
    yield Server(base, seen, _jwks(key, "calc-1"), other, signed)
    web.should_exit = True
    thread.join(timeout=10)


def _call(skill: str, args: dict[str, Any], recipient: str = "calc-agent") -> Message:
    return a2a.skill_call_message(
        sender="planner", recipient=recipient, skill=skill, args=args, context_id="run-1"
    )


async def _host(remote: RemoteAgent) -> RemoteAgentHost:
    card = await fetch_card(remote)
    return RemoteAgentHost(remote, card.SerializeToString(), name=mesh_name(remote, card))


async def _ask(host: RemoteAgentHost, message: Message) -> Task:
    return Task.FromString(await host.handle(message.SerializeToString()))


# --- the card -------------------------------------------------------------------------------


async def test_fetch_verifies_a_signed_card(server: Server) -> None:
    card = await fetch_card(RemoteAgent(url=server.base, trusted_keys=server.jwks))
    assert card.name == "Calc Agent"
    assert [s.id for s in card.skills] == list(SKILLS)
    assert len(card.signatures) == 1
    assert mesh_name(RemoteAgent(url=server.base), card) == "calc-agent"
    assert mesh_name(RemoteAgent(url=server.base, name="calc"), card) == "calc"


@pytest.mark.parametrize(
    ("path", "trusted", "kind"),
    [
        ("/tampered", "jwks", "bad_signature"),
        ("/unsigned", "jwks", "unsigned"),
        ("", "other_jwks", "unknown_key"),
        ("", None, "unknown_key"),
    ],
)
async def test_refused_cards(server: Server, path: str, trusted: str | None, kind: str) -> None:
    keys = getattr(server, trusted) if trusted else None
    with pytest.raises(CardVerificationError) as info:
        await fetch_card(RemoteAgent(url=server.base + path, trusted_keys=keys))
    assert info.value.kind == kind


async def test_an_unsigned_card_passes_only_when_signatures_are_optional(server: Server) -> None:
    remote = RemoteAgent(url=server.base + "/unsigned", require_signature=False)
    assert (await fetch_card(remote)).name == "Calc Agent"
    with pytest.raises(CardVerificationError):  # a signed card is always checked
        await fetch_card(RemoteAgent(url=server.base + "/tampered", require_signature=False))


async def test_unreachable_url_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(RemoteAgentError) as info:
        await fetch_card(RemoteAgent(url=f"http://127.0.0.1:{free_port()}", timeout_s=5))
    assert time.monotonic() - started < 3
    assert "agent card" in info.value.detail and info.value.state is None


# --- skill calls through the proxy ----------------------------------------------------------


@pytest.mark.parametrize("path", ["", "/blocking"])  # streaming (SSE) and blocking send
async def test_skill_call_completes_with_the_remote_result(server: Server, path: str) -> None:
    remote = RemoteAgent(
        url=server.base + path, trusted_keys=server.jwks, headers={"Authorization": "Bearer t0k"}
    )
    host = await _host(remote)
    assert AgentCard.FromString(host.card()) == await fetch_card(remote)
    before = len(server.seen.messages)
    task = await _ask(host, _call("add", {"a": 2, "b": 40}))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert a2a.task_result(task) == {"sum": 42}
    # what the remote agent received: the in-mesh skill-call message, and the credentials
    wire = server.seen.messages[before]
    call = a2a.parse_skill_call(wire)
    assert (call.skill, call.args, call.sender, call.context_id) == (
        "add",
        {"a": 2, "b": 40},
        "planner",
        "run-1",
    )
    assert server.seen.auth[-1] == "Bearer t0k"
    await host.close()


async def test_a_direct_message_answer_is_the_result(server: Server) -> None:
    host = await _host(RemoteAgent(url=server.base, trusted_keys=server.jwks))
    task = await _ask(host, _call("shout", {"text": "hello"}))
    assert a2a.task_result(task) == "HELLO"
    await host.close()


@pytest.mark.parametrize(
    ("skill", "state", "said"),
    [("fail", "failed", "the ledger is on fire"), ("ask", "input_required", "which ledger?")],
)
async def test_remote_failure_is_a_remote_agent_error(
    server: Server, skill: str, state: str, said: str
) -> None:
    host = await _host(RemoteAgent(url=server.base, trusted_keys=server.jwks))
    task = await _ask(host, _call(skill, {}))
    assert task.status.state == TaskState.TASK_STATE_FAILED
    with pytest.raises(RemoteAgentError) as info:
        a2a.task_result(task)
    error = info.value
    assert (error.agent, error.url, error.state, error.detail) == (
        "calc-agent",
        server.base,
        state,
        said,
    )
    await host.close()


async def test_unknown_skill_is_refused_without_a_call(server: Server) -> None:
    host = await _host(RemoteAgent(url=server.base, trusted_keys=server.jwks))
    before = len(server.seen.messages)
    with pytest.raises(UnknownSkillError):
        a2a.task_result(await _ask(host, _call("divide", {})))
    assert len(server.seen.messages) == before


async def test_a_slow_remote_agent_times_out(server: Server) -> None:
    host = await _host(RemoteAgent(url=server.base, trusted_keys=server.jwks, timeout_s=1))
    started = time.monotonic()
    task = await _ask(host, _call("slow", {}))
    assert time.monotonic() - started < 3
    with pytest.raises(RemoteAgentError, match="within 1s"):
        a2a.task_result(task)
    await host.close()


async def test_a_remote_call_is_canceled_by_its_sender_only(server: Server) -> None:
    host = await _host(RemoteAgent(url=server.base, trusted_keys=server.jwks, timeout_s=60))
    message = a2a.skill_call_message(
        sender="planner",
        recipient="calc-agent",
        skill="slow",
        args={},
        context_id="run-1",
        task_id="t-slow",
    )
    pending = asyncio.ensure_future(_ask(host, message))
    await asyncio.sleep(0.5)
    assert await host.cancel("t-slow", "someone-else") is False
    started = time.monotonic()
    assert await host.cancel("t-slow", "planner") is True
    task = await asyncio.wait_for(pending, 5)
    assert time.monotonic() - started < 3
    assert task.id == "t-slow" and task.status.state == TaskState.TASK_STATE_CANCELED
    with pytest.raises(TaskCanceledError):
        a2a.task_result(task)
    assert await host.cancel("t-slow", "planner") is False  # finished: nothing to cancel
    # the streaming entry point replays the remote task as the events that build it
    raws = [raw async for raw in host.stream(_call("add", {"a": 2, "b": 2}).SerializeToString())]
    events = [StreamResponse.FromString(raw) for raw in raws]
    assert events[0].HasField("task") and events[-1].HasField("status_update")
    folded = None
    for event in events:
        folded = apply_event(folded, event)
    assert folded is not None and a2a.task_result(folded) == {"sum": 4}
    await host.close()


async def test_an_unreachable_agent_fails_fast(server: Server) -> None:
    dead = _card(f"http://127.0.0.1:{free_port()}", streaming=True)
    remote = RemoteAgent(url="http://127.0.0.1:9", timeout_s=5)
    host = RemoteAgentHost(remote, dead.SerializeToString(), name="calc")
    started = time.monotonic()
    task = await _ask(host, _call("add", {"a": 1, "b": 1}))
    assert time.monotonic() - started < 3
    with pytest.raises(RemoteAgentError) as info:
        a2a.task_result(task)
    assert info.value.state is None and "add" in info.value.detail


# --- as a Ray actor -------------------------------------------------------------------------


async def test_proxy_as_a_ray_actor(ray_session: None, server: Server) -> None:
    remote = RemoteAgent(url=server.base, trusted_keys=server.jwks, name="calc")
    name, card, handle = await spawn_remote_host(remote)
    try:
        assert (name, card.name) == ("calc", "Calc Agent")
        assert AgentCard.FromString(await handle.card.remote()) == card
        assert await handle.node_id.remote() == ray.get_runtime_context().get_node_id()
        raw = await handle.handle.remote(_call("add", {"a": 1, "b": 2}, "calc").SerializeToString())
        assert a2a.task_result(Task.FromString(raw)) == {"sum": 3}
        raw = await handle.handle.remote(_call("fail", {}, "calc").SerializeToString())
        with pytest.raises(RemoteAgentError, match="on fire"):
            a2a.task_result(Task.FromString(raw))
    finally:
        ray.kill(handle)
    with pytest.raises(CardVerificationError):  # refused before any actor exists
        await spawn_remote_host(
            RemoteAgent(url=server.base + "/tampered", trusted_keys=server.jwks)
        )


async def test_remote_agent_as_a_mesh_member(ray_session: None, server: Server) -> None:
    """A plan step runs on the remote agent; the security actor vets traffic both ways."""
    from agentmesh import Mesh, MessageBlocked, Plan, PlanStep, ScriptedModel, TemplatePlanner

    from .mesh_agents import POLICY, Echo

    remote = RemoteAgent(url=server.base, trusted_keys=server.jwks)
    plan = TemplatePlanner(
        lambda goal: Plan(
            goal=goal,
            steps=[PlanStep(id="sum", agent="calc-agent", skill="add", args={"a": 2, "b": 3})],
        )
    )
    async with Mesh(
        [Echo], remote_agents=[remote], policy=POLICY, models={"scripted": ScriptedModel()}
    ) as mesh:
        assert ("calc-agent", "add") in {(i.agent, i.skill) for i in mesh.catalog()}
        result = await mesh.run("add two numbers", planner=plan)
        assert result.output == {"sum": 5}
        decisions = [(d.kind, d.principal, d.target, d.verdict) for d in await mesh.decisions()]
        assert ("message", "user", "calc-agent.add", "allow") in decisions
        assert ("reply", "calc-agent", "calc-agent.add", "allow") in decisions
        # the test policy lets echo message only left and itself: the remote agent is refused
        with pytest.raises(MessageBlocked):
            await mesh.call("echo", "forward", agent="calc-agent", skill="add", text="x")
