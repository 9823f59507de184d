"""Starting or joining Ray, kept on loopback for the embedded default."""

from __future__ import annotations

import os
import socket

import ray
from ray._private import ray_constants

from agentmesh.errors import ConfigError

__all__ = ["ensure_ray"]

_LOCAL_ONLY = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR  # "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _keep_on_loopback() -> None:
    """Make an embedded Ray bind 127.0.0.1 only.

    Ray 2.60 otherwise advertises and listens on the machine's outside address. Setting the
    variable to 0 keeps every socket on loopback (seen here, see shared/notes/library-facts.md),
    but Ray reads it once, at import, and ``import ray`` usually happened before this runs; so
    the constant it was read into is set too. Its own processes inherit the variable.
    """
    os.environ.setdefault(_LOCAL_ONLY, "0")
    if os.environ[_LOCAL_ONLY] == "0":
        ray_constants.ENABLE_RAY_CLUSTER = False


def ensure_ray(
    *, address: str | None = None, num_cpus: int | None = None, labels: dict[str, str] | None = None
) -> bool:
    """Start an embedded local Ray (no address) or join a cluster; return True if we connected.

    An already initialised Ray session is reused as it is (tests share one per session).
    """
    if ray.is_initialized():
        return False
    if address is None:
        _keep_on_loopback()
        ray.init(
            address="local",  # a new embedded Ray, never whatever `ray start` left running
            num_cpus=num_cpus,
            include_dashboard=False,
            labels=labels,
            configure_logging=False,
        )
    else:
        if address.startswith(("127.", "localhost:", "[::1]")):
            _keep_on_loopback()  # a cluster on this machine: the driver stays on loopback too
        _probe(address)
        ray.init(address=address, configure_logging=False)
    return True


#: How long a cluster's head may take to accept a connection before joining is given up.
PROBE_TIMEOUT_S = 5.0


def _probe(address: str) -> None:
    """ConfigError at once if nothing listens at a ``host:port`` address: ``ray.init`` itself
    retries an unreachable head for minutes, logging warnings. Other forms (``auto``,
    ``ray://...``) are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(
            f"cannot join the Ray cluster at {address}: {exc.strerror or exc} (is `ray start "
            "--head` running there, and is the address its GCS address?)"
        ) from None
