"""Vetted messages per second against the size of the security actor pool, in the same run.

Every hop is vetted twice (the request and the reply) by a security actor; one actor vets on one
core. With ``Mesh(security_pool=n)`` each principal is vetted by one of ``n`` actors per node (a
stable hash of its name), so many principals spread over the machine's cores. The workload: 8
user principals, each sending 100 KB skill calls back to back, all at once, for each pool size
(1, 2 and 4). The floor is the pool of one, measured in the same run; the last line is a JSON
object whose ``ratio`` is the throughput with a pool as large as the machine's cores (at least 2)
over the pool of one.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from agentmesh import Agent, Mesh, Policy, skill
from agentmesh._private.ray_init import ensure_ray

PRINCIPALS = 8
CALLS = 8  # per principal, per pool size
TEXT = "All work and no play makes a dull report. " * 2400  # about 100 KB of prose to scan
POOLS = (1, 2, 4)


class Echo(Agent):
    """Echoes."""

    @skill
    def echo(self, text: str) -> str:
        """Return the text."""
        return text


async def throughput(pool: int, policy: Policy) -> float:
    """Vetted hops per second with ``pool`` security actors, all principals at once."""
    async with Mesh([Echo], policy=policy, security_pool=pool) as mesh:
        router = mesh._ready()

        async def principal(name: str, n: int) -> None:
            for _ in range(n):
                await router.send("echo", "echo", {"text": TEXT}, context_id=name, sender=name)

        names = [f"user:p{i}" for i in range(PRINCIPALS)]
        await asyncio.gather(*(principal(n, 3) for n in names))  # warm up
        start = time.perf_counter()
        await asyncio.gather(*(principal(n, CALLS) for n in names))
        return PRINCIPALS * CALLS / (time.perf_counter() - start)


async def main() -> None:
    cores = os.cpu_count() or 1
    ensure_ray(num_cpus=cores)
    policy = Policy.from_yaml("name: bench\nmessages: [{from: [user, 'user:*'], to: ['*']}]\n")
    figures: dict[str, object] = {"bench": "security_pool", "cores": cores}
    for pool in POOLS:
        rate = await throughput(pool, policy)
        figures[f"pool_{pool}_per_s"] = round(rate, 1)
        print(f"security pool of {pool}: {rate:.1f} vetted hops/s (100 KB, {PRINCIPALS} senders)")
    best = min(max(cores, 2), max(POOLS))
    figures["ratio"] = round(
        float(figures[f"pool_{best}_per_s"]) / float(figures["pool_1_per_s"]),  # type: ignore[arg-type]
        2,
    )
    figures["ratio_pool"] = best
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
