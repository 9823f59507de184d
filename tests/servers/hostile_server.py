"""A hostile MCP stdio server for the sandbox tests: each tool tries one escape and reports.

Run by path: ``python tests/servers/hostile_server.py``. Every tool answers a JSON object saying
what it attempted and what happened (``ok`` and the error), so a test can tell "contained"
from "the attempt never ran". Tools that would hurt the machine are bounded by arguments.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server: MCPServer = MCPServer(name="hostile", log_level="WARNING")

Report = dict[str, Any]


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@server.tool()
async def write_file(path: str, text: str = "pwned", raise_errors: bool = False) -> Report:
    """Try to create (or overwrite) a file; with ``raise_errors`` a failure is a tool error."""
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as exc:
        if raise_errors:
            raise ToolError(f"write_file: {_error(exc)}") from exc
        return {"ok": False, "path": path, "error": _error(exc), "errno": exc.errno}
    return {"ok": True, "path": path}


@server.tool()
async def write_big(path: str, mb: int) -> Report:
    """Try to write a file of ``mb`` MiB, one MiB at a time; report how far it got."""
    written = 0
    chunk = b"x" * (1024 * 1024)
    try:
        with open(path, "wb") as f:
            for _ in range(mb):
                f.write(chunk)
                f.flush()
                written += 1
    except OSError as exc:
        return {"ok": False, "written_mb": written, "error": _error(exc), "errno": exc.errno}
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return {"ok": True, "written_mb": written}


@server.tool()
async def read_file(path: str) -> Report:
    """Try to read a file (or list a directory)."""
    try:
        if os.path.isdir(path):
            return {"ok": True, "path": path, "entries": sorted(os.listdir(path))}
        with open(path, "rb") as f:
            data = f.read(100_000)
    except OSError as exc:
        return {"ok": False, "path": path, "error": _error(exc), "errno": exc.errno}
    return {"ok": True, "path": path, "content": data.decode("utf-8", "replace")}


@server.tool()
async def environment(launcher_pid: int = 0) -> Report:
    """Everything environment-like it can see: its own, its init's, its parent's, the launcher's."""
    sources = {
        "self": "/proc/self/environ",
        "init": "/proc/1/environ",
        "parent": f"/proc/{os.getppid()}/environ",
    }
    if launcher_pid:
        sources["launcher"] = f"/proc/{launcher_pid}/environ"
    seen: Report = {"os_environ": dict(os.environ)}
    for name, path in sources.items():
        try:
            with open(path, "rb") as f:
                seen[name] = {"ok": True, "content": f.read().decode("utf-8", "replace")}
        except OSError as exc:
            seen[name] = {"ok": False, "error": _error(exc), "errno": exc.errno}
    return seen


@server.tool()
async def identity() -> Report:
    """Who and where it is: ids, capabilities, limits, memory, namespaces' view."""
    import resource

    with open("/proc/self/status") as f:
        status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
    limits = {
        name: resource.getrlimit(getattr(resource, f"RLIMIT_{name.upper()}"))
        for name in ("cpu", "as", "nproc", "fsize", "core")
    }
    return {
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "hostname": socket.gethostname(),
        "cwd": os.getcwd(),
        "cap_eff": status.get("CapEff", "").strip(),
        "cap_bnd": status.get("CapBnd", "").strip(),
        "no_new_privs": status.get("NoNewPrivs", "").strip(),
        "vm_peak_kb": int(status.get("VmPeak", "0 kB").split()[0]),
        "vm_size_kb": int(status.get("VmSize", "0 kB").split()[0]),
        "vm_rss_kb": int(status.get("VmRSS", "0 kB").split()[0]),
        "threads": int(status.get("Threads", "0")),
        "limits": limits,
        "pids_visible": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "root_entries": sorted(os.listdir("/")),
    }


@server.tool()
async def connect(host: str, port: int, timeout_s: float = 2.0) -> Report:
    """Try to open a TCP connection (and send one byte if it opens)."""
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(b"!")
    except OSError as exc:
        return {
            "ok": False,
            "error": _error(exc),
            "errno": exc.errno,
            "elapsed_s": time.monotonic() - started,
        }
    return {"ok": True, "elapsed_s": time.monotonic() - started}


@server.tool()
async def fork_bomb(count: int = 200, hold_s: float = 0.0) -> Report:
    """Try to start ``count`` processes; keep them ``hold_s`` seconds, then kill and reap them."""
    children: list[int] = []
    error = None
    for _ in range(count):
        try:
            pid = os.fork()
        except OSError as exc:
            error = _error(exc)
            break
        if pid == 0:  # the child: sleep until killed, never return into the server
            try:
                time.sleep(600)
            finally:
                os._exit(0)
        children.append(pid)
    started = len(children)
    await anyio.sleep(hold_s)
    for pid in children:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for pid in children:
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)
    return {"attempted": count, "started": started, "error": error}


@server.tool()
async def allocate(
    step_mb: int = 64, max_mb: int = 1_000_000, raise_errors: bool = False
) -> Report:
    """Allocate ``step_mb`` blocks until the allocator refuses (or ``max_mb``); then free them."""
    blocks: list[bytearray] = []
    error = None
    try:
        while len(blocks) * step_mb < max_mb:
            blocks.append(bytearray(step_mb * 1024 * 1024))
    except MemoryError as exc:
        if raise_errors:
            allocated = len(blocks) * step_mb
            blocks.clear()
            raise ToolError(f"allocate: MemoryError after {allocated} MiB") from exc
        error = f"MemoryError: {exc}"
    allocated = len(blocks) * step_mb
    blocks.clear()
    return {"allocated_mb": allocated, "error": error}


@server.tool()
async def user_namespace() -> Report:
    """Try to create a user namespace (and so be "root" in it): kernel attack surface."""
    import ctypes

    pid = os.fork()
    if pid == 0:  # unshare(CLONE_NEWUSER) needs a single-threaded caller: a fresh child
        libc = ctypes.CDLL(None, use_errno=True)
        failed = libc.unshare(0x10000000) != 0
        os._exit(ctypes.get_errno() if failed else 0)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return {"ok": True}
    return {"ok": False, "errno": code, "error": os.strerror(code)}


@server.tool()
def spin() -> str:
    """Burn CPU forever (in a worker thread): only a limit or a kill ends it."""
    x = 0
    while True:
        x += 1


@server.tool()
async def echo(text: str) -> str:
    """Answer, to show the server is still alive."""
    return text


if __name__ == "__main__":
    sys.stderr.write("hostile: starting\n")
    sys.stderr.flush()
    server.run()
