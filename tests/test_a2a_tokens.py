"""Signed, expiring bearer tokens (JWT) at the A2A gateway: what passes, what is refused.

Keys are made here (cryptography); tokens are signed with PyJWT, or put together by hand where
PyJWT would refuse to make them (``alg: none``, HMAC keyed with a public key). Every refusal
must be the gateway's one 401, whatever its reason, and leave the gateway serving.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from a2a.client import ClientCallContext, ClientConfig, create_client
from a2a.client.auth import AuthInterceptor, CredentialService
from a2a.types import GetTaskRequest, SendMessageRequest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from pydantic import ValidationError
from starlette.applications import Starlette

from agentmesh import Mesh
from agentmesh._private.a2a_tokens import TokenVerifier, load_token_keys
from agentmesh._private.cli_serve import read_gateway_auth
from agentmesh.a2a_gateway import GatewayAuth, GatewayIdentity, TokenAuth, build_a2a_app
from agentmesh.errors import ConfigError

from .test_a2a_gateway import ALICE, AUTH, BASE, V1, _call, _http, _result

ISSUER = "https://issuer.example"
AUDIENCE = "agentmesh-gateway"
ES_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
RS_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_ES_KEY = ec.generate_private_key(ec.SECP256R1())
PRIVATE = {"es": (ES_KEY, "ES256"), "ed": (ED_KEY, "EdDSA"), "rs": (RS_KEY, "RS256")}
JWKS = {
    "keys": [
        {**ECAlgorithm.to_jwk(ES_KEY.public_key(), as_dict=True), "kid": "es"},
        {**OKPAlgorithm.to_jwk(ED_KEY.public_key(), as_dict=True), "kid": "ed", "use": "sig"},
        {**RSAAlgorithm.to_jwk(RS_KEY.public_key(), as_dict=True), "kid": "rs", "alg": "RS256"},
    ]
}
DANA = GatewayIdentity(name="dana", allow=["echo.echo"])  # no static credential at all


def _auth(**tokens: Any) -> GatewayAuth:
    settings = {"issuer": ISSUER, "audience": AUDIENCE, "keys": JWKS, **tokens}
    return GatewayAuth(identities=[*AUTH.identities, DANA], tokens=TokenAuth(**settings))


@pytest.fixture(scope="module")
def app(mesh: Mesh) -> Starlette:
    return build_a2a_app(mesh, auth=_auth())


def _mint(
    sub: str = "dana",
    *,
    kid: str = "es",
    lifetime: float = 300,
    drop: tuple[str, ...] = (),
    key: Any = None,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + lifetime}
    payload |= {"jti": uuid.uuid4().hex, **claims}
    for name in drop:
        del payload[name]
    private, algorithm = PRIVATE.get(kid, (ES_KEY, "ES256"))
    return jwt.encode(payload, key or private, algorithm=algorithm, headers={"kid": kid})


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unsigned(token: str, header: dict[str, Any]) -> str:
    """The token's claims under another header, with no signature (``alg: none``)."""
    return f"{_b64(header)}.{token.split('.')[1]}."


def _hmac_with_public_key(token: str) -> str:
    """Algorithm confusion: HS256, keyed with the RSA public key's PEM (which anyone has)."""
    secret = RS_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{_b64({'alg': 'HS256', 'kid': 'rs', 'typ': 'JWT'})}.{token.split('.')[1]}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **V1}


async def _card_status(app: Starlette, token: str) -> httpx.Response:
    async with _http(app, _bearer(token)) as http:
        return await http.get(BASE + ".well-known/agent-card.json")


# --- accepted -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kid", ["es", "ed", "rs"])
async def test_a_signed_token_authenticates_its_subject(app: Starlette, kid: str) -> None:
    card = await _card_status(app, _mint(kid=kid))
    assert card.status_code == 200, card.text
    assert [s["id"] for s in card.json()["skills"]] == ["echo"]  # dana's grants, not more


class _FreshTokens(CredentialService):
    """A new one-time token for every request, as a client of such a gateway must."""

    async def get_credentials(self, scheme: str, context: ClientCallContext | None) -> str | None:
        return _mint() if scheme == "bearer" else None


async def test_a2a_sdk_client_calls_with_signed_tokens(app: Starlette) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), timeout=60) as http:
        client = await create_client(
            BASE,
            ClientConfig(httpx_client=http, streaming=False),
            interceptors=[AuthInterceptor(_FreshTokens())],
            resolver_http_kwargs={"headers": _bearer(_mint())},
        )
        message = _call("echo", {"text": "signed", "times": 2})
        events = [e async for e in client.send_message(SendMessageRequest(message=message))]
        task = next(e.task for e in events if e.HasField("task"))
        assert _result(task) == "signed signed"
        assert (await client.get_task(GetTaskRequest(id=task.id))).id == task.id
    # the task is dana's: alice (an API key) does not see it
    async with _http(app, {**ALICE, **V1}) as http:
        assert (await http.get(BASE + f"tasks/{task.id}")).status_code == 404


# --- refused ------------------------------------------------------------------------------------

_NOW = int(time.time())
_REFUSED: dict[str, tuple[Any, str]] = {
    "expired": (lambda: _mint(iat=_NOW - 1000, exp=_NOW - 100), "expired"),
    "expired past the leeway": (lambda: _mint(iat=_NOW - 1000, exp=_NOW - 31), "expired"),
    "not yet valid (iat)": (lambda: _mint(iat=_NOW + 600, exp=_NOW + 900), "not yet valid"),
    "not yet valid (nbf)": (lambda: _mint(nbf=_NOW + 600), "not yet valid"),
    "too long lived": (lambda: _mint(lifetime=3601), "lifetime over the maximum"),
    "wrong issuer": (lambda: _mint(iss="https://evil.example"), "wrong issuer"),
    "wrong audience": (lambda: _mint(aud="another-service"), "wrong audience"),
    "bad signature": (lambda: _mint(key=OTHER_ES_KEY), "bad signature"),
    "alg none": (lambda: _unsigned(_mint(), {"alg": "none", "kid": "es"}), "is not the key's"),
    "alg none, no kid": (lambda: _unsigned(_mint(), {"alg": "none"}), "unknown key id"),
    "HS256 keyed with the public key": (
        lambda: _hmac_with_public_key(_mint()),
        "'HS256' is not the key's",
    ),
    "RS256 header on the EC key": (
        lambda: f"{_b64({'alg': 'RS256', 'kid': 'es'})}.{_mint(kid='rs').split('.', 1)[1]}",
        "'RS256' is not the key's",
    ),
    "unknown kid": (lambda: _mint(kid="nope"), "unknown key id"),
    "unknown subject": (lambda: _mint(sub="mallory"), "unknown subject"),
    "no exp": (lambda: _mint(drop=("exp",)), "missing claim 'exp'"),
    "no jti": (lambda: _mint(drop=("jti",)), "missing claim 'jti'"),
    "no sub": (lambda: _mint(drop=("sub",)), "missing claim 'sub'"),
    "exp not a number": (lambda: _mint(exp="tomorrow"), "malformed exp"),
    "huge exp": (lambda: _mint(exp=10**400), "malformed exp"),
    "garbage segments": (lambda: "aaaa.bbbb.cccc", "malformed header"),
    "signed, but not JSON": (
        lambda: jwt.PyJWS().encode(b"not json", ES_KEY, algorithm="ES256", headers={"kid": "es"}),
        "malformed",
    ),
    "bad signature bytes": (lambda: f"{_mint().rsplit('.', 1)[0]}.c2ln", "bad signature"),
}


@pytest.mark.parametrize("case", list(_REFUSED))
async def test_every_refusal_is_the_same_401(
    app: Starlette, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    make, reason = _REFUSED[case]
    token = make()
    rpc = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}})
    with caplog.at_level(logging.INFO, logger="agentmesh.a2a_gateway"):
        async with _http(app, _bearer(token)) as http:
            answers = [
                await http.get(BASE + ".well-known/agent-card.json"),
                await http.post(BASE, content=rpc),
                await http.get("http://testserver/agents/no-such-agent/tasks/x"),
            ]
    async with _http(app, _bearer("not-a-known-token")) as http:
        baseline = await http.get(BASE + ".well-known/agent-card.json")
    assert baseline.status_code == 401
    for response in answers:
        assert response.status_code == 401
        assert response.content == baseline.content  # no reason, nothing echoed
        assert response.headers["www-authenticate"] == baseline.headers["www-authenticate"]
    logged = [r.getMessage() for r in caplog.records if r.name == "agentmesh.a2a_gateway"]
    assert any(reason in line for line in logged), logged
    assert not any(token in line or token.split(".")[1] in line for line in logged)
    assert (await _card_status(app, _mint())).status_code == 200  # still serving


async def test_a_replayed_token_is_refused_and_the_gateway_keeps_serving(
    app: Starlette, caplog: pytest.LogCaptureFixture
) -> None:
    token = _mint()
    assert (await _card_status(app, token)).status_code == 200
    with caplog.at_level(logging.INFO, logger="agentmesh.a2a_gateway"):
        replayed = await _card_status(app, token)
        async with _http(app, _bearer(token)) as http:
            replayed_call = await http.post(BASE, content=b'{"jsonrpc":"2.0","id":1}')
    assert replayed.status_code == replayed_call.status_code == 401
    assert any("replayed" in r.getMessage() for r in caplog.records)
    # the gateway keeps serving: fresh tokens and static credentials alike
    assert (await _card_status(app, _mint())).status_code == 200
    async with _http(app, {**ALICE, **V1}) as http:
        assert (await http.get(BASE + ".well-known/agent-card.json")).status_code == 200


async def test_reusable_tokens_when_one_time_is_off(mesh: Mesh) -> None:
    reusable = build_a2a_app(mesh, auth=_auth(one_time=False))
    token = _mint(drop=("jti",))
    for _ in range(3):
        assert (await _card_status(reusable, token)).status_code == 200


async def test_a_full_replay_memory_refuses_new_tokens(
    mesh: Mesh, caplog: pytest.LogCaptureFixture
) -> None:
    small = build_a2a_app(mesh, auth=_auth(max_remembered=2))
    assert (await _card_status(small, _mint())).status_code == 200
    assert (await _card_status(small, _mint())).status_code == 200
    with caplog.at_level(logging.INFO, logger="agentmesh.a2a_gateway"):
        assert (await _card_status(small, _mint())).status_code == 401
    assert any("replay memory full" in r.getMessage() for r in caplog.records)
    async with _http(small, {**ALICE, **V1}) as http:  # other credentials still work
        assert (await http.get(BASE + ".well-known/agent-card.json")).status_code == 200


def test_one_time_ids_are_forgotten_once_their_token_expires() -> None:
    now = [float(int(time.time()))]
    verifier = TokenVerifier(
        keys=load_token_keys(JWKS),
        issuer=ISSUER,
        audience=AUDIENCE,
        leeway_s=5,
        max_remembered=1,
        clock=lambda: now[0],
    )
    first = _mint(lifetime=60)
    assert verifier.verify(first, subjects={"dana"}) == "dana"
    assert verifier.verify(first, subjects={"dana"}) is None  # replayed
    assert verifier.verify(_mint(lifetime=60), subjects={"dana"}) is None  # memory full
    assert verifier.remembered == 1
    now[0] += 60 + 5 + 1  # past exp plus the leeway: the first id may go
    assert verifier.verify(first, subjects={"dana"}) is None  # expired, not "replayed"
    fresh = _mint(iat=int(now[0]), exp=int(now[0]) + 60)
    assert verifier.verify(fresh, subjects={"dana"}) == "dana"
    assert verifier.remembered == 1


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jwk", "message"),
    [
        ({"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ", "kid": "h"}, "symmetric"),
        ({**JWKS["keys"][0], "d": "AAAA"}, "private part"),
        ({**JWKS["keys"][0], "alg": "HS256"}, "ES256 signing key"),
        ({**JWKS["keys"][0], "use": "enc"}, "signing key"),
        ({k: v for k, v in JWKS["keys"][0].items() if k != "kid"}, "'kid'"),
        (
            {
                **RSAAlgorithm.to_jwk(
                    rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key(),
                    as_dict=True,
                ),
                "kid": "small",
            },
            "2048",
        ),
        (
            {
                **ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()).public_key(), True),
                "kid": "p384",
            },
            "kty/crv",
        ),
    ],
)
def test_token_keys_must_be_public_signing_keys(jwk: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TokenAuth(issuer=ISSUER, audience=AUDIENCE, keys={"keys": [jwk]})


def test_token_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="listed twice"):
        TokenAuth(issuer=ISSUER, audience=AUDIENCE, keys={"keys": [JWKS["keys"][0]] * 2})
    with pytest.raises(ValidationError):
        TokenAuth(issuer=ISSUER, audience=AUDIENCE, keys={"keys": []})
    with pytest.raises(ValidationError, match="algorithms"):  # keys fix the algorithms
        TokenAuth.model_validate(
            {"issuer": ISSUER, "audience": AUDIENCE, "keys": JWKS, "algorithms": ["HS256"]}
        )


async def test_the_yaml_form_accepts_tokens(mesh: Mesh, tmp_path: Path) -> None:
    """What ``agentmesh serve --a2a --auth FILE`` reads: identities plus ``tokens:``."""
    import yaml

    document = {
        "identities": [{"name": "dana", "allow": ["echo.echo"]}],
        "tokens": {"issuer": ISSUER, "audience": AUDIENCE, "keys": JWKS, "leeway_s": 10},
    }
    path = tmp_path / "identities.yaml"
    path.write_text(yaml.safe_dump(document))
    auth = read_gateway_auth(path)
    assert auth.tokens is not None and auth.tokens.leeway_s == 10 and auth.tokens.one_time
    served = build_a2a_app(mesh, auth=auth)
    assert (await _card_status(served, _mint())).status_code == 200
    document["tokens"] = {**document["tokens"], "keys": {"keys": [{"kty": "oct", "kid": "x"}]}}
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError, match="symmetric"):
        read_gateway_auth(path)
