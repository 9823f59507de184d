"""Where an agent's actors run: Ray options from its Resources, spread and pack.

``Resources`` declares what an agent needs (CPUs, GPUs, custom resources, node labels) and how
its replicas sit relative to each other (``strategy``). This module checks a declaration when
the class is defined, so nonsense fails there and not when a mesh starts on a cluster, and turns
it into Ray's options:

- ``default``: Ray's own policy (it fills a node up to about half before using the next, and
  keeps work that needs no GPU off GPU nodes while others have room).
- ``spread``: Ray's SPREAD strategy: each actor goes to the next feasible node in turn, so the
  replicas (and agents that all declare spread) land on different nodes when there are enough.
- ``pack``: one PACK placement group per agent, a bundle per replica, reserved at once on as few
  nodes as possible. The group is the mesh's to remove when it closes.

A node is pinned by a label the operator gives it (``ray start --labels host=box-1``), not by a
node-id field: Ray draws a fresh node id whenever a raylet starts, so an id written into a class
is stale after any restart. Ray's own ``ray.io/node-id`` label still pins to a running node's id
where a program picks one at run time.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import ray
from ray._private.label_utils import validate_label_selector
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

if TYPE_CHECKING:
    from agentmesh.agent import Resources

__all__ = ["remove_group", "replica_options", "resource_problems"]

_RAY_RESERVED = frozenset({"CPU", "GPU", "memory", "object_store_memory"})


def resource_problems(res: Resources) -> list[str]:
    """What is wrong with a declaration that its fields' types alone do not catch."""
    problems: list[str] = []
    if res.num_gpus > 1 and not res.num_gpus.is_integer():
        problems.append(f"num_gpus above 1 must be whole, not {res.num_gpus:g}")
    if reserved := sorted(_RAY_RESERVED & set(res.custom)):
        problems.append(f"custom resources cannot be Ray's own {reserved}: use num_cpus/num_gpus")
    if any(not name for name in res.custom):
        problems.append("a custom resource needs a name")
    if res.labels and (bad := validate_label_selector(dict(res.labels))):
        problems.append(f"labels: {bad}")
    if res.strategy == "pack" and not _bundle(res):
        problems.append(
            "strategy 'pack' reserves each replica's resources in a placement group; "
            "declare num_cpus, num_gpus or a custom resource above 0"
        )
    return problems


def _bundle(res: Resources) -> dict[str, float]:
    """One replica's reservation in a placement group (Ray refuses an all-zero bundle)."""
    bundle = {"CPU": res.num_cpus, "GPU": res.num_gpus, **res.custom}
    return {name: amount for name, amount in bundle.items() if amount > 0}


def replica_options(
    res: Resources, count: int, *, prefix: str
) -> tuple[list[dict[str, Any]], PlacementGroup | None]:
    """Ray actor options for each of ``count`` replicas as ``res`` declares, and the pack
    placement group they go into (None unless the strategy is pack).

    Nothing here waits: an unplaceable replica (or group) simply never starts, and the mesh's
    start-up probe turns that into a PlacementError naming it.
    """
    base: dict[str, Any] = {"num_cpus": res.num_cpus, "num_gpus": res.num_gpus}
    if res.custom:
        base["resources"] = dict(res.custom)
    group = None
    if res.strategy == "pack":
        group = placement_group(
            [_bundle(res)] * count,
            strategy="PACK",
            name=f"{prefix}-{uuid.uuid4().hex[:8]}",
            bundle_label_selector=[dict(res.labels)] * count if res.labels else None,
        )
    elif res.labels:
        base["label_selector"] = dict(res.labels)
    if res.strategy == "spread":
        base["scheduling_strategy"] = "SPREAD"
    options = []
    for replica in range(count):
        opts = {**base, "name": f"{prefix}-{uuid.uuid4().hex[:8]}"}
        if group is not None:
            opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                group, placement_group_bundle_index=replica
            )
        options.append(opts)
    return options, group


def remove_group(group: PlacementGroup) -> None:
    """Give a pack group's reservation back (its actors go with it); quiet once Ray is gone."""
    if ray.is_initialized():
        remove_placement_group(group)
