"""Remote A2A agents as mesh members.

A :class:`RemoteAgent` names an agent served elsewhere over A2A (JSON-RPC or HTTP+JSON). The
mesh fetches its Agent Card from ``<url>/.well-known/agent-card.json``, verifies the card's
signature against the configured keys (a card that fails raises
:class:`~agentmesh.CardVerificationError`) and runs a proxy actor for it: the planner can assign
DAG nodes to its skills and the security actor vets every message to it and every reply from
it, exactly as for a local agent.

What a remote agent receives for a skill call is the in-mesh skill-call message unchanged: a
user-role A2A ``Message`` with one data part (``application/json``) holding the arguments as a
JSON object, and ``metadata.agentmesh = {"sender": ..., "recipient": ..., "skill": ...}``.
Another agentmesh mesh serving its agents over A2A understands it as is; a foreign agent reads
the skill from the metadata and the arguments from the data part. Its answer (a message, or a
task that ends completed) gives the result: the first data part of the first artifact (or of
the message), else its text. A failed, rejected, cancelled or input-needing task, a transport
error or no answer within ``timeout_s`` fails the call with :class:`~agentmesh.RemoteAgentError`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import httpx
from a2a.client import A2ACardResolver, A2AClientError, ClientConfig, create_client
from a2a.types import AgentCard, GetExtendedAgentCardRequest
from a2a.utils.constants import TransportProtocol
from a2a.utils.errors import ExtendedAgentCardNotConfiguredError, UnsupportedOperationError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentmesh.errors import ConfigError, RemoteAgentError
from agentmesh.protocols.a2a_signing import CardKeySet, verify_card

__all__ = ["RemoteAgent", "fetch_card", "mesh_name"]

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
#: The A2A bindings the proxy speaks (a2a-sdk's HTTP transports).
BINDINGS: tuple[str, ...] = (TransportProtocol.JSONRPC.value, TransportProtocol.HTTP_JSON.value)


class RemoteAgent(BaseModel):
    """A remote A2A agent to add to a mesh.

    Args:
        url: the agent's base URL; its card is fetched from ``<url>/.well-known/agent-card.json``.
        name: its name in the mesh; defaults to the card's name, lower-cased, with every other
            character than ``a-z0-9_-`` replaced by ``-``.
        trusted_keys: a JWK Set (``{"keys": [public JWK, ...]}``) of the keys whose signature
            on the card is accepted; None trusts no key.
        require_signature: refuse an unsigned card. A signed card is always verified.
        headers: HTTP headers sent with every request to it (credentials, for one); they are
            sent as given, whatever security schemes the card declares, and never logged.
        timeout_s: the longest one skill call (or the card fetch) may take, end to end.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    name: str | None = None
    trusted_keys: dict[str, Any] | None = None
    require_signature: bool = True
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    timeout_s: float = Field(default=60.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"a remote agent's url is http:// or https://, not {url!r}")
        return url.rstrip("/")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str | None) -> str | None:
        if name is not None and not _NAME.match(name):
            raise ValueError(f"agent names match {_NAME.pattern}, not {name!r}")
        return name

    def key_set(self) -> CardKeySet:
        """The keys the card may be signed by (ConfigError on malformed key data)."""
        return CardKeySet.from_jwks(self.trusted_keys) if self.trusted_keys else CardKeySet()

    def http_client(self) -> httpx.AsyncClient:
        """An HTTP client with this agent's headers and timeout (the caller closes it)."""
        return httpx.AsyncClient(headers=self.headers, timeout=self.timeout_s)


def mesh_name(remote: RemoteAgent, card: AgentCard) -> str:
    """The remote agent's name in the mesh: the configured one, else the card's, sanitised."""
    if remote.name:
        return remote.name
    name = re.sub(r"[^a-z0-9_-]+", "-", card.name.lower()).strip("-_")
    name = re.sub(r"^[^a-z]+", "", name)[:63].rstrip("-_")
    if not name:
        raise ConfigError(f"remote agent {remote.url}: card name {card.name!r} gives no mesh name")
    return name


async def _extended(
    card: AgentCard, http: httpx.AsyncClient, verify: Callable[[AgentCard], None]
) -> AgentCard:
    """The authenticated extended card (an agentmesh gateway puts the skills' schemas there),
    verified like the public one; the public card when this caller may not have it."""
    config = ClientConfig(httpx_client=http, supported_protocol_bindings=list(BINDINGS))
    client = await create_client(card, config)
    try:
        return await client.get_extended_agent_card(
            GetExtendedAgentCardRequest(), signature_verifier=verify
        )
    except (ExtendedAgentCardNotConfiguredError, UnsupportedOperationError):
        return card  # not granted to this caller: the public card is what there is


async def fetch_card(remote: RemoteAgent) -> AgentCard:
    """Fetch the remote agent's card and verify its signature.

    Raises CardVerificationError when the card is refused, RemoteAgentError when it cannot be
    fetched (in ``timeout_s``), and ConfigError when it offers no binding the proxy speaks.
    """
    keys = remote.key_set()

    def verify(card: AgentCard) -> None:
        verify_card(card, trusted=keys, require_signature=remote.require_signature)

    name = remote.name or "?"
    try:
        async with remote.http_client() as client, asyncio.timeout(remote.timeout_s):
            resolver = A2ACardResolver(client, remote.url)
            card = await resolver.get_agent_card(signature_verifier=verify)
            if card.capabilities.extended_agent_card:
                card = await _extended(card, client, verify)
    except TimeoutError:
        detail = f"no agent card within {remote.timeout_s:g}s"
        raise RemoteAgentError(name, remote.url, detail) from None
    except (A2AClientError, httpx.HTTPError) as exc:
        detail = f"cannot fetch its agent card: {exc}"
        raise RemoteAgentError(name, remote.url, detail) from None
    bindings = [i.protocol_binding for i in card.supported_interfaces]
    if not any(b in BINDINGS for b in bindings):
        raise ConfigError(
            f"remote agent {remote.url}: its card offers bindings {bindings}; "
            f"the mesh speaks {list(BINDINGS)}"
        )
    return card
