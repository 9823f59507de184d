"""The mesh over A2A: every agent served to any A2A client over HTTP, behind authentication.

``build_a2a_app(mesh, auth=...)`` returns a Starlette app. Each agent ``<name>`` of the mesh
lives under ``/agents/<name>/``:

- ``GET /agents/<name>/.well-known/agent-card.json``: its Agent Card, with the interfaces below,
  the security schemes (``X-API-Key`` header, bearer token) and only the skills the caller may
  call;
- ``POST /agents/<name>/``: JSON-RPC 2.0 (``SendMessage``, ``GetTask``, ``ListTasks``,
  ``CancelTask``; send the header ``A2A-Version: 1.0``);
- ``/agents/<name>/message:send``, ``/agents/<name>/tasks/<id>`` ...: HTTP+JSON (REST).

A message is one skill call: its metadata names the skill (``{"skill": "echo"}``; an agent
with one skill needs no name) and it has exactly one part, a data part with the arguments as a
JSON object, or a text part for a skill whose only required parameter is a string. The answer is
a task: completed with one ``result`` artifact (a data part holding the skill's JSON result), or
failed with a status message ``<ErrorType>: <message>`` whose metadata
``agentmesh.error`` carries ``type`` and ``message``; a security denial names its rule, never
the refused content. Calls run through ``Mesh.call``, as the mesh's "user" principal, so the
security policy applies on top of the gateway's grants.

Every request is authenticated, the card fetch included; without valid credentials the answer
is HTTP 401 whatever the path. An identity may call the ``agent.skill`` glob patterns it is
granted (a bare ``agent`` pattern grants all its skills): another agent is HTTP 403, another
skill of an agent it may reach is an invalid-params error before any task exists. Tasks belong
to the identity that created them; for every other identity they do not exist. Bodies over
``max_request_bytes`` get HTTP 413 before anything parses them; bodies that are not UTF-8 JSON,
or nest deeper than 64 levels, get the JSON-RPC parse / invalid-request errors (HTTP 400 on
HTTP+JSON); no error response carries an exception's text. A request without ``A2A-Version``
is taken as protocol 0.3 (a2a-sdk's reading of the spec) and refused with ``-32009``.

Tasks are kept in memory, with their history, for the life of the app.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import create_rest_routes
from a2a.types import (
    AgentCard,
    AgentInterface,
    APIKeySecurityScheme,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, TransportProtocol
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from agentmesh._private.a2a_calls import Grants, SkillTable
from agentmesh._private.a2a_http import (
    AGENTS_PREFIX,
    API_KEY_HEADER,
    GatewayGuard,
    digest,
    error_response,
)
from agentmesh._private.a2a_server import (
    GatewayRequestHandler,
    MeshAgentExecutor,
    OwnedTaskStore,
    ScrubbingJsonRpcDispatcher,
)
from agentmesh._private.asgi import serve_asgi
from agentmesh.mesh import Mesh

__all__ = ["GatewayAuth", "GatewayIdentity", "TaskRetention", "build_a2a_app", "serve_a2a"]

#: The names of the security schemes every served card declares.
API_KEY_SCHEME = "apiKey"
BEARER_SCHEME = "bearer"
_MIN_SECRET = 16


class GatewayIdentity(BaseModel):
    """One caller: its credentials and the ``agent.skill`` glob patterns it may call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128)
    api_keys: list[SecretStr] = Field(default_factory=list)
    bearer_tokens: list[SecretStr] = Field(default_factory=list)
    allow: list[str] = Field(default_factory=list)


class GatewayAuth(BaseModel):
    """Who may call the gateway: identities with API keys (``X-API-Key``) or bearer tokens.

    Names and credentials must be unique; every credential has at least 16 characters.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    identities: list[GatewayIdentity]

    @model_validator(mode="after")
    def _unique(self) -> GatewayAuth:
        names = [i.name for i in self.identities]
        if len(set(names)) != len(names):
            raise ValueError("identity names must be unique")
        secrets = [s.get_secret_value() for i in self.identities for s in i.api_keys]
        secrets += [s.get_secret_value() for i in self.identities for s in i.bearer_tokens]
        if any(len(s) < _MIN_SECRET for s in secrets):
            raise ValueError(f"every API key and bearer token needs {_MIN_SECRET}+ characters")
        if len(set(secrets)) != len(secrets):
            raise ValueError("an API key or bearer token is given twice")
        return self


def _security(card: AgentCard) -> None:
    api_key = APIKeySecurityScheme(name=API_KEY_HEADER, location="header")
    card.security_schemes[API_KEY_SCHEME].CopyFrom(SecurityScheme(api_key_security_scheme=api_key))
    bearer = HTTPAuthSecurityScheme(scheme="Bearer")
    card.security_schemes[BEARER_SCHEME].CopyFrom(SecurityScheme(http_auth_security_scheme=bearer))
    for scheme in (API_KEY_SCHEME, BEARER_SCHEME):  # either one
        card.security_requirements.append(SecurityRequirement(schemes={scheme: StringList()}))


def _served_card(card: AgentCard, url: str) -> AgentCard:
    served = AgentCard()
    served.CopyFrom(card)
    del served.supported_interfaces[:]
    for binding in (TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON):
        served.supported_interfaces.append(
            AgentInterface(url=url, protocol_binding=binding.value, protocol_version="1.0")
        )
    served.capabilities.streaming = False
    if "text/plain" not in served.default_input_modes:
        served.default_input_modes.append("text/plain")
    _security(served)
    return served


def _agent_routes(
    mesh: Mesh, card: AgentCard, public_url: str | None, retention: TaskRetention
) -> tuple[Mount, Any]:
    name = card.name
    base = f"{AGENTS_PREFIX}{name}/"
    table = SkillTable(name, card)
    handler = GatewayRequestHandler(
        table=table,
        agent_executor=MeshAgentExecutor(mesh, table),
        task_store=OwnedTaskStore(**retention.model_dump()),
        agent_card=_served_card(card, f"{(public_url or 'http://localhost').rstrip('/')}{base}"),
    )

    async def agent_card(request: Request) -> Response:
        root = public_url or str(request.base_url)
        served = _served_card(card, f"{root.rstrip('/')}{base}")
        grants: Grants = request.scope["auth"]
        allowed = [s for s in served.skills if grants.may_call(name, s.id)]
        del served.skills[:]
        served.skills.extend(allowed)
        return JSONResponse(agent_card_to_dict(served))

    rpc = ScrubbingJsonRpcDispatcher(request_handler=handler)
    rest = [r for r in create_rest_routes(handler) if isinstance(r, Route)]  # no tenant mount
    routes: list[BaseRoute] = [
        Route(AGENT_CARD_WELL_KNOWN_PATH, agent_card, methods=["GET"]),
        Route("/", rpc.handle_requests, methods=["POST"]),
        *rest,
    ]
    return Mount(base.rstrip("/"), routes=routes), handler


async def _http_error(request: Request, exc: Exception) -> Response:
    code = exc.status_code if isinstance(exc, HTTPException) else 500
    if code not in (404, 405):
        code = 500
    return error_response(code, {404: "not found", 405: "method not allowed"}.get(code, "internal"))


class TaskRetention(BaseModel):
    """How long the gateway keeps tasks, so its memory stays bounded under any request stream.

    Finished tasks expire ``ttl_s`` after they finished, each identity keeps at most
    ``max_finished_per_owner`` of them per agent (oldest dropped first), and every task keeps
    its last ``max_history`` messages. Running tasks are never dropped.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ttl_s: float = Field(default=3600.0, gt=0)
    max_finished_per_owner: int = Field(default=1000, ge=1)
    max_history: int = Field(default=50, ge=1)


def build_a2a_app(
    mesh: Mesh,
    *,
    auth: GatewayAuth,
    max_request_bytes: int = 1_000_000,
    public_url: str | None = None,
    retention: TaskRetention | None = None,
) -> Starlette:
    """A Starlette app serving every agent of a started mesh over A2A (see the module docs).

    ``public_url`` is the base URL the cards advertise; by default each card names the URL it
    was fetched from. Serve the app with uvicorn (or any ASGI server); it holds no state beyond
    its in-memory tasks.

    Raises:
        ConfigError: the mesh is not started.
    """
    if max_request_bytes < 1:
        raise ValueError("max_request_bytes must be positive")
    mounts, handlers = [], []
    for card in mesh.cards():  # ConfigError if the mesh is not started
        mount, handler = _agent_routes(mesh, card, public_url, retention or TaskRetention())
        mounts.append(mount)
        handlers.append(handler)
    api_keys, bearer_tokens = {}, {}
    for identity in auth.identities:
        grants = Grants(identity.name, identity.allow)
        api_keys.update({digest(k.get_secret_value()): grants for k in identity.api_keys})
        bearer_tokens.update({digest(t.get_secret_value()): grants for t in identity.bearer_tokens})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        for handler in handlers:
            await handler.aclose()

    guard = Middleware(
        GatewayGuard,
        api_keys=api_keys,
        bearer_tokens=bearer_tokens,
        agents=frozenset(card.name for card in mesh.cards()),
        max_request_bytes=max_request_bytes,
    )
    return Starlette(
        routes=mounts,
        middleware=[guard],
        exception_handlers={404: _http_error, 405: _http_error, Exception: _http_error},
        lifespan=lifespan,
    )


async def serve_a2a(
    mesh: Mesh,
    *,
    auth: GatewayAuth,
    host: str = "127.0.0.1",
    port: int = 8767,
    max_request_bytes: int = 1_000_000,
    public_url: str | None = None,
) -> None:
    """Serve a started mesh's agents over A2A (JSON-RPC and HTTP+JSON) until cancelled."""
    app = build_a2a_app(mesh, auth=auth, max_request_bytes=max_request_bytes, public_url=public_url)
    await serve_asgi(app, host, port, what="A2A")
