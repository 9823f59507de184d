"""The Agent Cards the A2A gateway serves: one per identity and URL, signed when given a key.

Every served card is the mesh's card with the gateway's two interfaces (JSON-RPC, HTTP+JSON) at
the URL it was fetched from (or ``public_url``), the security schemes, and only the skills the
caller may call. Two kinds:

- the **public card** (``GET .well-known/agent-card.json``, any identity that may reach the
  agent) names and describes those skills and sets ``capabilities.extended_agent_card``, but
  carries no skill schemas: the skill-schemas extension (``SKILL_SCHEMAS_EXTENSION``) is left
  out, so what each skill takes and returns is only shown to identities trusted with it;
- the **extended card** (``GetExtendedAgentCard``: the JSON-RPC method, or
  ``GET extendedAgentCard``) adds that extension, holding the input and output JSON Schemas of
  the skills the identity may call and of no other. Only identities granted ``extended_card``
  get it; every other one gets the spec's ``ExtendedAgentCardNotConfiguredError`` (JSON-RPC
  ``-32007``, HTTP 400 ``FAILED_PRECONDITION``), the answer of an agent that has no extended
  card, so a refusal tells nothing more.

Both are built per response, because both depend on the caller; with a :class:`CardKey` each is
signed after filtering. Signatures the mesh's card carried are dropped first: they cover a
different card (other interfaces, all skills), so they would not verify on the served one.
"""

from __future__ import annotations

from contextvars import ContextVar

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.types import (
    AgentCard,
    AgentInterface,
    APIKeySecurityScheme,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import TransportProtocol
from a2a.utils.errors import ExtendedAgentCardNotConfiguredError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from agentmesh._private.a2a_calls import Grants
from agentmesh._private.a2a_http import API_KEY_HEADER
from agentmesh._private.a2a_server import grants_of
from agentmesh.protocols.a2a import SKILL_SCHEMAS_EXTENSION
from agentmesh.protocols.a2a_signing import CardKey, sign_card

__all__ = ["API_KEY_SCHEME", "BEARER_SCHEME", "AgentCards", "RequestBaseURL", "served_card"]

#: The names of the security schemes every served card declares.
API_KEY_SCHEME = "apiKey"
BEARER_SCHEME = "bearer"

#: The base URL of the request being served: a2a-sdk's call context does not carry it, and the
#: extended card names the URL it was fetched from, as the public card does.
_request_base: ContextVar[str | None] = ContextVar("agentmesh_a2a_request_base", default=None)


class RequestBaseURL:
    """Pure ASGI middleware that records each request's base URL for the extended card."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _request_base.set(str(Request(scope).base_url))
        try:
            await self.app(scope, receive, send)
        finally:
            _request_base.reset(token)


def _security(card: AgentCard) -> None:
    api_key = APIKeySecurityScheme(name=API_KEY_HEADER, location="header")
    card.security_schemes[API_KEY_SCHEME].CopyFrom(SecurityScheme(api_key_security_scheme=api_key))
    bearer = HTTPAuthSecurityScheme(scheme="Bearer")
    card.security_schemes[BEARER_SCHEME].CopyFrom(SecurityScheme(http_auth_security_scheme=bearer))
    for scheme in (API_KEY_SCHEME, BEARER_SCHEME):  # either one
        card.security_requirements.append(SecurityRequirement(schemes={scheme: StringList()}))


def served_card(card: AgentCard, url: str) -> AgentCard:
    """The mesh card as the gateway serves it at ``url``, all skills and schemas still in it."""
    served = AgentCard()
    served.CopyFrom(card)
    del served.signatures[:]  # they cover the mesh's card, not this one
    del served.supported_interfaces[:]
    for binding in (TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON):
        served.supported_interfaces.append(
            AgentInterface(url=url, protocol_binding=binding.value, protocol_version="1.0")
        )
    served.capabilities.streaming = True
    served.capabilities.extended_agent_card = True
    if "text/plain" not in served.default_input_modes:
        served.default_input_modes.append("text/plain")
    _security(served)
    return served


class AgentCards:
    """One agent's public and extended cards, built for each caller (see the module docs).

    ``base`` is the agent's path (``/agents/<name>/``); ``public_url``, when set, replaces the
    URL each request came to in the cards.
    """

    def __init__(
        self, card: AgentCard, *, base: str, public_url: str | None, key: CardKey | None
    ) -> None:
        self.agent = card.name
        self.base = base
        self.public_url = public_url
        self.key = key
        #: The full card: the request handler's ``extended_agent_card``.
        self.extended_card = served_card(card, self._url(None))
        #: Without the skill schemas: the request handler's ``agent_card``.
        self.public_card = AgentCard()
        self.public_card.CopyFrom(self.extended_card)
        extensions = [
            e for e in self.public_card.capabilities.extensions if e.uri != SKILL_SCHEMAS_EXTENSION
        ]
        del self.public_card.capabilities.extensions[:]
        self.public_card.capabilities.extensions.extend(extensions)

    def _url(self, request_base: str | None) -> str:
        root = self.public_url or request_base or "http://localhost"
        return f"{root.rstrip('/')}{self.base}"

    def for_caller(self, card: AgentCard, grants: Grants, request_base: str | None) -> AgentCard:
        """``card`` at the request's URL with only what ``grants`` may call, signed if keyed."""
        served = AgentCard()
        served.CopyFrom(card)
        for interface in served.supported_interfaces:
            interface.url = self._url(request_base)
        allowed = [s for s in served.skills if grants.may_call(self.agent, s.id)]
        del served.skills[:]
        served.skills.extend(allowed)
        callable_ids = {s.id for s in allowed}
        for extension in served.capabilities.extensions:
            if extension.uri == SKILL_SCHEMAS_EXTENSION:
                for skill in [s for s in extension.params.fields if s not in callable_ids]:
                    del extension.params.fields[skill]
        return served if self.key is None else sign_card(served, self.key)

    async def public(self, request: Request) -> Response:
        """The ``.well-known/agent-card.json`` endpoint (the guard has authenticated)."""
        grants: Grants = request.scope["auth"]
        card = self.for_caller(self.public_card, grants, str(request.base_url))
        return JSONResponse(agent_card_to_dict(card))

    async def extended(self, card: AgentCard, context: ServerCallContext) -> AgentCard:
        """The handler's ``extended_card_modifier``: the caller's extended card, or the spec's
        "not configured" error for an identity without the ``extended_card`` grant."""
        grants = grants_of(context)
        if grants is None or not grants.extended_card:
            raise ExtendedAgentCardNotConfiguredError
        return self.for_caller(card, grants, _request_base.get())
