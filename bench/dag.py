"""DAGs of no-op nodes run by the mesh's executor, next to the same shapes as raw Ray tasks in the
same run; and a CPU-bound fan-out's makespan against the ideal.

Shapes: a chain of 100, a fan-out of 100 and of 1,000 (one root feeding every leaf), a diamond
(a root, 100 middle nodes, a sink that takes all of them). The mesh runs each as a plan through
``Mesh.run`` (planning by template, validation, the executor, every node an A2A skill call with
its message and reply vetted by the security actor). The floor is the same shape as raw Ray
tasks (``@ray.remote`` functions whose arguments are the upstream object refs), which do no
planning, no vetting and no A2A at all: the ratio is what the mesh's guarantees cost per node.

The CPU-bound fan-out: N nodes each do the same fixed pure-Python work, each timed where it
runs; the ideal makespan is that total work / the CPUs Ray has. The agent is declared with
``replicas`` so the executor's ready branches run on as many actors as there are cores, and
``max_concurrency = 1`` so each actor runs one node at a time (the rest wait their turn there)
instead of every node at once on threads fighting over the process's GIL.

The last line is a JSON object; ``ratio`` is mesh per-node time / raw Ray per-node time on the
fan-out of 1,000; ``cpu_fanout_over_ideal`` is makespan / ideal on the CPU-bound fan-out.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import ray

from agentmesh import Agent, Mesh, Plan, PlanStep, Policy, Resources, TemplatePlanner, skill
from agentmesh._private.ray_init import ensure_ray

CPUS = 2
ROUNDS = 3  # each shape runs this many times per side, alternating; the best round counts
CRUNCH = 400_000  # loop turns of one CPU-bound node
CPU_NODES = 40


def crunch(n: int) -> int:
    """Fixed pure-Python work: it holds the GIL, so only more processes run it in parallel."""
    acc = 0
    for i in range(n):
        acc = (acc * 31 + i) % 1_000_003
    return acc


class Noop(Agent):
    """Does nothing: the executor's and the transport's cost alone."""

    resources = Resources(num_cpus=0)

    @skill
    def noop(self, i: int = 0, after: int | None = None) -> int:
        """Return 1 (``i`` makes every node's message different, as real ones are)."""
        return 1

    @skill
    def join(self, left: int, right: int) -> int:
        """Return 1 after two upstream nodes."""
        return 1


class Cruncher(Agent):
    """Does a fixed amount of real compute per node, one replica per core."""

    resources = Resources(num_cpus=1)
    replicas = CPUS
    max_concurrency = 1  # one call at a time per process: no GIL fight between its threads

    @skill
    def work(self, n: int, i: int = 0) -> float:
        """Run the fixed loop of ``n`` turns; the seconds it took, here."""
        return _timed(crunch, n)


@ray.remote  # Ray's defaults (one CPU per task), as a user would write it
def raw_noop(*after: object) -> int:
    return 1


def _number(step_id: str) -> int:
    return int("".join(c for c in step_id if c.isdigit()) or 0)


def _step(i: str, after: str | None = None) -> PlanStep:
    inputs = {"after": after} if after else {}
    return PlanStep(id=i, agent="noop", skill="noop", args={"i": _number(i)}, inputs=inputs)


def chain(n: int) -> Plan:
    steps = [_step("n0")] + [_step(f"n{i}", f"n{i - 1}") for i in range(1, n)]
    return Plan(goal="chain", steps=steps, output=f"n{n - 1}")


def fanout(n: int) -> Plan:
    steps = [_step("root")] + [_step(f"n{i}", "root") for i in range(n)]
    return Plan(goal="fan-out", steps=steps, output="root")


def diamonds(k: int) -> Plan:
    """``k`` independent diamonds (a -> b, c -> d) in one plan: 4k nodes."""
    steps: list[PlanStep] = []
    for i in range(k):
        steps += [_step(f"a{i}"), _step(f"b{i}", f"a{i}"), _step(f"c{i}", f"a{i}")]
        steps.append(
            PlanStep(
                id=f"d{i}", agent="noop", skill="join", inputs={"left": f"b{i}", "right": f"c{i}"}
            )
        )
    return Plan(goal="diamonds", steps=steps, output="d0")


def raw_chain(n: int) -> list[ray.ObjectRef]:
    ref = raw_noop.remote()
    for _ in range(n - 1):
        ref = raw_noop.remote(ref)
    return [ref]


def raw_fanout(n: int) -> list[ray.ObjectRef]:
    root = raw_noop.remote()
    return [root] + [raw_noop.remote(root) for _ in range(n)]


def raw_diamonds(k: int) -> list[ray.ObjectRef]:
    refs = []
    for _ in range(k):
        a = raw_noop.remote()
        refs.append(raw_noop.remote(raw_noop.remote(a), raw_noop.remote(a)))
    return refs


#: name -> (node count, the mesh's plan, the raw Ray tasks)
SHAPES: dict[str, tuple[int, Callable[[], Plan], Callable[[], list[ray.ObjectRef]]]] = {
    "chain_100": (100, lambda: chain(100), lambda: raw_chain(100)),
    "fanout_100": (101, lambda: fanout(100), lambda: raw_fanout(100)),
    "fanout_1000": (1001, lambda: fanout(1000), lambda: raw_fanout(1000)),
    "diamond_4x25": (100, lambda: diamonds(25), lambda: raw_diamonds(25)),
}


async def noop_shapes(mesh: Mesh, figures: dict[str, object]) -> None:
    """Best of ROUNDS per side, the sides alternating so the machine's noise hits both."""
    for name, (nodes, plan, raw) in SHAPES.items():
        built = plan()
        planner = TemplatePlanner(lambda goal, built=built: built)
        best = {"mesh": float("inf"), "raw": float("inf")}
        for _ in range(ROUNDS):
            start = time.perf_counter()
            result = await mesh.run(built.goal, planner=planner)
            best["mesh"] = min(best["mesh"], time.perf_counter() - start)
            assert result.succeeded and len(result.nodes) == nodes
            start = time.perf_counter()
            assert sum(await asyncio.gather(*raw())) >= 1
            best["raw"] = min(best["raw"], time.perf_counter() - start)
        for side, wall in best.items():
            figures[f"{name}_{side}_node_ms"] = round(1000 * wall / nodes, 3)
            figures[f"{name}_{side}_nodes_per_s"] = round(nodes / wall, 1)
        figures[f"{name}_ratio"] = round(best["mesh"] / best["raw"], 2)
        print(
            f"{name}: mesh {figures[f'{name}_mesh_node_ms']} ms/node "
            f"({figures[f'{name}_mesh_nodes_per_s']}/s), raw Ray "
            f"{figures[f'{name}_raw_node_ms']} ms/node ({figures[f'{name}_raw_nodes_per_s']}/s),"
            f" ratio {figures[f'{name}_ratio']}"
        )


async def cpu_fanout(mesh: Mesh, figures: dict[str, object]) -> None:
    """Makespan of CPU_NODES independent CPU-bound nodes against total work / CPUS.

    The total work is what the nodes took, each timed inside its replica (the machine's
    speed drifts, and two busy processes on two cores slow each other down: that is work,
    not scheduling); one node timed alone in this process is printed next to it.
    """
    steps = [
        PlanStep(id=f"w{i}", agent="cruncher", skill="work", args={"n": CRUNCH, "i": i})
        for i in range(CPU_NODES)
    ]
    plan = Plan(goal="crunch", steps=steps, output="w0")
    planner = TemplatePlanner(lambda goal: plan)
    await mesh.run(plan.goal, planner=planner)  # warm: the replicas have started and settled
    best = (float("inf"), 0.0)  # (makespan / ideal, makespan)
    work = alone = float("inf")
    for _ in range(ROUNDS):
        alone = min([alone] + [_timed(crunch, CRUNCH) for _ in range(3)])
        start = time.perf_counter()
        result = await mesh.run(plan.goal, planner=planner)
        makespan = time.perf_counter() - start
        total = sum(float(n.output) for n in result.nodes)  # type: ignore[arg-type]
        if makespan / (total / CPUS) < best[0]:
            best, work = (makespan / (total / CPUS), makespan), total
    over, makespan = best
    figures |= {
        "cpu_node_ms": round(1000 * work / CPU_NODES, 1),
        "cpu_node_alone_ms": round(1000 * alone, 1),
        "cpu_fanout_makespan_s": round(makespan, 3),
        "cpu_fanout_ideal_s": round(work / CPUS, 3),
        "cpu_fanout_over_ideal": round(over, 3),
    }
    print(
        f"cpu fan-out of {CPU_NODES} x {1000 * work / CPU_NODES:.0f} ms (alone here: "
        f"{1000 * alone:.0f} ms) on {CPUS} replicas: makespan {makespan:.2f} s, ideal "
        f"{work / CPUS:.2f} s ({over:.2f} x)"
    )


def _timed(func: Callable[[int], object], arg: int) -> float:
    start = time.perf_counter()
    func(arg)
    return time.perf_counter() - start


async def main() -> None:
    ensure_ray(num_cpus=CPUS)
    policy = Policy.from_yaml("name: bench\nmessages: [{from: [user, 'user:*'], to: ['*']}]\n")
    figures: dict[str, object] = {"bench": "dag", "cpus": CPUS}
    async with Mesh([Noop], policy=policy) as mesh:
        await noop_shapes(mesh, figures)
    # a mesh of its own: its replicas hold every CPU, which the raw Ray tasks above need
    async with Mesh([Cruncher], policy=policy) as mesh:
        await cpu_fanout(mesh, figures)
    figures["ratio"] = figures["fanout_1000_ratio"]
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
