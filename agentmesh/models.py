"""The model registry and routing: which model serves a call, what it cost, what was saved.

A mesh's ``models`` map names to a backend spec (:data:`~agentmesh.inference.ModelSpec`) or to
a :class:`ModelEntry`, which adds what routing and accounting need: a version, costs per 1,000
tokens, and what the model can do (a context bound, tool calls, JSON-schema output). The mesh
adds each model's *weights digest* when it starts (the SHA-256 of the GGUF file; of the spec for
models without a weights file), so a recorded call names exactly which weights answered it.

A :class:`ModelRoute` is a name agents and planners may ask for instead of a model: its models
are tried cheapest capable first (or in the order listed), falling back to the next on an error
or a timeout; a :class:`Canary` sends a share of the traffic to a new version first. Which
requests go to the canary is a pure function of the request, so a replay routes the same way,
and rolling back is one configuration change (drop the canary or set another model).

:class:`ModelCache` turns on the model services' response cache: keyed by the weights digest,
the whole request (prompt, parameters, tools, schema) and a knowledge version, so a change to
any of them misses. Deterministic calls (temperature 0) are cached; sampled ones only when
asked (``sampled=True``), and then per seed.

Every model call is accounted (:class:`ModelUsage`: tokens in and out, latency, cost, cache
hits and the tokens they saved, fallbacks) per model version; a run sums them per node and per
agent (``RunResult.usage``) and stops cleanly when its :class:`Budget` is spent.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentmesh.inference import GenerateRequest, ModelSpec

__all__ = [
    "Budget",
    "Canary",
    "ModelCache",
    "ModelEntry",
    "ModelRoute",
    "ModelUsage",
    "Usage",
]

Cost = Annotated[float, Field(ge=0.0)]


class ModelEntry(BaseModel):
    """A registered model: its backend spec, version, costs and capabilities."""

    model_config = ConfigDict(extra="forbid")

    spec: ModelSpec
    version: str = Field(default="1", min_length=1)
    prompt_cost: Cost = 0.0
    """Cost of 1,000 prompt tokens (any unit: the run's budget is in the same one)."""
    completion_cost: Cost = 0.0
    """Cost of 1,000 generated tokens."""
    context_tokens: int | None = Field(default=None, gt=0)
    """The longest prompt it takes, in tokens (estimated at 4 characters a token); None: any."""
    tools: bool = True
    """Whether it can answer with tool calls."""
    structured: bool = True
    """Whether it can answer to a JSON schema."""
    replicas: int = Field(default=1, ge=1)
    """Model service actors (each holds the weights and ``spec.num_cpus``); a call goes to the
    one with the fewest of its caller's calls in flight, and on to another if that one is dead
    or full, so a slow or dead replica does not stall the rest. Each keeps its own cache."""
    max_queue: int = Field(default=64, ge=0)
    """Requests one replica holds waiting beyond the one it generates; past it the replica
    refuses at once (ModelBusyError), so a route falls back instead of queueing for ever."""

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """What a call with these token counts cost."""
        return (prompt_tokens * self.prompt_cost + completion_tokens * self.completion_cost) / 1000

    def capable(self, request: GenerateRequest) -> bool:
        """Whether this model can serve ``request`` at all (a route skips it otherwise)."""
        if request.tools and not self.tools:
            return False
        if request.json_schema is not None and not self.structured:
            return False
        chars = len(request.prompt) + len(request.system or "")
        return self.context_tokens is None or chars / 4 + request.max_tokens <= self.context_tokens

    @property
    def unit_cost(self) -> float:
        """The ordering key of "cheapest first"."""
        return self.prompt_cost + self.completion_cost


def as_entry(spec: ModelSpec | ModelEntry) -> ModelEntry:
    """A bare spec as an entry with the defaults."""
    return spec if isinstance(spec, ModelEntry) else ModelEntry(spec=spec)


class Canary(BaseModel):
    """Send ``share`` of a route's traffic to ``model`` first (the route's models stay its
    fallbacks)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    share: float = Field(gt=0.0, lt=1.0)


class ModelRoute(BaseModel):
    """A name that routes calls over several models; see the module docstring."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(min_length=1)
    order: str = Field(default="cheapest", pattern="^(cheapest|listed)$")
    """"cheapest": the capable models by cost (ties keep the listed order); "listed": as
    listed, skipping incapable ones."""
    timeout_s: float | None = Field(default=None, gt=0)
    """How long one model may take before the call falls back to the next."""
    canary: Canary | None = None

    @model_validator(mode="after")
    def _distinct(self) -> ModelRoute:
        named = [*self.models, *([self.canary.model] if self.canary else [])]
        if len(named) != len(set(named)):
            raise ValueError(f"a route names each model once, got {named}")
        return self


class ModelCache(BaseModel):
    """The model services' response cache; see the module docstring."""

    model_config = ConfigDict(extra="forbid")

    knowledge_version: str = ""
    """Bump it when what the prompts rely on changes (documents, tools' data): every entry
    made under another version misses."""
    sampled: bool = False
    """Cache calls with temperature > 0 too (keyed by their seed)."""
    max_entries: int = Field(default=4096, gt=0)
    """Per model service; the least recently used entries go first."""


class ModelUsage(BaseModel):
    """What calls to one model version cost and saved."""

    model_config = ConfigDict(extra="forbid")

    model: str
    version: str = "1"
    calls: int = 0
    """Answered calls, cache hits included."""
    failed: int = 0
    """Calls that failed or timed out (a route then fell back to its next model)."""
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    saved_tokens: int = 0
    """Tokens the cache hits did not have to process (their prompt and completion)."""
    cost: float = 0.0
    latency_s: float = 0.0
    """The sum over calls, as the caller waited for them."""

    @property
    def key(self) -> str:
        return f"{self.model}@{self.version}"

    @property
    def mean_latency_s(self) -> float:
        return self.latency_s / self.calls if self.calls else 0.0


class Usage(BaseModel):
    """Model usage per model version (``model@version``), with totals."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelUsage] = Field(default_factory=dict)

    def add(self, usage: ModelUsage) -> None:
        """Count one more call's (or one more summary's) usage in."""
        mine = self.models.get(usage.key)
        if mine is None:
            self.models[usage.key] = usage.model_copy()
            return
        for name in _SUMMED:
            setattr(mine, name, getattr(mine, name) + getattr(usage, name))

    def merge(self, other: Usage) -> None:
        for usage in other.models.values():
            self.add(usage)

    @classmethod
    def total_of(cls, usages: list[Usage]) -> Usage:
        total = cls()
        for usage in usages:
            total.merge(usage)
        return total

    def _sum(self, name: str) -> float:
        return sum(getattr(u, name) for u in self.models.values())

    @property
    def calls(self) -> int:
        return int(self._sum("calls"))

    @property
    def failed(self) -> int:
        return int(self._sum("failed"))

    @property
    def tokens(self) -> int:
        """Prompt and completion tokens the models processed (cache hits not counted)."""
        return int(self._sum("prompt_tokens") + self._sum("completion_tokens"))

    @property
    def cost(self) -> float:
        return self._sum("cost")

    @property
    def cache_hits(self) -> int:
        return int(self._sum("cache_hits"))

    @property
    def saved_tokens(self) -> int:
        return int(self._sum("saved_tokens"))

    @property
    def cache_hit_rate(self) -> float:
        return self.cache_hits / self.calls if self.calls else 0.0


_SUMMED = (
    "calls",
    "failed",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "saved_tokens",
    "cost",
    "latency_s",
)


class Budget(BaseModel):
    """What one run may spend on models; a run past it starts no more nodes and fails with
    BudgetExceededError (resumable: ``resume_run`` with a larger budget goes on)."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(default=None, gt=0)
    max_cost: float | None = Field(default=None, gt=0)

    def exceeded(self, usage: Usage) -> str | None:
        """Why ``usage`` is past this budget, or None."""
        if self.max_tokens is not None and usage.tokens > self.max_tokens:
            return f"{usage.tokens} tokens used, the budget is {self.max_tokens}"
        if self.max_cost is not None and usage.cost > self.max_cost:
            return f"cost {usage.cost:.4g} spent, the budget is {self.max_cost:g}"
        return None
