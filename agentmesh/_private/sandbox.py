"""The sandbox every stdio MCP server runs in, unless its config opts out (``unsandboxed``).

A server is a program we did not write, fed text we do not control: treat it as hostile. Each
one is started through bubblewrap (``bwrap``) with:

- its own mount, PID, IPC, UTS and cgroup namespaces, and its own (empty) network namespace
  unless the sandbox allows the network: no route anywhere, not even to the host's loopback;
- a read-only filesystem holding only what the program needs: ``/usr`` (with the ``/bin``,
  ``/lib*`` and ``/sbin`` links), a few files of ``/etc`` (the loader cache, time zone, name
  resolution, CA certificates), the program's own install (a venv, the Python prefix it points
  at, the source folders an editable install maps), the script it runs (its folder), any
  other existing path named on its command line, its ``cwd``, and the ``readable`` extras;
  a private ``/proc``, a minimal ``/dev`` and a private ``/tmp`` (a tmpfs of ``max_file_mb``);
- write access only to the ``writable`` paths (bind-mounted read-write);
- an environment of a few variables (``PATH``, ``HOME=/tmp``, ``LANG``, ...) plus the
  config's ``env``: nothing of the launcher's. ``bwrap`` itself starts from that same
  environment, so even ``/proc/1/environ`` inside holds nothing else;
- limits set by ``prlimit`` on the server process: CPU seconds, address space, processes
  (threads count), file size, no core dumps. Wall time is the pool's per-call timeout.

The command line that builds this (and how it differs when the launcher is root) is
:mod:`agentmesh._private.sandbox_argv`; what a program needs bound to run is found by
:mod:`agentmesh._private.sandbox_program`. The network: see :func:`effective_sandbox`.

What this does not contain: there is no seccomp filter, so the kernel's whole syscall surface
is open to an unprivileged process; ``cpu_seconds`` is for the server's life, so a tool that
spins burns CPU after its call timed out until that limit kills the server; ``max_file_mb``
bounds each file and the private /tmp (RAM), not the number of files in a writable folder; a
granted network is the host's whole network (no egress filter); servers of the same name in
two meshes on one machine share a uid, hence a process count.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Final, TypeVar

from agentmesh.errors import SandboxUnavailableError

if TYPE_CHECKING:
    from agentmesh._private.policy_schema import Policy
    from agentmesh.protocols.mcp_config import HttpServer, Sandbox, StdioServer

__all__ = [
    "FORBIDDEN_BINDS",
    "check_path",
    "check_sandbox_available",
    "effective_sandbox",
    "with_policy",
]

logger = logging.getLogger("agentmesh.sandbox")

#: Paths never bound into a sandbox (nor anything under the last three).
FORBIDDEN_BINDS: Final = ("/", "/proc", "/dev", "/sys")

T = TypeVar("T")


def check_path(path: str) -> str:
    """Validator of sandbox paths: absolute, normalised, and not a whole system tree."""
    if not path.startswith("/") or "\0" in path:
        raise ValueError(f"sandbox path {path!r} must be absolute")
    normal = os.path.normpath(path)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    if normal in FORBIDDEN_BINDS or normal.startswith(("/proc/", "/dev/", "/sys/")):
        raise ValueError(f"sandbox path {path!r} may not be /, or under /proc, /dev or /sys")
    return normal


# --- availability ------------------------------------------------------------------------------


def _which(program: str) -> str | None:
    found = shutil.which(program)  # on this process's PATH, as for any other program
    return os.path.abspath(found) if found else None


def check_sandbox_available(servers: str | Sequence[str] = ()) -> dict[str, str]:
    """The absolute paths of bwrap, env, prlimit (and setpriv when root); raise if missing.

    ``servers`` (a name or names) only makes the message say who needs the sandbox.
    """
    needed = ["bwrap", "env", "prlimit"] + (["setpriv"] if os.geteuid() == 0 else [])
    found = {name: _which(name) for name in needed}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        names = [servers] if isinstance(servers, str) else list(servers)
        if not names:
            who = "a stdio MCP server runs"
        elif len(names) == 1:
            who = f"MCP server {names[0]!r} runs"
        else:
            who = f"MCP servers {', '.join(repr(n) for n in names)} run"
        package = "bubblewrap" if "bwrap" in missing else "util-linux"
        raise SandboxUnavailableError(
            f"{who} sandboxed, which needs {' and '.join(missing)} (package {package}); not "
            f"found on PATH. Install it (Debian/Ubuntu: `sudo apt-get install {package}`; "
            f"Fedora: `sudo dnf install {package}`; `make install` does it when run as root), "
            "or set unsandboxed=True on a server's StdioServer to run it without a sandbox "
            "(it then gets your user, files and network)"
        )
    return {name: path for name, path in found.items() if path is not None}


# --- the policy's part -------------------------------------------------------------------------


def _union(*lists: Iterable[T]) -> list[T]:
    seen: dict[T, None] = {}
    for items in lists:
        for item in items:
            seen.setdefault(item, None)
    return list(seen)


def effective_sandbox(server: StdioServer, policy: Policy) -> Sandbox:
    """The server's own sandbox plus what the policy's ``sandbox`` grants matching it allow.

    Paths add up: ``writable`` and ``readable`` are the config's plus every matching grant's.
    The network is the one grant that needs both sides: the config asks for it
    (``network: true``) and some matching grant allows it; otherwise it stays off.
    """
    sandbox = server.sandbox
    grants = [g for glob, g in policy.sandbox.items() if fnmatchcase(server.name, glob)]
    network_granted = any(g.network for g in grants)
    if sandbox.network and not network_granted:
        logger.warning(
            "MCP server %r asks for the network, but no sandbox grant of policy %r allows "
            "it: it runs without network",
            server.name,
            policy.name,
        )
    data = sandbox.model_dump()
    data["network"] = sandbox.network and network_granted
    data["writable"] = _union(sandbox.writable, *(g.writable for g in grants))
    data["readable"] = _union(sandbox.readable, *(g.readable for g in grants))
    return type(sandbox).model_validate(data)


def with_policy(
    servers: Sequence[StdioServer | HttpServer], policy: Policy
) -> list[StdioServer | HttpServer]:
    """The configs with each stdio server's sandbox replaced by its effective sandbox."""
    from agentmesh.protocols.mcp_config import StdioServer  # the config module imports us

    return [
        s.model_copy(update={"sandbox": effective_sandbox(s, policy)})
        if isinstance(s, StdioServer)
        else s
        for s in servers
    ]
