"""Starting or joining Ray, kept on loopback for the embedded default."""

from __future__ import annotations

import os

import ray

__all__ = ["ensure_ray"]


def ensure_ray(
    *, address: str | None = None, num_cpus: int | None = None, labels: dict[str, str] | None = None
) -> bool:
    """Start an embedded local Ray (no address) or join a cluster; return True if we started it.

    An already initialised Ray session is reused as it is (tests share one per session).
    """
    if ray.is_initialized():
        return False
    # Ray 2.60 otherwise binds the machine's outside address; this keeps a local session on
    # 127.0.0.1 (seen on these machines, see shared/notes/library-facts.md).
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if address is None:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            labels=labels,
            log_to_driver=True,
            configure_logging=False,
        )
    else:
        ray.init(address=address, log_to_driver=True, configure_logging=False)
    return True
