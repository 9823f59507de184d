"""Batching on the torch backend: N concurrent greedy requests, batched against one at a time.

Two model services (the Ray actor a mesh starts for each model) hold the bundled Gemma 3
270M GGUF in transformers, the same threads each: one with ``TorchModel(max_batch=N)``, the
floor with ``max_batch=1`` (one request at a time, as before batching). Each round sends the
same ``N`` distinct greedy prompts to one service at once and measures the completion tokens
of all answers over the wall time until the last; both services alternate, best of
``ROUNDS`` each, and must give the same texts. The service's ``info()`` proves that batches
ran. The last line is a JSON object; ``ratio`` is batched tokens/s over one-at-a-time tokens/s.

``python bench/torch_batch.py [N]`` (default 4). The first run converts the GGUF for torch
(a minute or two), later runs load the cached conversion.
"""

from __future__ import annotations

import json
import os
import sys
import time

import ray

from agentmesh._private.model_service import launch_model_service
from agentmesh._private.ray_init import ensure_ray
from agentmesh.inference import GenerateRequest, GenerateResponse, ModelInfo, TorchModel

# torch's threads, the same for both services: all cores but one (Ray's own processes and
# this driver need the rest; see bench/inference.py)
THREADS = max(1, (os.cpu_count() or 2) - 1)
MAX_TOKENS = 32
ROUNDS = 3
TOPICS = ["a robot", "a lighthouse", "a cat", "the sea", "a city", "a tree", "a clock", "a bird"]


def prompts(n: int) -> list[GenerateRequest]:
    return [
        GenerateRequest(
            prompt=f"Write a short story about {TOPICS[i % len(TOPICS)]}. Once upon a time,",
            max_tokens=MAX_TOKENS,
        )
        for i in range(n)
    ]


def wave(actor: object, requests: list[GenerateRequest]) -> tuple[float, list[GenerateResponse]]:
    start = time.perf_counter()
    answers: list[GenerateResponse] = ray.get([actor.generate.remote(r) for r in requests])  # type: ignore[attr-defined]
    return time.perf_counter() - start, answers


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    ensure_ray(num_cpus=2 * THREADS + 1)
    figures: dict[str, object] = {"bench": "torch_batch", "threads": THREADS, "requests": n}
    batched = launch_model_service("batched", TorchModel(num_cpus=THREADS, max_batch=n))
    single = launch_model_service("single", TorchModel(num_cpus=THREADS, max_batch=1))
    infos: list[ModelInfo] = ray.get([batched.info.remote(), single.info.remote()])
    figures["device"] = infos[0].device
    requests = prompts(n)
    wave(batched, requests[:1])  # warm: both have generated once
    wave(single, requests[:1])
    best = {"batched": 0.0, "single": 0.0}
    texts: dict[str, list[str]] = {}
    for _ in range(ROUNDS):
        for name, actor in (("single", single), ("batched", batched)):
            wall, answers = wave(actor, requests)
            tokens = sum(a.completion_tokens for a in answers)
            best[name] = max(best[name], tokens / wall)
            texts[name] = [a.text for a in answers]
    assert texts["batched"] == texts["single"], "batched answers differ from one at a time"
    info: ModelInfo = ray.get(batched.info.remote())
    assert info.largest_batch > 1, "no batch ran"
    figures |= {
        "max_tokens": MAX_TOKENS,
        "single_tokens_per_s": round(best["single"], 1),
        "batched_tokens_per_s": round(best["batched"], 1),
        "ratio": round(best["batched"] / best["single"], 2),
        "batches": info.batches,
        "largest_batch": info.largest_batch,
    }
    print(
        f"{n} concurrent greedy requests of {MAX_TOKENS} tokens on {info.device}: one at a "
        f"time {best['single']:.1f} tokens/s, batched {best['batched']:.1f} tokens/s "
        f"(ratio {best['batched'] / best['single']:.2f}; {info.batches} batches, the "
        f"largest {info.largest_batch})"
    )
    ray.kill(batched)
    ray.kill(single)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
