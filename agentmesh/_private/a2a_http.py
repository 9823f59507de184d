"""The gateway's ASGI guard: authentication, agent grants, body size and a JSON pre-check.

Runs before Starlette routes anything, in this order: credentials (401, the same answer for
every path and every reason, so an anonymous caller learns nothing about agents, tasks or why
a signed token was refused: see ``a2a_tokens``), the agent in the path (403 when the identity
may not call any of its skills, 404 when it could but there is no such agent), the declared
and the actual body size (413, before anything parses it), then, for a POST with a body,
strict UTF-8, JSON syntax, nesting depth and well-formed strings: JSON-RPC gets
``-32700``/``-32600`` (HTTP 200, as a2a-sdk answers JSON-RPC errors), HTTP+JSON a 400.
Errors outside JSON-RPC use the A2A HTTP+JSON error shape (``google.rpc.Status`` with an
``ErrorInfo``). Nothing any client sent is echoed back.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from starlette.authentication import SimpleUser
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentmesh._private.a2a_calls import Grants
from agentmesh._private.a2a_tokens import TokenVerifier, looks_like_jwt

__all__ = [
    "AGENTS_PREFIX",
    "API_KEY_HEADER",
    "GatewayGuard",
    "digest",
    "error_response",
    "json_problem",
]

API_KEY_HEADER = "X-API-Key"
AGENTS_PREFIX = "/agents/"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    413: "INVALID_ARGUMENT",
    500: "INTERNAL",
}
_REASON = {400: "INVALID_REQUEST", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}
_REASON.update({404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"})
_REASON[500] = "INTERNAL_ERROR"


def digest(secret: str) -> bytes:
    """Credentials are looked up by their SHA-256, never compared as plain strings."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def error_response(
    code: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    info = {"@type": _ERROR_INFO, "reason": _REASON[code], "domain": "a2a-protocol.org"}
    body = {"error": {"code": code, "status": _STATUS[code], "message": message, "details": [info]}}
    return JSONResponse(body, status_code=code, headers=dict(headers or {}))


def _rpc_error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})


def json_problem(body: bytes, *, max_depth: int) -> int | None:
    """None for a sound JSON document; else -32700 (not JSON) or -32600 (too deeply nested)."""
    try:
        data = json.loads(body.decode("utf-8", errors="strict"))
    except RecursionError:
        return -32600
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
        return -32700
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > max_depth:
                return -32600
            for key, value in item.items():
                if not _sound(key):
                    return -32700
                stack.append((value, depth + 1))
        elif isinstance(item, list):
            if depth > max_depth:
                return -32600
            stack.extend((value, depth + 1) for value in item)
        elif isinstance(item, str) and not _sound(item):
            return -32700
        elif isinstance(item, float) and not math.isfinite(item):
            return -32700  # NaN and Infinity are not JSON
    return None


def _sound(text: str) -> bool:
    """A string a response can encode: escaped lone surrogates parse, then fail to encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class GatewayGuard:
    """Pure ASGI middleware in front of the gateway's routes (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_keys: Mapping[bytes, Grants],
        bearer_tokens: Mapping[bytes, Grants],
        agents: frozenset[str],
        max_request_bytes: int,
        max_json_depth: int = 64,
        tokens: TokenVerifier | None = None,
        identities: Mapping[str, Grants] | None = None,
    ) -> None:
        self.app = app
        self.api_keys = dict(api_keys)
        self.bearer_tokens = dict(bearer_tokens)
        self.tokens = tokens
        self.identities = dict(identities or {})  # a signed token's ``sub`` -> its grants
        self.agents = agents
        self.max_request_bytes = max_request_bytes
        self.max_json_depth = max_json_depth

    def authenticate(self, headers: Headers) -> Grants | None:
        """The caller's grants: a static API key or bearer token, else a signed token (JWT)."""
        key = headers.get(API_KEY_HEADER)
        if key:
            return self.api_keys.get(digest(key))
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        grants = self.bearer_tokens.get(digest(token))
        if grants is None and self.tokens is not None and looks_like_jwt(token):
            subject = self.tokens.verify(token, subjects=self.identities)
            grants = self.identities.get(subject) if subject is not None else None
        return grants

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        grants = self.authenticate(headers)
        if grants is None:
            challenge = {"WWW-Authenticate": 'Bearer realm="agentmesh"'}
            await error_response(401, "authentication required", challenge)(scope, receive, send)
            return
        path: str = scope["path"]
        agent = (
            path[len(AGENTS_PREFIX) :].split("/", 1)[0] if path.startswith(AGENTS_PREFIX) else ""
        )
        if not agent:
            await error_response(404, "not found")(scope, receive, send)
            return
        if not grants.may_reach(agent):
            await error_response(403, "this identity may not call that agent")(scope, receive, send)
            return
        if agent not in self.agents:
            await error_response(404, "no such agent")(scope, receive, send)
            return
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or len(declared) > 18):
            await error_response(400, "bad Content-Length")(scope, receive, send)
            return
        if declared is not None and int(declared) > self.max_request_bytes:
            await self._too_large(scope, receive, send)
            return
        scope["user"] = SimpleUser(grants.name)
        scope["auth"] = grants
        if scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        body = await self._read(receive)
        if body is None:
            await self._too_large(scope, receive, send)
            return
        rpc = path == f"{AGENTS_PREFIX}{agent}/"
        if body or rpc:
            problem = json_problem(body, max_depth=self.max_json_depth)
            if problem is not None:
                text = "Parse error" if problem == -32700 else "Invalid Request: nesting too deep"
                response = _rpc_error(problem, text) if rpc else error_response(400, text)
                await response(scope, receive, send)
                return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it exceeds the limit (the rest is not read)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_request_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_request_bytes
        response = error_response(
            413, f"the request body exceeds {limit} bytes", {"Connection": "close"}
        )
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
