"""Generation through the mesh against a direct llama-cpp-python call, in the same run.

Through the mesh, the driver calls an agent's skill (its message and reply vetted by the
security actor), the agent calls the mesh model (a model-service actor holding the bundled
Gemma 3 270M GGUF with ``THREADS`` threads), and the text comes back the same way. The floor
is the same llama-cpp-python call (``create_completion``, the same model file, prompt,
greedy decoding, threads and context) made directly in this process. Both sides alternate,
best of ``ROUNDS`` each; tokens/s is completion tokens over the wall time of the whole call.

Also: the latency of a cache hit (``Mesh(model_cache=...)``, the same request again), and the
throughput of 1, 2 and 4 agents calling one model service at once (distinct prompts; the
llama.cpp backend generates one request at a time, so its total tokens/s stays about flat
while each caller waits longer). Ray runs its worker processes at a
niceness of 15 by default; the driver takes the same before measuring, so both sides compete
for the CPU alike. The last line is a JSON object; ``ratio`` is mesh tokens/s
over direct tokens/s (goal: at least 0.95).
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from agentmesh import Agent, LlamaCppModel, Mesh, ModelCache, Policy, Resources, skill
from agentmesh._private.ray_init import ensure_ray
from agentmesh.inference import default_model_path

# llama.cpp's threads, the same on both sides: all cores but one, which the rest of the mesh
# (Ray's own processes, the agent and security actors) needs; more threads than free cores
# make generation collapse (measured here on 2 cores with 2 threads: ratio 0.80, with 1: 1.04)
THREADS = max(1, (os.cpu_count() or 2) - 1)
N_CTX = 2048
MAX_TOKENS = 96
ROUNDS = 3
PROMPT = "Write a short story about a robot who learns to paint. Once upon a time,"
POLICY = Policy.from_yaml("name: bench\nmessages: [{from: [user], to: ['*']}]\n")


class Writer(Agent):
    """Generates with the mesh model; reports the tokens it got."""

    resources = Resources(num_cpus=0)
    replicas = 4
    model = "gemma"

    @skill
    def niceness(self) -> int:
        """The scheduling niceness Ray gave its worker processes (15 by default)."""
        return os.nice(0)

    @skill
    async def write(self, prompt: str) -> dict[str, int | bool | str]:
        """One greedy generation of ``prompt``."""
        answer = await self.generate(prompt, max_tokens=MAX_TOKENS)
        return {"tokens": answer.completion_tokens, "cached": answer.cached, "text": answer.text}


def direct_llama() -> object:
    import llama_cpp

    return llama_cpp.Llama(
        model_path=default_model_path(),
        n_ctx=N_CTX,
        n_threads=THREADS,
        n_threads_batch=THREADS,
        seed=0,
        verbose=False,
    )


def direct_call(llama: object, prompt: str) -> tuple[float, int, str]:
    start = time.perf_counter()
    out = llama.create_completion(prompt, max_tokens=MAX_TOKENS, temperature=0.0, seed=0)  # type: ignore[attr-defined]
    wall = time.perf_counter() - start
    return wall, out["usage"]["completion_tokens"], out["choices"][0]["text"]


async def mesh_call(mesh: Mesh, prompt: str) -> tuple[float, dict[str, int | bool | str]]:
    start = time.perf_counter()
    answer = await mesh.call("writer", "write", prompt=prompt)
    return time.perf_counter() - start, answer  # type: ignore[return-value]


async def main() -> None:
    ensure_ray(num_cpus=THREADS + 1)
    figures: dict[str, object] = {"bench": "inference", "threads": THREADS}
    llama = direct_llama()
    model = LlamaCppModel(num_cpus=THREADS, n_ctx=N_CTX)
    async with Mesh([Writer], models={"gemma": model}, policy=POLICY) as mesh:
        # Ray runs its workers (the model service too) at a niceness of its own (15 unless
        # RAY_worker_niceness says otherwise): the floor runs at the same, or on a busy
        # machine it would win the CPU for priority, not for speed
        worker = int(await mesh.call("writer", "niceness"))  # type: ignore[arg-type]
        os.nice(max(0, worker - os.nice(0)))
        figures["niceness"] = os.nice(0)
        await mesh_call(mesh, PROMPT)  # warm: both sides have run once
        direct_call(llama, PROMPT)
        best_direct = best_mesh = 0.0
        for _ in range(ROUNDS):
            wall, tokens, text = direct_call(llama, PROMPT)
            best_direct = max(best_direct, tokens / wall)
            wall, answer = await mesh_call(mesh, PROMPT)
            assert answer["text"] == text and answer["tokens"] == tokens, "not the same tokens"
            best_mesh = max(best_mesh, tokens / wall)
        figures |= {
            "completion_tokens": tokens,
            "direct_tokens_per_s": round(best_direct, 1),
            "mesh_tokens_per_s": round(best_mesh, 1),
            "ratio": round(best_mesh / best_direct, 3),
        }
        print(
            f"{tokens} tokens: direct {best_direct:.1f} tokens/s, through the mesh "
            f"{best_mesh:.1f} tokens/s (ratio {best_mesh / best_direct:.3f})"
        )
        for callers in (1, 2, 4):
            prompts = [f"{PROMPT} (story {i})" for i in range(callers)]
            start = time.perf_counter()
            answers = await asyncio.gather(*(mesh_call(mesh, p) for p in prompts))
            wall = time.perf_counter() - start
            total = sum(int(a["tokens"]) for _, a in answers)
            figures[f"concurrent_{callers}_tokens_per_s"] = round(total / wall, 1)
            figures[f"concurrent_{callers}_mean_call_s"] = round(
                sum(w for w, _ in answers) / callers, 2
            )
            print(
                f"{callers} agents at once: {total / wall:.1f} tokens/s in all, a call "
                f"{figures[f'concurrent_{callers}_mean_call_s']} s on average"
            )
    async with Mesh(
        [Writer], models={"gemma": model}, model_cache=ModelCache(), policy=POLICY
    ) as mesh:
        miss, first = await mesh_call(mesh, PROMPT)
        hits = []
        for _ in range(20):
            wall, answer = await mesh_call(mesh, PROMPT)
            assert answer["cached"] and answer["text"] == first["text"]
            hits.append(wall)
        hit = sorted(hits)[len(hits) // 2]
        figures |= {
            "cache_miss_ms": round(1000 * miss, 1),
            "cache_hit_p50_ms": round(1000 * hit, 1),
        }
        print(f"cache: a miss {1000 * miss:.0f} ms, a hit {1000 * hit:.1f} ms (p50 of 20)")
    figures["goal_met"] = figures["ratio"] >= 0.95  # type: ignore[operator]
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
