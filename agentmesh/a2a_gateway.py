"""The mesh over A2A: every agent served to any A2A client over HTTP, behind authentication.

``build_a2a_app(mesh, auth=...)`` returns a Starlette app. Each agent ``<name>`` of the mesh
lives under ``/agents/<name>/``:

- ``GET /agents/<name>/.well-known/agent-card.json``: its Agent Card, with the interfaces below,
  the security schemes (``X-API-Key`` header, bearer token) and only the skills the caller may
  call, without their schemas;
- ``POST /agents/<name>/``: JSON-RPC 2.0 (``SendMessage``, ``GetTask``, ``ListTasks``,
  ``CancelTask``, ``GetExtendedAgentCard``; send the header ``A2A-Version: 1.0``);
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

The extended card (``GetExtendedAgentCard``, or ``GET .../extendedAgentCard``) adds the input
and output JSON Schemas of the skills the caller may call; only identities with
``extended_card: true`` get it, the others the spec's ``-32007`` (HTTP 400 on HTTP+JSON).
Given ``card_key``, every card served is signed (JWS, ``agentmesh.protocols.a2a_signing``) for
its caller and URL; see ``agentmesh._private.a2a_cards``.

Tasks are kept in memory, with their history, for the life of the app.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from a2a.server.routes import create_rest_routes
from a2a.types import AgentCard
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from agentmesh._private.a2a_calls import Grants, SkillTable
from agentmesh._private.a2a_cards import AgentCards, RequestBaseURL
from agentmesh._private.a2a_http import AGENTS_PREFIX, GatewayGuard, digest, error_response
from agentmesh._private.a2a_server import (
    GatewayRequestHandler,
    MeshAgentExecutor,
    OwnedTaskStore,
    ScrubbingJsonRpcDispatcher,
)
from agentmesh._private.a2a_tokens import TokenVerifier, load_token_keys
from agentmesh._private.asgi import serve_asgi
from agentmesh.mesh import Mesh
from agentmesh.protocols.a2a_signing import CardKey

__all__ = [
    "GatewayAuth",
    "GatewayIdentity",
    "TaskRetention",
    "TokenAuth",
    "build_a2a_app",
    "serve_a2a",
]

_MIN_SECRET = 16


class GatewayIdentity(BaseModel):
    """One caller: its credentials, the ``agent.skill`` glob patterns it may call and whether
    it may fetch the extended Agent Cards (``extended_card``: they add the skills' schemas).

    With :attr:`GatewayAuth.tokens` an identity needs no static credential: a signed token
    whose ``sub`` is its name authenticates it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Also the caller's principal in the mesh's security policy: ``user:<name>``.
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@-]+$")
    api_keys: list[SecretStr] = Field(default_factory=list)
    bearer_tokens: list[SecretStr] = Field(default_factory=list)
    allow: list[str] = Field(default_factory=list)
    extended_card: bool = False


class TokenAuth(BaseModel):
    """Signed, expiring bearer tokens (JWT) the gateway accepts, from one issuer.

    ``keys`` is a JWK Set of the issuer's PUBLIC keys, each with a ``kid``: ES256 (EC P-256),
    EdDSA (Ed25519) or RS256 (RSA, 2048+ bits); a key verifies only its own algorithm, so
    ``none`` and HMAC tokens never pass. A token needs ``iss``, ``aud``, ``sub`` (an identity's
    name), ``iat`` and ``exp`` (at most ``max_lifetime_s`` apart; clocks may differ by
    ``leeway_s``). With ``one_time`` each token (its ``jti``) is accepted once, so a captured
    token cannot be replayed; ids are remembered until their token expires and at most
    ``max_remembered`` at a time: when full, new tokens are refused (fail closed) rather than
    a live id forgotten. The tokens' keys are never fetched from a URL.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    keys: dict[str, Any]
    leeway_s: float = Field(default=30.0, ge=0, le=300)
    max_lifetime_s: float = Field(default=3600.0, gt=0)
    one_time: bool = True
    max_remembered: int = Field(default=100_000, ge=1)

    @field_validator("keys")
    @classmethod
    def _valid_keys(cls, keys: dict[str, Any]) -> dict[str, Any]:
        load_token_keys(keys)  # ValueError: a bad key is a configuration error, found at load
        return keys


class GatewayAuth(BaseModel):
    """Who may call the gateway: identities with API keys (``X-API-Key``), static bearer
    tokens, or signed bearer tokens (JWT, ``tokens``) naming them.

    Names and credentials must be unique; every credential has at least 16 characters.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    identities: list[GatewayIdentity]
    tokens: TokenAuth | None = None

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


def _agent_routes(
    mesh: Mesh,
    card: AgentCard,
    public_url: str | None,
    retention: TaskRetention,
    *,
    card_key: CardKey | None,
) -> tuple[Mount, Any]:
    name = card.name
    base = f"{AGENTS_PREFIX}{name}/"
    table = SkillTable(name, card)
    cards = AgentCards(card, base=base, public_url=public_url, key=card_key)
    handler = GatewayRequestHandler(
        table=table,
        agent_executor=MeshAgentExecutor(
            mesh, table, max_artifact_bytes=retention.max_artifact_bytes
        ),
        task_store=OwnedTaskStore(**retention.model_dump(exclude={"max_artifact_bytes"})),
        agent_card=cards.public_card,
        extended_agent_card=cards.extended_card,
        extended_card_modifier=cards.extended,
    )

    rpc = ScrubbingJsonRpcDispatcher(request_handler=handler)
    rest = [r for r in create_rest_routes(handler) if isinstance(r, Route)]  # no tenant mount
    routes: list[BaseRoute] = [
        Route(AGENT_CARD_WELL_KNOWN_PATH, cards.public, methods=["GET"]),
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
    its last ``max_history`` messages. Running tasks are never dropped. A task's artifacts may
    hold at most ``max_artifact_bytes``: a result that grows past it is canceled at the agent
    and its task fails, so one task cannot hold more than that.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ttl_s: float = Field(default=3600.0, gt=0)
    max_finished_per_owner: int = Field(default=1000, ge=1)
    max_history: int = Field(default=50, ge=1)
    max_artifact_bytes: int = Field(default=1_000_000, ge=1)


def build_a2a_app(
    mesh: Mesh,
    *,
    auth: GatewayAuth,
    max_request_bytes: int = 1_000_000,
    public_url: str | None = None,
    retention: TaskRetention | None = None,
    card_key: CardKey | None = None,
) -> Starlette:
    """A Starlette app serving every agent of a started mesh over A2A (see the module docs).

    ``public_url`` is the base URL the cards advertise; by default each card names the URL it
    was fetched from. With ``card_key``, every card served (public and extended) is signed
    with it, per response, after it is filtered for the caller. Serve the app with uvicorn (or
    any ASGI server); it holds no state beyond its in-memory tasks.

    Raises:
        ConfigError: the mesh is not started.
    """
    if max_request_bytes < 1:
        raise ValueError("max_request_bytes must be positive")
    mounts, handlers = [], []
    for card in mesh.cards():  # ConfigError if the mesh is not started
        mount, handler = _agent_routes(
            mesh, card, public_url, retention or TaskRetention(), card_key=card_key
        )
        mounts.append(mount)
        handlers.append(handler)
    api_keys, bearer_tokens, identities = {}, {}, {}
    for identity in auth.identities:
        grants = Grants(identity.name, identity.allow, extended_card=identity.extended_card)
        identities[identity.name] = grants
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
        # built here, not in the guard: one replay memory per app, however often Starlette
        # builds its middleware stack
        tokens=_token_verifier(auth.tokens) if auth.tokens is not None else None,
        identities=identities,
    )
    app = Starlette(
        routes=mounts,
        middleware=[Middleware(RequestBaseURL), guard],
        exception_handlers={404: _http_error, 405: _http_error, Exception: _http_error},
        lifespan=lifespan,
    )
    app.state.a2a_handlers = tuple(handlers)  # one per agent: their task stores, for inspection
    return app


def _token_verifier(tokens: TokenAuth) -> TokenVerifier:
    """A verifier with its own replay memory, for one app."""
    return TokenVerifier(
        keys=load_token_keys(tokens.keys),
        issuer=tokens.issuer,
        audience=tokens.audience,
        leeway_s=tokens.leeway_s,
        max_lifetime_s=tokens.max_lifetime_s,
        one_time=tokens.one_time,
        max_remembered=tokens.max_remembered,
    )


async def serve_a2a(
    mesh: Mesh,
    *,
    auth: GatewayAuth,
    host: str = "127.0.0.1",
    port: int = 8767,
    max_request_bytes: int = 1_000_000,
    public_url: str | None = None,
    card_key: CardKey | None = None,
) -> None:
    """Serve a started mesh's agents over A2A (JSON-RPC and HTTP+JSON) until cancelled."""
    app = build_a2a_app(
        mesh,
        auth=auth,
        max_request_bytes=max_request_bytes,
        public_url=public_url,
        card_key=card_key,
    )
    await serve_asgi(app, host, port, what="A2A")
