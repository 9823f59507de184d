"""The bubblewrap command line a stdio MCP server runs under: how the sandbox is built.

Kept apart from the sandbox's rules (:mod:`agentmesh._private.sandbox`) so that the build
reads in one place: the namespaces, the mounts, the environment, the drop to a uid of the
server's own under root, and the limits.

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
sandbox uid cannot write it. The network: see
:func:`agentmesh._private.sandbox.effective_sandbox`.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from mcp.client.stdio import DEFAULT_INHERITED_ENV_VARS

from agentmesh._private.sandbox import FORBIDDEN_BINDS, check_sandbox_available
from agentmesh._private.sandbox_program import (
    SYSTEM_LINKS,
    SYSTEM_PREFIXES,
    covered,
    resolve_program,
)
from agentmesh.errors import ConfigError

if TYPE_CHECKING:
    from agentmesh.protocols.mcp_config import Sandbox

__all__ = ["sandbox_uid", "sandboxed_argv"]

logger = logging.getLogger("agentmesh.sandbox")

_UNPRIVILEGED: Final = 65534  # "nobody": the uid inside a user namespace (not root)
# A root launcher's sandbox uids: base + crc32(name) % span, in a range systemd leaves unused
# (above the nspawn container range, below the foreign-mapping one; see its UIDS-GIDS.md).
_UID_BASE: Final = 0x70000000
_UID_SPAN: Final = 0x01000000
_CHILD_CAPS: Final = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")  # setpriv needs these, only
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
# What the mcp stdio client adds to the environment it is given; unset by `env -u` so that
# none of the launcher's values reaches bwrap or the server.
_MCP_DEFAULT_ENV: Final = tuple(
    dict.fromkeys(["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", *DEFAULT_INHERITED_ENV_VARS])
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MB: Final = 1024 * 1024


def sandbox_uid(server: str) -> int:
    """The uid (and gid) a root launcher runs ``server`` as: its own, stable across restarts."""
    if not server:
        return _UNPRIVILEGED
    return _UID_BASE + zlib.crc32(server.encode("utf-8")) % _UID_SPAN


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
            if parent not in dirs and not covered(parent, mounts) and parent != "/tmp":
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
    program, program_paths = resolve_program(command, workdir)

    child_env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MALLOC_ARENA_MAX": "2",  # bounded virtual memory per thread under the address limit
    }
    bindir = os.path.dirname(program)
    if os.path.isabs(program) and not covered(bindir, (*SYSTEM_PREFIXES, *SYSTEM_LINKS)):
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
        if not covered(p, (*SYSTEM_PREFIXES, *sandbox.writable))
        and p not in FORBIDDEN_BINDS
        and not covered(p, FORBIDDEN_BINDS[1:])
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
    for link in SYSTEM_LINKS:
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
    if workdir not in ("/", "/tmp", *dirs) and not covered(workdir, [p for _, p in mounts]):
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
