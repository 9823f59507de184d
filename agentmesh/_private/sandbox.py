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

When the launcher is root (as in CI), namespaces alone are not enough: the kernel does not
enforce the process limit for root, and root reads whatever a read-only bind exposes. bwrap
then runs without a user namespace (root can bind paths like ``/root/.pyenv/...`` that an
unprivileged user cannot reach), hands its child only CAP_SETUID, CAP_SETGID and CAP_SETPCAP,
and ``setpriv`` drops to an unprivileged uid/gid of the server's own (derived from its name,
so process limits and file ownership are per server and stable across restarts), clears the
groups, the inheritable and bounding capability sets, and sets no_new_privs. An inner,
unprivileged bwrap (same view) then takes away user namespaces, a large kernel attack surface,
before ``prlimit`` execs the server::

    env -u LOGNAME -u SHELL -u TERM -u USER
    bwrap --unshare-ipc --unshare-pid --unshare-uts --hostname sandbox --unshare-cgroup-try
        --die-with-parent --unshare-net
        --cap-drop ALL --cap-add CAP_SETUID --cap-add CAP_SETGID --cap-add CAP_SETPCAP
        --ro-bind /usr /usr --symlink usr/bin /bin (... /sbin /lib /lib64)
        --dir /etc --ro-bind-try /etc/ld.so.cache /etc/ld.so.cache (... a few more)
        --proc /proc --dev /dev --perms 1777 --size <max_file_mb> --tmpfs /tmp
        --dir <ancestors> --ro-bind <program paths, readable> --bind <writable>
        --dir <launcher cwd> --remount-ro / --chdir <cwd> --
    setpriv --reuid=U --regid=U --clear-groups --no-new-privs --inh-caps=-all
        --bounding-set=-all --
    bwrap --unshare-user --disable-userns --dev-bind / / --
    prlimit --cpu=S --as=B --nproc=N --fsize=F --core=0 -- <command>

Not root: the first bwrap makes the user namespace itself (``--unshare-user --disable-userns
--uid 65534 --gid 65534``, no caps), and neither setpriv nor the inner bwrap is needed.

The environment reaches bwrap through its own environ, never its command line, so values
from ``env`` (API keys) do not show in the host's process list; ``env -u`` removes the few
variables the mcp stdio client adds to whatever environment it is given. What it is given is
exactly the sandbox's environment, so bwrap's own ``/proc/<pid>/environ`` (pid 1 inside)
holds nothing of the launcher's either.

Writable paths: a missing directory is created (mode 0700; owned by the sandbox uid when
root launches); an existing path is never chowned or chmodded, only warned about when the
sandbox uid cannot write it. The network: see :func:`effective_sandbox`.

What this does not contain: there is no seccomp filter, so the kernel's whole syscall surface
is open to an unprivileged process; ``cpu_seconds`` is for the server's life, so a tool that
spins burns CPU after its call timed out until that limit kills the server; ``max_file_mb``
bounds each file and the private /tmp (RAM), not the number of files in a writable folder; a
granted network is the host's whole network (no egress filter); servers of the same name in
two meshes on one machine share a uid, hence a process count.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import shutil
import zlib
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

from mcp.client.stdio import DEFAULT_INHERITED_ENV_VARS

from agentmesh.errors import ConfigError, SandboxUnavailableError

if TYPE_CHECKING:
    from agentmesh.protocols.mcp import HttpServer, Sandbox, StdioServer
    from agentmesh.security import Policy

__all__ = [
    "check_path",
    "check_sandbox_available",
    "effective_sandbox",
    "sandbox_uid",
    "sandboxed_argv",
    "with_policy",
]

logger = logging.getLogger("agentmesh.sandbox")

_UNPRIVILEGED: Final = 65534  # "nobody": the uid inside a user namespace (not root)
# A root launcher's sandbox uids: base + crc32(name) % span, in a range systemd leaves unused
# (above the nspawn container range, below the foreign-mapping one; see its UIDS-GIDS.md).
_UID_BASE: Final = 0x70000000
_UID_SPAN: Final = 0x01000000
_CHILD_CAPS: Final = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")  # setpriv needs these, only
_SYSTEM_PREFIXES: Final = ("/usr",)  # bound whole; /bin, /lib*, /sbin are links into it
_SYSTEM_LINKS: Final = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# /etc: only what a program needs to load libraries, resolve names, verify TLS, know the time.
_ETC: Final = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/pki",
    "/etc/alternatives",
    "/etc/mime.types",
    "/etc/python3",
    "/etc/python3.11",
    "/etc/python3.12",
    "/etc/python3.13",
)
_FORBIDDEN_BINDS: Final = ("/", "/proc", "/dev", "/sys")
# What the mcp stdio client adds to the environment it is given; unset by `env -u` so that
# none of the launcher's values reaches bwrap or the server.
_MCP_DEFAULT_ENV: Final = tuple(
    dict.fromkeys(["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", *DEFAULT_INHERITED_ENV_VARS])
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MB: Final = 1024 * 1024

T = TypeVar("T")


def check_path(path: str) -> str:
    """Validator of sandbox paths: absolute, normalised, and not a whole system tree."""
    if not path.startswith("/") or "\0" in path:
        raise ValueError(f"sandbox path {path!r} must be absolute")
    normal = os.path.normpath(path)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    if normal in _FORBIDDEN_BINDS or normal.startswith(("/proc/", "/dev/", "/sys/")):
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
    from agentmesh.protocols.mcp import StdioServer  # the protocols module imports us

    return [
        s.model_copy(update={"sandbox": effective_sandbox(s, policy)})
        if isinstance(s, StdioServer)
        else s
        for s in servers
    ]


# --- the command line --------------------------------------------------------------------------


def sandbox_uid(server: str) -> int:
    """The uid (and gid) a root launcher runs ``server`` as: its own, stable across restarts."""
    if not server:
        return _UNPRIVILEGED
    return _UID_BASE + zlib.crc32(server.encode("utf-8")) % _UID_SPAN


def _covered(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _install_root(executable: str) -> str:
    """``/x/venv/bin/python`` -> ``/x/venv``; a program outside a ``bin`` folder -> its folder."""
    folder = os.path.dirname(executable)
    if os.path.basename(folder) in ("bin", "sbin") and os.path.dirname(folder) != "/":
        return os.path.dirname(folder)
    return folder if folder != "/" else executable


def _link_chain(path: str) -> list[str]:
    """``path`` and every path its symlinks lead through, absolute and normalised."""
    chain = [os.path.normpath(path)]
    current = chain[0]
    for _ in range(40):
        if not os.path.islink(current):
            break
        target = os.readlink(current)
        current = os.path.normpath(os.path.join(os.path.dirname(current), target))
        chain.append(current)
    return chain


def _editable_sources(venv: str) -> list[str]:
    """Source folders an editable install maps into ``venv`` (setuptools finder, .pth paths)."""
    found: list[str] = []
    for site in Path(venv).glob("lib/python*/site-packages"):
        for finder in site.glob("__editable__*finder*.py"):
            try:
                tree = ast.parse(finder.read_text(encoding="utf-8"))
            except (OSError, SyntaxError, UnicodeDecodeError):
                continue
            for node in tree.body:
                if (
                    isinstance(node, ast.AnnAssign | ast.Assign)
                    and node.value is not None
                    and any(
                        isinstance(t, ast.Name) and t.id in ("MAPPING", "NAMESPACES")
                        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                    )
                ):
                    try:
                        value = ast.literal_eval(node.value)
                    except ValueError:
                        continue
                    for item in value.values() if isinstance(value, dict) else []:
                        found.extend([item] if isinstance(item, str) else list(item))
        for pth in site.glob("*.pth"):
            try:
                lines = pth.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError):
                continue
            found.extend(line.strip() for line in lines if line.startswith("/"))
    return [p for p in found if os.path.isabs(p) and os.path.exists(p)]


def _program_paths(command: Sequence[str], workdir: str) -> tuple[str, list[str]]:
    """The program's absolute path and what it needs bound read-only to run."""
    program = command[0]
    if "/" not in program:  # as exec would: on PATH; left bare (to fail inside) if not found
        found = shutil.which(program)
        program = os.path.abspath(found) if found else program
    else:
        program = os.path.normpath(os.path.join(workdir, program))
    needed: list[str] = []
    for step in _link_chain(program) if os.path.exists(program) else []:
        root = _install_root(step)
        if _covered(step, (*_SYSTEM_PREFIXES, *_SYSTEM_LINKS)):
            continue
        needed.append(root)
        if os.path.isfile(os.path.join(root, "pyvenv.cfg")):
            needed.extend(_editable_sources(root))
    script_seen = False
    for arg in command[1:]:
        if not arg or (arg.startswith("-") and "=" not in arg):
            continue
        candidate = arg.split("=", 1)[1] if arg.startswith("-") else arg
        path = os.path.normpath(os.path.join(workdir, candidate))
        if not os.path.exists(path) or path == "/" or (candidate != arg and "/" not in candidate):
            continue
        if os.path.isfile(path) and not script_seen:
            script_seen = True  # the script: Python puts its folder on sys.path
            needed.append(os.path.dirname(path))
        else:
            needed.append(path)
    return program, needed


def _ancestors(path: str) -> list[str]:
    parts = Path(path).parts[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _prepare_writable(path: str, uid: int | None, server: str) -> None:
    """Create a missing writable directory: mode 0700, owned by the sandbox uid under root.

    An existing path is never changed (a chown could take a user's folder away); if the
    sandbox uid cannot write it, a warning says so and how to fix it.
    """
    if not os.path.lexists(path):
        os.makedirs(path, mode=0o700, exist_ok=True)
        if uid is not None:
            os.chown(path, uid, uid, follow_symlinks=False)
        return
    if uid is None:
        return
    st = os.stat(path)
    mode = st.st_mode
    if st.st_uid == uid or mode & 0o002 or (st.st_gid == uid and mode & 0o020):
        return
    logger.warning(
        "writable path %s of MCP server %r belongs to uid %d: the server runs as uid %d and "
        "cannot write it; chown it to %d:%d, or remove it and agentmesh creates it at start",
        path,
        server,
        st.st_uid,
        uid,
        uid,
        uid,
    )


def _binds(
    readable: Iterable[str], writable: Iterable[str]
) -> tuple[list[str], list[tuple[str, str]]]:
    """Mount arguments for the paths, parents before children; the ``--dir`` ancestors."""
    mounts: dict[str, str] = {}
    for path in readable:
        mounts.setdefault(path, "--ro-bind")
    for path in writable:
        mounts[path] = "--bind"  # writable wins over a read-only bind of the same path
    ordered = sorted(mounts.items(), key=lambda item: (item[0].count("/"), item[0]))
    dirs: list[str] = []
    for path, _ in ordered:
        for parent in _ancestors(path):
            if parent not in dirs and not _covered(parent, mounts) and parent != "/tmp":
                dirs.append(parent)
    return dirs, [(flag, path) for path, flag in ordered]


def sandboxed_argv(
    command: Sequence[str],
    sandbox: Sandbox,
    *,
    cwd: str | None,
    env: Mapping[str, str] | None = None,
    server: str = "",
) -> tuple[list[str], dict[str, str]]:
    """The argv that runs ``command`` in ``sandbox``, and the environment to launch it with.

    ``env`` is added to the sandbox's own few variables (and wins). ``server`` names the
    sandbox's uid when the launcher is root (see :func:`sandbox_uid`).
    Missing ``writable`` directories are created here (mode 0700); a root launcher makes the
    sandbox uid their owner, since the server runs as that uid. ``readable`` paths that do not
    exist are skipped. Raises SandboxUnavailableError when a tool is missing.
    """
    tools = check_sandbox_available(server or ())
    root = os.geteuid() == 0
    uid = sandbox_uid(server) if root else None
    workdir = os.path.abspath(cwd) if cwd is not None else os.getcwd()
    program, program_paths = _program_paths(command, workdir)

    child_env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MALLOC_ARENA_MAX": "2",  # bounded virtual memory per thread under the address limit
    }
    bindir = os.path.dirname(program)
    if os.path.isabs(program) and not _covered(bindir, (*_SYSTEM_PREFIXES, *_SYSTEM_LINKS)):
        child_env["PATH"] = f"{bindir}:{child_env['PATH']}"
    child_env.update(env or {})
    for name in child_env:
        if not _ENV_NAME.fullmatch(name):
            raise ConfigError(f"environment variable name {name!r} is not valid")

    for path in sandbox.writable:
        _prepare_writable(path, uid, server)
    readable = [p for p in (*program_paths, *sandbox.readable) if os.path.exists(p)]
    readable += [tools[t] for t in ("bwrap", "setpriv", "prlimit") if t in tools]
    if cwd is not None:
        readable.append(workdir)
    readable = [  # what /usr or a writable bind already shows needs no read-only bind
        p
        for p in readable
        if not _covered(p, (*_SYSTEM_PREFIXES, *sandbox.writable))
        and p not in _FORBIDDEN_BINDS
        and not _covered(p, _FORBIDDEN_BINDS[1:])
    ]
    dirs, mounts = _binds(readable, sandbox.writable)

    unset = [a for k in _MCP_DEFAULT_ENV if k not in child_env for a in ("-u", k)]
    argv = [tools["env"], *unset]
    argv += [tools["bwrap"], "--unshare-ipc", "--unshare-pid", "--unshare-uts"]
    argv += ["--hostname", "sandbox", "--unshare-cgroup-try", "--die-with-parent"]
    if not sandbox.network:
        argv.append("--unshare-net")
    if root:
        argv += ["--cap-drop", "ALL", *(a for cap in _CHILD_CAPS for a in ("--cap-add", cap))]
    else:
        argv += ["--unshare-user", "--disable-userns"]
        argv += ["--uid", str(_UNPRIVILEGED), "--gid", str(_UNPRIVILEGED)]
    argv += ["--ro-bind", "/usr", "/usr"]
    for link in _SYSTEM_LINKS:
        if os.path.islink(link):
            argv += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            argv += ["--ro-bind", link, link]
    argv += ["--dir", "/etc"]  # an implied parent would be mode 0700: untraversable
    for path in _ETC:
        argv += ["--ro-bind-try", path, path]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    if "/tmp" not in dict((p, f) for f, p in mounts):
        argv += ["--perms", "1777", "--size", str(sandbox.max_file_mb * _MB), "--tmpfs", "/tmp"]
    for path in dirs:
        argv += ["--dir", path]
    for flag, path in mounts:
        argv += [flag, path, path]
    if workdir not in ("/", "/tmp", *dirs) and not _covered(workdir, [p for _, p in mounts]):
        argv += ["--dir", workdir]  # an empty stand-in: the launcher's folder stays hidden
    argv += ["--remount-ro", "/", "--chdir", workdir, "--"]
    if root:
        assert uid is not None
        argv += [tools["setpriv"], f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        argv += ["--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--"]
        # Unprivileged now, it could still create user namespaces of its own (kernel attack
        # surface); an inner bwrap, keeping the same view, takes that away as in the non-root
        # case.
        argv += [tools["bwrap"], "--unshare-user", "--disable-userns", "--dev-bind", "/", "/"]
        argv += ["--"]
    argv += [
        tools["prlimit"],
        f"--cpu={sandbox.cpu_seconds}",
        f"--as={sandbox.memory_mb * _MB}",
        f"--nproc={sandbox.max_processes}",
        f"--fsize={sandbox.max_file_mb * _MB}",
        "--core=0",
        "--",
        program,
        *command[1:],
    ]
    return argv, child_env
