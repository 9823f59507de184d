"""Serving an ASGI app (the MCP and A2A endpoints) with uvicorn until the caller cancels."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

from agentmesh.errors import ConfigError

__all__ = ["serve_asgi"]


async def serve_asgi(app: Any, host: str, port: int, *, what: str) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; the port is bound first, so a port in
    use is a ConfigError rather than a log line. Signals stay the caller's."""
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot serve {what} on {host}:{port}: {exc}") from None

    class Web(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # the caller decides when to stop: by cancelling

    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5
    )
    web = Web(config)

    async def run() -> None:
        try:
            await web.serve(sockets=[sock])
        except SystemExit:  # uvicorn exits when its startup fails; it logged why
            raise ConfigError(f"the {what} HTTP server on {host}:{port} failed to start") from None

    task = asyncio.ensure_future(run())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        web.should_exit = True  # let uvicorn close its connections, then stop
        await task
        raise
    finally:
        sock.close()
