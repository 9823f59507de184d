"""The gateway's served cards: signed per caller, and the authenticated extended card.

Signatures are checked with a2a-sdk's own verifier (``a2a.utils.signing``), as any A2A client
would, and with ``agentmesh.protocols.a2a_signing.verify_card``; cards are fetched with a2a-sdk's
card resolver and client, and with raw httpx for what a client library would never send.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.client.card_resolver import parse_agent_card
from a2a.types import AgentCard, GetExtendedAgentCardRequest
from a2a.utils.errors import ExtendedAgentCardNotConfiguredError
from a2a.utils.signing import InvalidSignaturesError, create_signature_verifier
from jwt import PyJWK
from jwt.exceptions import InvalidKeyError
from pydantic import SecretStr
from starlette.applications import Starlette
from typer.testing import CliRunner

from agentmesh import Mesh
from agentmesh._private import cli_serve
from agentmesh._private.a2a_calls import Grants
from agentmesh._private.a2a_cards import AgentCards
from agentmesh.a2a_gateway import GatewayAuth, GatewayIdentity, build_a2a_app
from agentmesh.cli import app as cli_app
from agentmesh.errors import CardVerificationError, ConfigError
from agentmesh.protocols.a2a import SKILL_SCHEMAS_EXTENSION, card_skill_schemas
from agentmesh.protocols.a2a_signing import (
    CardKey,
    CardKeySet,
    generate_card_key,
    public_jwk,
    sign_card,
    verify_card,
)

from .test_a2a_gateway import BASE, V1, _http

KEY = generate_card_key("gateway-2026")
OTHER_KEY = generate_card_key("someone-else", algorithm="EdDSA")
EXT_KEY = "ext-key-0123456789abcdef"
PLAIN_TOKEN = "plain-token-0123456789abcdef"
AUTH = GatewayAuth(
    identities=[
        GatewayIdentity(
            name="ext",
            api_keys=[SecretStr(EXT_KEY)],
            allow=["echo.echo", "echo.fail"],
            extended_card=True,
        ),
        GatewayIdentity(name="plain", bearer_tokens=[SecretStr(PLAIN_TOKEN)], allow=["echo.echo"]),
    ]
)
EXT = {"X-API-Key": EXT_KEY}
PLAIN = {"Authorization": f"Bearer {PLAIN_TOKEN}"}
CARD_PATH = ".well-known/agent-card.json"
#: The spec's answer when an agent has no extended card, exactly as a2a-sdk words it: all a
#: caller without the grant may learn.
NOT_CONFIGURED = {
    "code": -32007,
    "message": "Authenticated Extended Card is not configured",
    "data": [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "EXTENDED_AGENT_CARD_NOT_CONFIGURED",
            "domain": "a2a-protocol.org",
            "metadata": {},
        }
    ],
}


@pytest.fixture(scope="module")
def signed(mesh: Mesh) -> Starlette:
    return build_a2a_app(mesh, auth=AUTH, card_key=KEY)


@pytest.fixture(scope="module")
def unsigned(mesh: Mesh) -> Starlette:
    return build_a2a_app(mesh, auth=AUTH)


def _sdk_verifier(key: CardKey = KEY) -> Callable[[AgentCard], None]:
    """a2a-sdk's verifier, trusting exactly ``key`` (by its key id)."""

    def key_provider(kid: str | None, jku: str | None) -> PyJWK:
        assert jku is None  # the gateway names no key URL
        if kid != key.kid:
            raise InvalidKeyError(f"unknown key id {kid!r}")  # a2a-sdk tries the next
        return PyJWK.from_dict(public_jwk(key))

    return create_signature_verifier(key_provider, ["ES256", "EdDSA"])


def _copy(card: AgentCard) -> AgentCard:
    copied = AgentCard()
    copied.CopyFrom(card)
    return copied


def _rpc_body(method: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 7, "method": method, "params": {}}


# --- signed public cards ----------------------------------------------------------------------


async def test_the_public_card_is_signed_and_verifies_with_a2a_sdk(signed: Starlette) -> None:
    async with _http(signed, PLAIN) as http:
        resolver = A2ACardResolver(http, BASE)
        card = await resolver.get_agent_card(signature_verifier=_sdk_verifier())
        raw = (await http.get(BASE + CARD_PATH)).json()
    assert verify_card(card, trusted=CardKeySet([KEY.public])) == KEY.kid
    # the raw JSON (what a client stores) verifies the same
    _sdk_verifier()(parse_agent_card(raw))
    assert len(card.signatures) == 1
    protected = card.signatures[0].protected
    header = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
    assert header == {"alg": "ES256", "kid": KEY.kid, "typ": "JOSE"}
    # signed as served to this caller: its skills only, this URL, the extended card offered
    assert [s.id for s in card.skills] == ["echo"]
    assert {i.url for i in card.supported_interfaces} == {BASE}
    assert card.capabilities.extended_agent_card
    assert card_skill_schemas(card) == {}  # the schemas are for the extended card


async def test_a_tampered_card_fails_both_verifiers(signed: Starlette) -> None:
    async with _http(signed, PLAIN) as http:
        card = parse_agent_card((await http.get(BASE + CARD_PATH)).json())
    keys = CardKeySet([KEY.public])
    for tamper in (
        lambda c: setattr(c, "description", c.description + " (now with more power)"),
        lambda c: setattr(c.supported_interfaces[0], "url", "http://evil.example/agents/echo/"),
        lambda c: c.skills.add(id="fail", name="fail", description="granted? no", tags=["x"]),
        lambda c: setattr(c.capabilities, "extended_agent_card", False),
    ):
        changed = _copy(card)
        tamper(changed)
        with pytest.raises(InvalidSignaturesError):
            _sdk_verifier()(changed)
        with pytest.raises(CardVerificationError) as refused:
            verify_card(changed, trusted=keys)
        assert refused.value.kind == "bad_signature"
    # a verifier that trusts another key accepts none of it
    with pytest.raises(InvalidSignaturesError):
        _sdk_verifier(OTHER_KEY)(card)
    with pytest.raises(CardVerificationError) as unknown:
        verify_card(card, trusted=[OTHER_KEY.public])
    assert unknown.value.kind == "unknown_key"


async def test_each_caller_and_url_gets_its_own_signed_card(signed: Starlette) -> None:
    async with _http(signed, EXT) as http:
        ext = parse_agent_card((await http.get(BASE + CARD_PATH)).json())
        elsewhere_url = "http://gateway.internal:8443/agents/echo/"
        elsewhere = parse_agent_card((await http.get(elsewhere_url + CARD_PATH)).json())
    async with _http(signed, PLAIN) as http:
        plain = parse_agent_card((await http.get(BASE + CARD_PATH)).json())
    assert [s.id for s in ext.skills] == ["echo", "fail"]
    assert [s.id for s in plain.skills] == ["echo"]
    assert {i.url for i in elsewhere.supported_interfaces} == {elsewhere_url}
    for card in (ext, elsewhere, plain):
        _sdk_verifier()(card)
    assert len({c.signatures[0].signature for c in (ext, elsewhere, plain)}) == 3


async def test_without_a_key_cards_carry_no_signature(unsigned: Starlette) -> None:
    async with _http(unsigned, EXT) as http:
        public = parse_agent_card((await http.get(BASE + CARD_PATH)).json())
        extended = parse_agent_card((await http.get(BASE + "extendedAgentCard", headers=V1)).json())
    for card in (public, extended):
        assert not card.signatures
        assert verify_card(card, trusted=[KEY.public], require_signature=False) is None
    assert public.capabilities.extended_agent_card  # the extended card needs no key
    assert set(card_skill_schemas(extended)) == {"echo", "fail"}


def test_signatures_on_the_mesh_card_are_dropped_before_signing(mesh: Mesh) -> None:
    mesh_card = next(c for c in mesh.cards() if c.name == "echo")
    presigned = sign_card(mesh_card, OTHER_KEY)
    grants = Grants("someone", ["echo.echo"])
    for key in (KEY, None):
        cards = AgentCards(presigned, base="/agents/echo/", public_url=None, key=key)
        served = cards.for_caller(cards.public_card, grants, "http://testserver/")
        assert len(served.signatures) == (1 if key else 0)
        if key is not None:
            assert verify_card(served, trusted=[KEY.public, OTHER_KEY.public]) == KEY.kid
    assert len(presigned.signatures) == 1  # the mesh's own card is left alone


# --- the authenticated extended card ----------------------------------------------------------


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_the_extended_card_through_the_sdk_client(signed: Starlette, binding: str) -> None:
    async with _http(signed, EXT) as http:
        config = ClientConfig(
            httpx_client=http, streaming=False, supported_protocol_bindings=[binding]
        )
        client = await create_client(BASE, config)
        card = await client.get_extended_agent_card(
            GetExtendedAgentCardRequest(), signature_verifier=_sdk_verifier()
        )
    assert verify_card(card, trusted=CardKeySet([KEY.public])) == KEY.kid
    assert [s.id for s in card.skills] == ["echo", "fail"]
    assert {i.url for i in card.supported_interfaces} == {BASE}
    schemas = card_skill_schemas(card)
    assert set(schemas) == {"echo", "fail"}  # inject, forward, use: not granted, not shown
    assert schemas["echo"]["input"]["required"] == ["text"]
    assert schemas["echo"]["output"]["type"] == "string"
    assert [e.uri for e in card.capabilities.extensions].count(SKILL_SCHEMAS_EXTENSION) == 1


async def test_the_extended_card_over_raw_jsonrpc_and_rest(signed: Starlette) -> None:
    async with _http(signed, {**EXT, **V1}) as http:
        rpc = await http.post(BASE, json=_rpc_body("GetExtendedAgentCard"))
        rest = await http.get(BASE + "extendedAgentCard")
    assert rpc.status_code == rest.status_code == 200
    by_rpc = parse_agent_card(rpc.json()["result"])
    by_rest = parse_agent_card(rest.json())
    for card in (by_rpc, by_rest):
        _sdk_verifier()(card)
        assert set(card_skill_schemas(card)) == {"echo", "fail"}


async def test_an_identity_without_the_grant_gets_the_spec_error(signed: Starlette) -> None:
    async with _http(signed, {**PLAIN, **V1}) as http:
        rpc = await http.post(BASE, json=_rpc_body("GetExtendedAgentCard"))
        rest = await http.get(BASE + "extendedAgentCard")
        client = await create_client(BASE, ClientConfig(httpx_client=http, streaming=False))
        with pytest.raises(ExtendedAgentCardNotConfiguredError):
            await client.get_extended_agent_card(GetExtendedAgentCardRequest())
    assert rpc.status_code == 200  # JSON-RPC errors ride on HTTP 200
    assert rpc.json() == {"jsonrpc": "2.0", "id": 7, "error": NOT_CONFIGURED}
    assert rest.status_code == 400
    error = rest.json()["error"]
    assert error["status"] == "FAILED_PRECONDITION"
    assert error["message"] == NOT_CONFIGURED["message"]
    assert error["details"] == NOT_CONFIGURED["data"]
    assert "fail" not in rest.text and "schema" not in rest.text.lower()


async def test_the_extended_card_needs_credentials(signed: Starlette) -> None:
    for headers in ({}, {"X-API-Key": "not-a-key-0123456789abcdef"}, {"Authorization": "Bearer"}):
        async with _http(signed, {**headers, **V1}) as http:
            rpc = await http.post(BASE, json=_rpc_body("GetExtendedAgentCard"))
            rest = await http.get(BASE + "extendedAgentCard")
        assert rpc.status_code == rest.status_code == 401
        assert rest.json()["error"]["status"] == "UNAUTHENTICATED"
        assert "signatures" not in rpc.text and "skills" not in rest.text


async def test_the_extended_card_of_an_unreachable_agent_is_forbidden(signed: Starlette) -> None:
    async with _http(signed, {**EXT, **V1}) as http:
        rest = await http.get("http://testserver/agents/left/extendedAgentCard")
        rpc = await http.post(
            "http://testserver/agents/left/", json=_rpc_body("GetExtendedAgentCard")
        )
    assert rest.status_code == rpc.status_code == 403


def test_identities_take_the_grant_from_yaml_data() -> None:
    data = {"identities": [{"name": "ops", "api_keys": [EXT_KEY], "extended_card": True}]}
    assert GatewayAuth.model_validate(data).identities[0].extended_card
    assert not GatewayIdentity(name="ops").extended_card  # off unless granted


# --- `agentmesh serve --a2a --card-key FILE` --------------------------------------------------


def test_card_keys_load_from_a_jwk_or_a_pem(tmp_path: Path) -> None:
    jwk_file = tmp_path / "card-key.json"
    jwk_file.write_text(json.dumps(KEY.to_jwk()))
    from_jwk = cli_serve.read_card_key(jwk_file)
    assert from_jwk.kid == KEY.kid and public_jwk(from_jwk) == public_jwk(KEY)

    pem_file = tmp_path / "card-key.pem"
    pem_file.write_text(OTHER_KEY.to_pem())
    from_pem = cli_serve.read_card_key(pem_file)
    assert from_pem.algorithm == "EdDSA"
    assert from_pem.public.to_pem() == OTHER_KEY.public.to_pem()
    # a PEM names no key id: it is the RFC 7638 thumbprint, stable across loads
    assert from_pem.kid == cli_serve.read_card_key(pem_file).kid
    assert len(from_pem.kid) == 43 and from_pem.kid != OTHER_KEY.kid
    signed = sign_card(AgentCard(name="x"), from_pem)
    assert verify_card(signed, trusted=[from_pem.public]) == from_pem.kid


@pytest.mark.parametrize(
    "content",
    [
        json.dumps({k: v for k, v in KEY.to_jwk().items() if k != "kid"}),  # no kid
        json.dumps(public_jwk(KEY)),  # a public key signs nothing
        "{not json",
        "[1, 2]",
        KEY.public.to_pem(),
        "hello",
    ],
)
def test_bad_card_key_files_are_config_errors(tmp_path: Path, content: str) -> None:
    path = tmp_path / "key"
    path.write_text(content)
    with pytest.raises(ConfigError) as refused:
        cli_serve.read_card_key(path)
    assert '"d"' not in str(refused.value) and KEY.to_jwk()["d"] not in str(refused.value)


def test_the_cli_checks_the_card_key_before_starting_anything(tmp_path: Path) -> None:
    auth = tmp_path / "identities.yaml"
    auth.write_text(f"identities:\n  - name: ops\n    api_keys: [{EXT_KEY}]\n")
    runner = CliRunner()
    without_a2a = runner.invoke(cli_app, ["serve", "--mcp", "--card-key", str(auth)])
    assert without_a2a.exit_code == 2 and "--card-key" in without_a2a.output
    missing = tmp_path / "missing.pem"
    result = runner.invoke(
        cli_app, ["serve", "--a2a", "--auth", str(auth), "--card-key", str(missing)]
    )
    assert result.exit_code == 1
    assert "ConfigError: cannot read the card key" in result.output


def test_the_cli_hands_the_card_key_to_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib

    import agentmesh.a2a_gateway
    import agentmesh.examples.demo

    auth = tmp_path / "identities.yaml"
    auth.write_text(f"identities:\n  - name: ops\n    api_keys: [{EXT_KEY}]\n")
    key_file = tmp_path / "card-key.json"
    key_file.write_text(json.dumps(KEY.to_jwk()))
    served: dict[str, Any] = {}

    class _NoMesh:
        def catalog(self) -> list[object]:
            return []

        def cards(self) -> list[object]:
            return []

    @contextlib.asynccontextmanager
    async def build_mesh(**kwargs: object) -> Any:
        yield _NoMesh()

    async def serve_a2a(mesh: object, **kwargs: Any) -> None:
        served.update(kwargs)

    monkeypatch.setattr(agentmesh.examples.demo, "build_mesh", build_mesh)
    monkeypatch.setattr(agentmesh.a2a_gateway, "serve_a2a", serve_a2a)
    monkeypatch.setattr(cli_serve, "_ignore_sigterm", lambda: None)
    result = CliRunner().invoke(
        cli_app, ["serve", "--a2a", "--auth", str(auth), "--card-key", str(key_file)]
    )
    assert result.exit_code == 0, result.output
    assert f"signing every served card with key id {KEY.kid!r}" in result.output
    assert served["card_key"].kid == KEY.kid
    assert public_jwk(served["card_key"]) == public_jwk(KEY)
