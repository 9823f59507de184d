"""The stdio sandbox against a hostile MCP server of our own (tests/servers/hostile_server.py).

Each hostile tool tries one escape and reports what happened; each test checks the attempt
really ran (a positive control where one makes sense) and was contained, and that the other
servers of the same pool keep serving. No mocks: real bwrap, real processes, real sockets.
Needs bubblewrap: without it every pool start here fails with SandboxUnavailableError.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import ValidationError

from agentmesh._private.sandbox import effective_sandbox
from agentmesh._private.sandbox_argv import sandbox_uid, sandboxed_argv
from agentmesh.errors import (
    PolicyError,
    SandboxUnavailableError,
    ToolError,
    ToolServerDiedError,
)
from agentmesh.protocols.mcp import McpClientPool, Sandbox, StdioServer, unsandboxed_servers
from agentmesh.security import Policy

PY = sys.executable
SERVERS = Path(__file__).parent / "servers"
HOSTILE = str(SERVERS / "hostile_server.py")
FLAKY = str(SERVERS / "flaky_server.py")
REPO = Path(__file__).resolve().parent.parent
ROOT = os.geteuid() == 0
CANARY = f"canary-{uuid.uuid4().hex}"
TOKEN = f"token-{uuid.uuid4().hex}"  # a server's own secret: it gets it, nobody else sees it
HOSTILE_PROCS = 32


def hostile(name: str, sandbox: Sandbox | None = None, **kw: Any) -> StdioServer:
    return StdioServer(name=name, command=[PY, HOSTILE], sandbox=sandbox or Sandbox(), **kw)


async def report(pool: McpClientPool, tool: str, **args: Any) -> Any:
    result = await pool.call(tool, args, timeout_s=30)
    assert not result.is_error, result.text
    return result.structured if result.structured is not None else json.loads(result.text)


def unwrap(value: Any) -> Any:
    """MCPServer wraps a non-object return as {"result": ...} in structured content."""
    return value["result"] if isinstance(value, dict) and set(value) == {"result"} else value


@pytest.fixture(scope="module")
def canary() -> Iterator[str]:
    """A secret in the launcher's environment: AGENTMESH_CANARY_SECRET, and in TERM, one of
    the variables the mcp stdio client forwards by default, so a leak through it shows."""
    saved = {k: os.environ.get(k) for k in ("AGENTMESH_CANARY_SECRET", "TERM")}
    os.environ["AGENTMESH_CANARY_SECRET"] = CANARY
    os.environ["TERM"] = CANARY
    yield CANARY
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def accepted(sock: socket.socket) -> int:
    """How many connections reached the listener since the last look."""
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


@pytest.fixture(scope="module")
def granted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sandbox") / "granted"  # missing: the sandbox creates it


@pytest_asyncio.fixture(scope="module")
async def pool(canary: str, granted: Path) -> AsyncIterator[McpClientPool]:
    servers = [
        hostile("hostile", Sandbox(writable=[str(granted)], max_processes=HOSTILE_PROCS)),
        # the uid drop is what keeps a bound secret unreadable; the network is this one's grant
        hostile("exposed", Sandbox(readable=["/etc/shadow"], network=True), env={"TOKEN": TOKEN}),
        hostile("spinner", Sandbox(cpu_seconds=4)),
        StdioServer(name="echo", command=[PY, FLAKY]),  # a bystander in the same pool
    ]
    async with McpClientPool(servers) as p:
        yield p


async def bystander_ok(pool: McpClientPool) -> None:
    assert (await pool.call("echo.echo", {"text": "still here"})).text == "still here"


# --- who and where ---------------------------------------------------------------------------


async def test_runs_unprivileged_in_its_own_namespaces_with_limits(pool: McpClientPool) -> None:
    me = await report(pool, "hostile.identity")
    assert me["uid"] != 0 and me["euid"] != 0 and me["gid"] != 0 and me["groups"] == []
    assert me["uid"] == (sandbox_uid("hostile") if ROOT else 65534)
    if ROOT:  # each server its own uid: process counts and files are per server
        other = await report(pool, "exposed.identity")
        assert other["uid"] == sandbox_uid("exposed") != me["uid"]
    assert int(me["cap_eff"], 16) == 0 and int(me["cap_bnd"], 16) == 0
    assert me["no_new_privs"] == "1"
    assert me["hostname"] == "sandbox"
    # bwrap's init, (under root) the inner bwrap, and itself: nothing of the host
    assert me["pids_visible"] == ([1, 2, me["pid"]] if ROOT else [1, me["pid"]])
    assert not {"home", "var", "run", "srv", "opt", "mnt", "boot"} & set(me["root_entries"])
    limits = me["limits"]
    assert limits["cpu"] == [600, 600]
    assert limits["as"] == [1024 * 2**20] * 2
    assert limits["nproc"] == [HOSTILE_PROCS] * 2
    assert limits["fsize"] == [64 * 2**20] * 2
    assert limits["core"] == [0, 0]


async def test_no_user_namespaces_inside(pool: McpClientPool) -> None:
    got = await report(pool, "hostile.user_namespace")
    assert not got["ok"] and got["errno"] in (errno.ENOSPC, errno.EPERM), got


# --- the filesystem --------------------------------------------------------------------------


async def test_writes_land_only_in_the_granted_directory(
    pool: McpClientPool, granted: Path
) -> None:
    tag = uuid.uuid4().hex
    outside = [
        REPO / f"pwned-{tag}",  # the repository
        Path(HOSTILE).parent / f"pwned-{tag}",  # its own folder
        REPO / "agentmesh" / f"pwned-{tag}",  # source the editable install maps
        Path.home() / f"pwned-{tag}",  # the launcher's $HOME
        Path(f"/etc/pwned-{tag}"),
        Path(f"/usr/pwned-{tag}"),
        Path(sys.prefix) / f"pwned-{tag}",  # the venv
    ]
    for target in outside:
        got = await report(pool, "hostile.write_file", path=str(target))
        assert not got["ok"], target
        assert got["errno"] in (errno.EROFS, errno.EACCES, errno.EPERM), got
        assert not target.exists()
    # /tmp inside is a private tmpfs: the write succeeds there and never reaches the host
    got = await report(pool, "hostile.write_file", path=f"/tmp/x-{tag}")
    assert got["ok"] and not Path(f"/tmp/x-{tag}").exists()
    # the granted directory (created at start, owned by the server's uid) takes the write
    got = await report(pool, "hostile.write_file", path=str(granted / "out.txt"), text=tag)
    assert got["ok"], got
    assert (granted / "out.txt").read_text() == tag
    if ROOT:
        assert (granted / "out.txt").stat().st_uid == sandbox_uid("hostile")
    # a tool that does not catch the failure: the client gets a tool error naming it
    result = await pool.call(
        "hostile.write_file", {"path": str(REPO / f"pwned-{tag}"), "raise_errors": True}
    )
    # read-only, or (a checkout under /tmp: the private tmpfs) a root-owned directory
    assert result.is_error
    assert "Read-only file system" in result.text or "Permission denied" in result.text
    await bystander_ok(pool)


async def test_secrets_on_disk_stay_unreadable(pool: McpClientPool) -> None:
    for path in ("/etc/shadow", str(Path.home() / ".ssh"), str(Path.home() / ".bashrc")):
        got = await report(pool, "hostile.read_file", path=path)
        assert not got["ok"] and got["errno"] == errno.ENOENT, got  # not in its world at all
    # /root exists inside only as the path to the Python prefix: nothing else of it
    got = await report(pool, "hostile.read_file", path="/root")
    assert not got["ok"] or set(got["entries"]) <= {".pyenv"}, got
    # bound read-only on purpose, /etc/shadow is still refused: the server is not root
    got = await report(pool, "exposed.read_file", path="/etc/shadow")
    assert not got["ok"] and got["errno"] == errno.EACCES, got
    # positive control: a world-readable bound file reads fine
    got = await report(pool, "hostile.read_file", path="/etc/hosts")
    assert got["ok"]


async def test_file_size_is_bounded(pool: McpClientPool, granted: Path) -> None:
    for path in (str(granted / "big.bin"), "/tmp/big.bin"):
        got = await report(pool, "hostile.write_big", path=path, mb=100)
        assert not got["ok"] and got["written_mb"] <= 64, got
        assert got["errno"] in (errno.EFBIG, errno.ENOSPC), got
    assert not (granted / "big.bin").exists()


# --- the environment -------------------------------------------------------------------------


async def test_launcher_environment_is_invisible(pool: McpClientPool, canary: str) -> None:
    seen = await report(pool, "hostile.environment", launcher_pid=os.getpid())
    assert canary not in json.dumps(seen)
    assert set(seen["os_environ"]) <= {
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "PYTHONDONTWRITEBYTECODE",
        "MALLOC_ARENA_MAX",
        "PWD",
    }, seen["os_environ"]
    assert seen["os_environ"]["HOME"] == "/tmp"
    assert seen["self"]["ok"]  # the attempt ran: it read its own environ
    # bwrap's init (pid 1) and its parent (bwrap again, under root): unreadable, and
    # started without the launcher's environment anyway
    for proc in ("init", "parent"):
        assert not seen[proc]["ok"] or canary not in seen[proc]["content"], seen[proc]
    # the launcher's process is not even visible from its PID namespace
    assert not seen["launcher"]["ok"]
    # a server's own env reaches it, and does not show on the host's process list
    other = await report(pool, "exposed.environment")
    assert other["os_environ"]["TOKEN"] == TOKEN
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            assert TOKEN.encode() not in cmdline.read_bytes(), cmdline
        except OSError:
            continue


# --- the network -----------------------------------------------------------------------------


async def test_no_network_not_even_loopback(pool: McpClientPool, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    accepted(listener)
    got = await report(pool, "hostile.connect", host="127.0.0.1", port=port)
    assert not got["ok"] and got["errno"] in (errno.ECONNREFUSED, errno.ENETUNREACH), got
    got = await report(pool, "hostile.connect", host="192.0.2.1", port=9)  # TEST-NET-1
    assert not got["ok"] and got["errno"] == errno.ENETUNREACH and got["elapsed_s"] < 1, got
    assert accepted(listener) == 0
    # positive control: the server granted the network reaches the same listener
    got = await report(pool, "exposed.connect", host="127.0.0.1", port=port)
    assert got["ok"], got
    deadline = time.monotonic() + 5
    while not accepted(listener):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


# --- resource exhaustion -----------------------------------------------------------------------


async def test_fork_bomb_is_capped_and_others_keep_serving(pool: McpClientPool) -> None:
    bomb = asyncio.create_task(report(pool, "hostile.fork_bomb", count=200, hold_s=1.5))
    await asyncio.sleep(0.7)  # the bomb's processes are alive now
    await bystander_ok(pool)
    assert await pool.call("exposed.echo", {"text": "x"})  # another sandboxed server, too
    got = await bomb
    assert 0 < got["started"] < HOSTILE_PROCS, got
    assert "Resource temporarily unavailable" in got["error"], got
    assert (await pool.call("hostile.echo", {"text": "alive"})).text == "alive"


async def test_unbounded_allocation_gets_memory_error(pool: McpClientPool) -> None:
    got = await report(pool, "hostile.allocate")
    assert got["error"] and got["error"].startswith("MemoryError"), got
    assert 0 < got["allocated_mb"] < 1024, got
    result = await pool.call("hostile.allocate", {"raise_errors": True})
    assert result.is_error and "MemoryError after" in result.text
    assert (await pool.call("hostile.echo", {"text": "alive"})).text == "alive"
    await bystander_ok(pool)


async def test_spinning_server_times_out_then_the_cpu_limit_kills_it(
    pool: McpClientPool,
) -> None:
    with pytest.raises(ToolError, match="timed out after 1"):
        await pool.call("spinner.spin", {}, timeout_s=1)
    await bystander_ok(pool)
    # it spins on in its worker thread until the kernel kills it at 4 s of CPU
    deadline = time.monotonic() + 45  # about 4 s on an idle machine
    with pytest.raises(ToolServerDiedError, match="'spinner'"):
        while time.monotonic() < deadline:
            await pool.call("spinner.echo", {"text": "x"}, timeout_s=5)
            await asyncio.sleep(0.25)
    await bystander_ok(pool)
    assert (await pool.call("hostile.echo", {"text": "alive"})).text == "alive"


# --- opting out, and what it costs -------------------------------------------------------------


async def test_unsandboxed_opt_out_sees_everything_and_warns(
    canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    servers = [hostile("plain", unsandboxed=True), hostile("boxed")]
    assert unsandboxed_servers(servers) == ["plain"]
    with caplog.at_level("WARNING", logger="agentmesh.mcp"):
        async with McpClientPool(servers) as pool:
            plain = await report(pool, "plain.environment", launcher_pid=os.getpid())
            boxed = await report(pool, "boxed.environment", launcher_pid=os.getpid())
            plain_id = await report(pool, "plain.identity")
            plain_userns = await report(pool, "plain.user_namespace")
    assert plain["os_environ"]["TERM"] == canary  # mcp's default environment, unfiltered
    assert plain["launcher"]["ok"]  # it reads the launcher's own environ
    assert canary not in json.dumps(boxed)
    assert plain_id["uid"] == os.getuid() and len(plain_id["pids_visible"]) > 2
    assert plain_userns["ok"]  # the control: outside the sandbox this works
    assert any("'plain'" in r.message and "UNSANDBOXED" in r.message for r in caplog.records)
    assert not any("'boxed'" in r.message for r in caplog.records)


async def test_sandbox_start_cost(capsys: pytest.CaptureFixture[str]) -> None:
    """Measured and printed, not asserted: start plus handshake, sandboxed or not."""
    timings: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(3):
        for unsandboxed in (False, True):
            server = StdioServer(name="cost", command=[PY, FLAKY], unsandboxed=unsandboxed)
            started = time.perf_counter()
            async with McpClientPool([server]) as pool:
                timings[unsandboxed].append(time.perf_counter() - started)
                await pool.call("cost.echo", {"text": "x"})
    boxed, plain = statistics.median(timings[False]), statistics.median(timings[True])
    with capsys.disabled():
        print(
            f"\nsandbox start cost (flaky server, start + handshake, median of 3): "
            f"sandboxed {boxed * 1000:.0f} ms, unsandboxed {plain * 1000:.0f} ms, "
            f"difference {(boxed - plain) * 1000:+.0f} ms"
        )


# --- configuration -----------------------------------------------------------------------------


async def test_missing_bubblewrap_is_a_typed_error_that_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without bwrap on it
    pool = McpClientPool([StdioServer(name="nobwrap", command=[PY, FLAKY])])
    with pytest.raises(SandboxUnavailableError, match="'nobwrap'") as info:
        await pool.start()
    assert "apt-get install bubblewrap" in str(info.value) and "unsandboxed" in str(info.value)
    # the opt-out still starts without it
    async with McpClientPool([StdioServer(name="ok", command=[PY, FLAKY], unsandboxed=True)]) as p:
        assert (await p.call("ok.echo", {"text": "y"})).text == "y"


def test_sandbox_config_is_validated() -> None:
    assert Sandbox(writable=["/srv/data/../out"]).writable == ["/srv/out"]
    for bad in (["relative/dir"], ["/"], ["/proc/self"]):
        with pytest.raises(ValidationError):
            Sandbox(writable=bad)
    with pytest.raises(ValidationError):
        Sandbox(cpu_seconds=0)
    with pytest.raises(ValidationError):
        Sandbox(networking=True)


def test_policy_grants_add_paths_and_gate_the_network() -> None:
    policy = Policy.from_yaml("""
name: p
sandbox:
  "web-*": {network: true, readable: [/srv/certs]}
  "*": {writable: /srv/scratch}
""")
    asks = StdioServer(name="web-1", command=["x"], sandbox=Sandbox(network=True, writable=["/a"]))
    eff = effective_sandbox(asks, policy)
    assert eff.network and eff.writable == ["/a", "/srv/scratch"]
    assert eff.readable == ["/srv/certs"]
    # the config alone cannot open the network, and a grant alone does not either
    other = StdioServer(name="db", command=["x"], sandbox=Sandbox(network=True))
    assert not effective_sandbox(other, policy).network
    quiet = StdioServer(name="web-2", command=["x"])
    assert not effective_sandbox(quiet, policy).network
    assert effective_sandbox(quiet, Policy(name="empty")) == quiet.sandbox
    for bad in ("sandbox: {s: {writable: [rel]}}", "sandbox: {s: {net: true}}"):
        with pytest.raises(PolicyError):
            Policy.from_yaml(f"name: bad\n{bad}\n")


def test_argv_never_carries_the_environment(canary: str) -> None:
    argv, env = sandboxed_argv([PY, FLAKY], Sandbox(), cwd=None, env={"TOKEN": TOKEN})
    assert TOKEN not in " ".join(argv) and canary not in " ".join(argv)
    assert env["TOKEN"] == TOKEN and canary not in env.values()
    assert "--unshare-net" in argv and "--disable-userns" in argv
    assert ("--cap-drop" in argv) == ROOT and any(a.endswith("setpriv") for a in argv) == ROOT


def test_writable_dirs_created_but_existing_ones_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fresh, existing = tmp_path / "fresh" / "out", tmp_path / "existing"
    existing.mkdir(mode=0o755)
    before = existing.stat()
    with caplog.at_level("WARNING", logger="agentmesh.sandbox"):
        sandboxed_argv(
            [PY, FLAKY], Sandbox(writable=[str(fresh), str(existing)]), cwd=None, server="w"
        )
    assert fresh.is_dir() and fresh.stat().st_mode & 0o777 == 0o700
    assert fresh.stat().st_uid == (sandbox_uid("w") if ROOT else os.getuid())
    after = existing.stat()
    assert (after.st_uid, after.st_mode) == (before.st_uid, before.st_mode)  # never chowned
    warned = [r.message for r in caplog.records if str(existing) in r.message]
    assert bool(warned) == ROOT  # under root the server's uid cannot write it: say so
