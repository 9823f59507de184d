"""``agentmesh serve --mcp``: the example mesh as an MCP server, over stdio or streamable HTTP.

On stdio, stdout carries MCP frames and nothing else: the wire is claimed before Ray starts, so
fd 1 of this process (and of every process Ray starts) points at stderr while it serves; Ray's
worker output, its warnings and this command's messages all go to stderr.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agentmesh.errors import AgentMeshError, ConfigError

if TYPE_CHECKING:
    from agentmesh.a2a_gateway import GatewayAuth
    from agentmesh.inference import ModelSpec
    from agentmesh.mesh import Mesh
    from agentmesh.protocols.a2a_signing import CardKey

__all__ = ["read_card_key", "read_gateway_auth", "serve"]


def _say(message: str) -> None:
    print(f"agentmesh serve: {message}", file=sys.stderr, flush=True)


def _describe(mesh: Mesh) -> str:
    return f"{len(mesh.catalog())} tools of {len(mesh.cards())} agents"


async def _until_stopped(work: Coroutine[Any, Any, None]) -> int | None:
    """Run ``work`` until it returns or SIGTERM/SIGINT stops it; the signal's number, if one did.

    Installed once the mesh has started, because ``ray.init`` puts in a SIGTERM handler that
    aborts the process and leaves Ray's agent processes behind. After serving, SIGTERM is
    ignored: an MCP client closes stdin, then sends SIGTERM to the whole process group 2 s
    later, and closing the mesh (and its Ray, which gets that SIGTERM too) takes about that.
    """
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[int] = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _settle, stopped, signum)
    task = asyncio.ensure_future(work)
    either: list[asyncio.Future[Any]] = [task, stopped]
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        _ignore_sigterm()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if stopped.done():
        return int(stopped.result())
    stopped.cancel()
    task.result()  # raise what ended it
    return None


def _settle(future: asyncio.Future[int], signum: int) -> None:
    if not future.done():
        future.set_result(signum)


def _sole_error(exc: BaseException) -> BaseException:
    """The one error inside (nested) exception groups: stdio_server's task group wraps it."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _why(signum: int | None, otherwise: str) -> str:
    return otherwise if signum is None else signal.Signals(signum).name


def _ignore_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


async def _serve_stdio(model: ModelSpec | None) -> int | None:
    from mcp.server.stdio import stdio_server

    from agentmesh.examples.demo import build_mesh
    from agentmesh.mcp_server import build_mcp_server

    # Claim stdin/stdout first: from here fd 0 is /dev/null and fd 1 is stderr, for this process
    # and for Ray's processes started below; the frames go through private duplicates.
    async with stdio_server() as (read, write):
        async with build_mesh(model=model) as mesh:
            server = build_mcp_server(mesh)
            _say(f"serving {_describe(mesh)} over MCP stdio (pid {os.getpid()})")
            signum = await _until_stopped(
                server.run(read, write, server.create_initialization_options())
            )
            _say(f"{_why(signum, 'stdin closed')}; stopping the mesh")
        _ignore_sigterm()  # stopping Ray restored its default
        _say("mesh stopped")
        if signum is not None:
            # stdio_server would wait for its reader thread, blocked on a stdin still open
            os._exit(128 + signum)
    return None


async def _serve_http(model: ModelSpec | None, host: str, port: int) -> int | None:
    from agentmesh.examples.demo import build_mesh
    from agentmesh.mcp_server import serve_mcp

    async with build_mesh(model=model) as mesh:
        where = f"[{host}]" if ":" in host else host
        _say(f"serving {_describe(mesh)} over MCP at http://{where}:{port}/mcp")
        signum = await _until_stopped(serve_mcp(mesh, transport="http", host=host, port=port))
        _say(f"{_why(signum, 'stopped')}; stopping the mesh")
    _ignore_sigterm()
    _say("mesh stopped")
    return signum


def _thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 JWK thumbprint: a key id any verifier can recompute from the public key."""
    members = {k: jwk[k] for k in ("crv", "e", "kty", "n", "x", "y") if k in jwk}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def read_card_key(path: Path) -> CardKey:
    """The card-signing key in ``path``: a private JWK (JSON, with its ``kid``) or an
    unencrypted PKCS#8 / SEC1 PEM, whose key id is then its RFC 7638 thumbprint (a PEM names
    no key id, and verifiers must know which one to trust).

    Raises:
        ConfigError: unreadable, not a private ES256 / EdDSA key, or a JWK without ``kid``.
    """
    from agentmesh.protocols.a2a_signing import CardKey

    try:
        data = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the card key {path}: {type(exc).__name__}") from None
    if data.lstrip().startswith("{"):
        try:
            jwk = json.loads(data)
        except ValueError:
            raise ConfigError(f"the card key {path} is not valid JSON") from None
        if not isinstance(jwk, dict):
            raise ConfigError(f"the card key {path} is not a JWK object")
        return CardKey.from_jwk(jwk)
    key = CardKey.from_pem(data, kid=path.name)  # ConfigError if it is no private key
    return CardKey(_thumbprint(key.public.to_jwk()), key.key)


def read_gateway_auth(path: Path) -> GatewayAuth:
    """The gateway's identities (and signed-token settings, ``tokens:``) from a YAML file.

    Raises:
        ConfigError: unreadable, not YAML, or not a valid ``GatewayAuth``.
    """
    import yaml

    from agentmesh.a2a_gateway import GatewayAuth

    try:
        return GatewayAuth.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"cannot use the gateway credentials in {path}: {exc}") from None


async def _serve_a2a(
    model: ModelSpec | None, host: str, port: int, auth_file: Path, key_file: Path | None
) -> int | None:
    from agentmesh.a2a_gateway import serve_a2a
    from agentmesh.examples.demo import build_mesh

    auth = read_gateway_auth(auth_file)
    card_key = read_card_key(key_file) if key_file is not None else None  # before Ray starts
    async with build_mesh(model=model) as mesh:
        where = f"[{host}]" if ":" in host else host
        _say(f"serving {_describe(mesh)} over A2A at http://{where}:{port}/agents/<name>/")
        if card_key is not None:
            _say(f"signing every served card with key id {card_key.kid!r}")
        serving = serve_a2a(mesh, auth=auth, host=host, port=port, card_key=card_key)
        signum = await _until_stopped(serving)
        _say(f"{_why(signum, 'stopped')}; stopping the mesh")
    _ignore_sigterm()
    _say("mesh stopped")
    return signum


#: The CLI's one way to name a GGUF file (``agentmesh demo`` and ``agentmesh serve``).
ModelPathOption = Annotated[
    Path | None, typer.Option(help="A GGUF file; default: the bundled Gemma 3 270M.")
]


def serve(
    mcp: Annotated[bool, typer.Option("--mcp", help="Serve the mesh as an MCP server.")] = False,
    a2a: Annotated[
        bool, typer.Option("--a2a", help="Serve the mesh's agents over A2A (HTTP).")
    ] = False,
    auth: Annotated[
        Path | None,
        typer.Option(help="With --a2a: YAML of identities (API keys, bearer tokens, grants)."),
    ] = None,
    card_key: Annotated[
        Path | None,
        typer.Option(
            help="With --a2a: sign every served card with this private key: a JWK (JSON, with "
            "its kid) or a PEM (key id: its RFC 7638 thumbprint)."
        ),
    ] = None,
    http: Annotated[
        bool, typer.Option("--http", help="Streamable HTTP at http://HOST:PORT/mcp, not stdio.")
    ] = False,
    host: Annotated[str, typer.Option(help="HTTP host; keep it loopback.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="HTTP port (default: 8766 for MCP, 8767 for A2A).")
    ] = None,
    model_path: ModelPathOption = None,
) -> None:
    """Serve the example mesh to MCP clients (each skill a tool <agent>.<skill>) or, with
    --a2a, to A2A clients (each agent at /agents/<name>/, authenticated)."""
    if mcp == a2a:
        raise typer.BadParameter(
            "choose one: `agentmesh serve --mcp` (stdio, or --http) or "
            "`agentmesh serve --a2a --auth identities.yaml`",
            param_hint="'--mcp' / '--a2a'",
        )
    if a2a and auth is None:
        raise typer.BadParameter(
            "the A2A gateway authenticates every request", param_hint="'--auth'"
        )
    if card_key is not None and not a2a:
        raise typer.BadParameter("only the A2A gateway serves cards", param_hint="'--card-key'")
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from agentmesh.inference import LlamaCppModel

    model = LlamaCppModel(path=str(model_path)) if model_path else None
    try:
        if a2a:
            assert auth is not None
            work = _serve_a2a(model, host, port or 8767, auth, card_key)
        else:
            work = _serve_http(model, host, port or 8766) if http else _serve_stdio(model)
        signum = asyncio.run(work)
    except KeyboardInterrupt:  # Ctrl-C before the mesh was serving
        raise typer.Exit(130) from None
    except Exception as exc:
        error = _sole_error(exc)
        if not isinstance(error, AgentMeshError):
            raise
        _say(f"{type(error).__name__}: {error}")
        raise typer.Exit(1) from None
    if signum is not None:
        raise typer.Exit(128 + signum)
