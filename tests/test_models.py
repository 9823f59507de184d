"""The model registry and routing: cheapest capable first, fallback, canaries, the response
cache, usage accounting per call, node, agent and run, and run budgets."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from agentmesh import (
    Agent,
    Budget,
    BudgetExceededError,
    Canary,
    ConfigError,
    GenerateRequest,
    LlamaCppModel,
    Mesh,
    ModelCache,
    ModelEntry,
    ModelError,
    ModelRoute,
    ModelTimeoutError,
    ModelUsage,
    Plan,
    PlanStep,
    Policy,
    Resources,
    ScriptedError,
    ScriptedModel,
    TemplatePlanner,
    ToolSpec,
    UnknownModelError,
    Usage,
    default_model_path,
    skill,
)
from agentmesh._private.model_cache import ResponseCache
from agentmesh._private.model_router import in_canary
from agentmesh.inference import GenerateResponse

POLICY = Policy.from_yaml("name: models\nmessages: [{from: ['*'], to: ['*']}]\n")


class Quiet(Agent):
    """An agent that uses no model (a mesh needs one agent)."""

    resources = Resources(num_cpus=0)

    @skill
    def nothing(self) -> int:
        """Nothing."""
        return 0


def _request(prompt: str = "hi", **fields: object) -> GenerateRequest:
    return GenerateRequest(prompt=prompt, **fields)  # type: ignore[arg-type]


# --- the registry's pieces, without a mesh ---------------------------------------------------


def test_an_entry_prices_calls_and_knows_what_it_can_serve() -> None:
    entry = ModelEntry(
        spec=ScriptedModel(), prompt_cost=2.0, completion_cost=4.0, context_tokens=100
    )
    assert entry.cost(1000, 500) == pytest.approx(4.0)
    assert entry.capable(_request("x" * 40, max_tokens=50))  # about 10 + 50 tokens
    assert not entry.capable(_request("x" * 400, max_tokens=50))  # about 100 + 50: too long
    plain = ModelEntry(spec=ScriptedModel(), tools=False, structured=False)
    assert not plain.capable(_request(tools=[ToolSpec(name="t", description="d")]))
    assert not plain.capable(_request(json_schema={"type": "object"}))
    with pytest.raises(ValidationError):
        ModelEntry(spec=ScriptedModel(), prompt_cost=-1)


def test_routes_are_checked_when_the_mesh_is_made() -> None:
    with pytest.raises(ValidationError, match="each model once"):
        ModelRoute(models=["a", "a"])
    with pytest.raises(ValidationError):
        Canary(model="a", share=1.0)
    models = {"a": ScriptedModel()}
    with pytest.raises(ConfigError, match="lacks"):
        Mesh([Quiet], models=models, routes={"r": ModelRoute(models=["a", "b"])})
    with pytest.raises(ConfigError, match="name of a model"):
        Mesh([Quiet], models=models, routes={"a": ModelRoute(models=["a"])})

    class Asks(Agent):
        """Uses a model nobody configured."""

        model = "nowhere"

        @skill
        def go(self) -> int:
            """Nothing."""
            return 0

    with pytest.raises(UnknownModelError, match="nowhere"):
        Mesh([Asks], models=models, routes={"r": ModelRoute(models=["a"])})


def test_the_canary_takes_its_share_and_always_the_same_requests() -> None:
    requests = [_request(f"question {i}") for i in range(4000)]
    chosen = [in_canary(r, 0.25) for r in requests]
    assert 0.22 < sum(chosen) / len(chosen) < 0.28
    assert chosen == [in_canary(r, 0.25) for r in requests]  # a pure function of the request


def test_the_cache_key_changes_with_weights_knowledge_prompt_and_parameters() -> None:
    cache = ResponseCache(ModelCache(knowledge_version="k1"), "sha256:aa")
    base = cache.key(_request())
    assert base is not None and base == cache.key(_request())
    others = [
        ResponseCache(ModelCache(knowledge_version="k1"), "sha256:bb").key(_request()),
        ResponseCache(ModelCache(knowledge_version="k2"), "sha256:aa").key(_request()),
        cache.key(_request("hello")),
        cache.key(_request(max_tokens=9)),
        cache.key(_request(system="be brief")),
        cache.key(_request(json_schema={"type": "object"})),
    ]
    assert base not in others and len(set(others)) == len(others)
    assert cache.key(_request(temperature=0.7)) is None  # sampled: not cached unless asked
    sampled = ResponseCache(ModelCache(sampled=True), "sha256:aa")
    assert sampled.key(_request(temperature=0.7, seed=1)) != sampled.key(
        _request(temperature=0.7, seed=2)
    )


def test_the_cache_forgets_the_least_recently_used_first() -> None:
    cache = ResponseCache(ModelCache(max_entries=2), "d")
    answer = GenerateResponse(
        text="a",
        model="m",
        backend="b",
        prompt_tokens=1,
        completion_tokens=1,
        duration_s=0.0,
        finish_reason="stop",
    )
    keys = [cache.key(_request(f"p{i}")) for i in range(3)]
    cache.put(keys[0], answer)  # type: ignore[arg-type]
    cache.put(keys[1], answer)  # type: ignore[arg-type]
    assert cache.get(keys[0]) is not None  # type: ignore[arg-type]  # now the most recent
    cache.put(keys[2], answer)  # type: ignore[arg-type]
    assert cache.get(keys[1]) is None and len(cache) == 2  # type: ignore[arg-type]


def test_usage_sums_per_model_version_and_budgets_read_it() -> None:
    usage = Usage()
    usage.add(ModelUsage(model="a", calls=1, prompt_tokens=10, completion_tokens=5, cost=0.5))
    usage.add(ModelUsage(model="a", calls=1, cache_hits=1, saved_tokens=15))
    usage.add(ModelUsage(model="a", version="2", calls=1, prompt_tokens=1, completion_tokens=1))
    assert sorted(usage.models) == ["a@1", "a@2"]
    assert (usage.calls, usage.tokens, usage.cache_hits, usage.saved_tokens) == (3, 17, 1, 15)
    assert usage.cache_hit_rate == pytest.approx(1 / 3)
    assert Budget(max_tokens=17).exceeded(usage) is None
    assert "17 tokens" in (Budget(max_tokens=16).exceeded(usage) or "")
    assert "cost" in (Budget(max_cost=0.4).exceeded(usage) or "")


# --- routing in a running mesh ---------------------------------------------------------------


async def test_a_route_tries_the_cheapest_capable_model_then_falls_back(
    ray_session: None,
) -> None:
    models = {
        "dear": ModelEntry(spec=ScriptedModel(["dear 1", "dear 2"]), prompt_cost=5.0),
        "cheap": ModelEntry(
            spec=ScriptedModel(["cheap 1", ScriptedError(message="overloaded")]),
            prompt_cost=1.0,
            structured=False,
        ),
    }
    routes = {"default": ModelRoute(models=["dear", "cheap"])}
    async with Mesh([Quiet], models=models, routes=routes, policy=POLICY) as mesh:
        first = await mesh.generate("default", _request("one two three"))
        assert (first.text, first.fallbacks) == ("cheap 1", [])
        assert first.cost == pytest.approx(3 * 1.0 / 1000)  # three prompt words at 1 per 1,000
        assert first.digest is not None and first.digest.startswith("sha256:")
        second = await mesh.generate("default", _request("again"))  # cheap fails: dear answers
        assert (second.text, second.fallbacks) == ("dear 1", ["cheap"])
        schema = await mesh.generate("default", _request("x", json_schema={"type": "object"}))
        assert schema.text == "dear 2"  # cheap cannot do schemas: skipped, not tried
        assert mesh.usage.models["cheap@1"].failed == 1
        assert mesh.usage.models["cheap@1"].calls == 1
        assert mesh.usage.models["dear@1"].calls == 2
        with pytest.raises(UnknownModelError):
            await mesh.generate("elsewhere", _request())


async def test_a_timeout_falls_back_and_the_last_one_raises_typed(ray_session: None) -> None:
    models = {
        "slow": ScriptedModel(["late"], delay_s=3.0),
        "fast": ScriptedModel(["quick"]),
        "broken": ScriptedModel([ScriptedError(message="down")]),
    }
    routes = {
        "hurry": ModelRoute(models=["slow", "fast"], order="listed", timeout_s=0.5),
        "only_slow": ModelRoute(models=["slow"], timeout_s=0.5),
        "only_broken": ModelRoute(models=["broken"]),
    }
    async with Mesh([Quiet], models=models, routes=routes, policy=POLICY) as mesh:
        answer = await mesh.generate("hurry", _request())
        assert (answer.text, answer.fallbacks) == ("quick", ["slow"])
        with pytest.raises(ModelTimeoutError, match="slow"):
            await mesh.generate("only_slow", _request())
        with pytest.raises(ModelError, match="down"):
            await mesh.generate("only_broken", _request())


async def test_a_canary_version_gets_exactly_the_requests_in_its_share(
    ray_session: None,
) -> None:
    prompts = [f"question {i}" for i in range(12)]
    canaried = [p for p in prompts if in_canary(_request(p), 0.5)]
    assert 0 < len(canaried) < len(prompts)  # both versions get some of these
    models = {
        "stable": ModelEntry(spec=ScriptedModel(["stable"] * 12), version="1"),
        "next": ModelEntry(spec=ScriptedModel(["next"] * 12), version="2"),
    }
    routes = {"chat": ModelRoute(models=["stable"], canary=Canary(model="next", share=0.5))}
    async with Mesh([Quiet], models=models, routes=routes, policy=POLICY) as mesh:
        for prompt in prompts:
            answer = await mesh.generate("chat", _request(prompt))
            expected = ("next", "2") if prompt in canaried else ("stable", "1")
            assert (answer.text, answer.version) == expected
        # the recorded outcome compares the versions
        assert mesh.usage.models["next@2"].calls == len(canaried)
        assert mesh.usage.models["stable@1"].calls == len(prompts) - len(canaried)


async def test_cached_answers_cost_nothing_and_count_as_saved(ray_session: None) -> None:
    models = {"m": ModelEntry(spec=ScriptedModel(["first", "second"]), prompt_cost=1.0)}
    async with Mesh([Quiet], models=models, model_cache=ModelCache(), policy=POLICY) as mesh:
        one = await mesh.generate("m", _request("same words"))
        again = await mesh.generate("m", _request("same words"))
        assert (one.cached, again.cached, again.text, again.cost) == (False, True, "first", 0.0)
        other = await mesh.generate("m", _request("other words"))
        assert (other.cached, other.text) == (False, "second")
        sampled = mesh.generate("m", _request("same words", temperature=0.8))
        with pytest.raises(ModelError):  # not served from the cache: the queue is spent
            await sampled
        calls = await mesh.model_handle("m").calls.remote()
        assert [c.prompt for c in calls] == ["same words", "other words", "same words"]
        usage = mesh.usage.models["m@1"]
        assert (usage.calls, usage.cache_hits, usage.saved_tokens) == (3, 1, 3)


# --- usage in runs, and budgets --------------------------------------------------------------


class Writer(Agent):
    """Writes with the mesh's model."""

    resources = Resources(num_cpus=0)
    model = "default"

    @skill
    async def write(self, topic: str, after: str = "") -> str:
        """One model call about ``topic``."""
        return (await self.generate(f"write about {topic}")).text


class Editor(Agent):
    """Has the writer write, then edits with its own call."""

    resources = Resources(num_cpus=0)
    model = "default"

    @skill
    async def edit(self, topic: str) -> str:
        """A nested writer call and one model call of its own."""
        draft = await self.call("writer", "write", topic=topic)
        return (await self.generate(f"edit {draft}")).text


def _chain(*topics: str) -> Plan:
    steps = [
        PlanStep(
            id=f"s{i}",
            agent="writer",
            skill="write",
            args={"topic": topic},
            inputs={"after": f"s{i - 1}"} if i else {},
        )
        for i, topic in enumerate(topics)
    ]
    return Plan(goal="write", steps=steps)


def _after(step: str, topic: str, upstream: str) -> PlanStep:
    args: dict[str, object] = {"topic": topic}
    return PlanStep(
        id=step,
        agent="writer",
        skill="write",
        args=args,
        inputs={"after": upstream},  # type: ignore[arg-type]
    )


async def test_a_run_sums_usage_per_node_and_agent_with_nested_calls_and_hits(
    ray_session: None, tmp_path: Path
) -> None:
    replies = ["alpha beta", "edited text here", "gamma"]
    models = {"default": ModelEntry(spec=ScriptedModel(replies), completion_cost=10.0)}
    plan = Plan(
        goal="edit",
        steps=[
            PlanStep(id="e", agent="editor", skill="edit", args={"topic": "cats"}),
            _after("w", "cats", "e"),  # after e: its call is the one the cache serves
            _after("d", "dogs", "w"),
        ],
    )
    async with Mesh(
        [Writer, Editor],
        models=models,
        model_cache=ModelCache(),
        policy=POLICY,
        run_store=tmp_path / "runs.db",
    ) as mesh:
        result = await mesh.run("edit", planner=TemplatePlanner(lambda goal: plan))
        editor = result.node("e").usage
        assert editor is not None and editor.calls == 2  # its own call and the writer's
        assert result.node("w").usage is not None
        assert result.node("w").usage.cache_hits == 1  # type: ignore[union-attr]  # "write about cats" again
        usage = result.usage
        assert (usage.calls, usage.cache_hits) == (4, 1)
        assert usage.saved_tokens == 3 + 2  # the hit's prompt ("write about cats") and answer
        assert usage.cost == pytest.approx((2 + 3 + 1) * 10.0 / 1000)
        by_agent = result.usage_by_agent()
        assert (by_agent["editor"].calls, by_agent["writer"].calls) == (2, 2)
        stored = mesh.run_store.get_run(result.run_id)  # type: ignore[union-attr]
        assert stored.node("e").usage == editor  # checkpointed with the node
        listed = mesh.run_store.list_runs()[0]  # type: ignore[union-attr]  # `agentmesh runs`
        summary = stored.summary()
        for line in (listed, summary):
            assert line.run_id == result.run_id
            figures = (line.model_calls, line.cache_hits, line.saved_tokens, line.tokens)
            assert figures == (4, 1, 5, usage.tokens)
            assert line.cost == pytest.approx(usage.cost)


async def test_a_spent_budget_stops_the_run_cleanly_and_resume_goes_on(
    ray_session: None, tmp_path: Path
) -> None:
    models = {"default": ScriptedModel(["one two three four", "five", "six"])}
    async with Mesh([Writer], models=models, policy=POLICY, run_store=tmp_path / "runs.db") as mesh:
        planner = TemplatePlanner(lambda goal: _chain("a", "b", "c"))
        with pytest.raises(BudgetExceededError) as stopped:
            await mesh.run("write", planner=planner, budget=Budget(max_tokens=5), max_replans=1)
        result = stopped.value.result
        assert [n.status.value for n in result.nodes] == ["succeeded", "failed", "skipped"]
        assert result.node("s1").error.type == "BudgetExceededError"  # type: ignore[union-attr]
        assert result.usage.tokens == 3 + 4  # "write about a" and its answer
        assert result.revisions == []  # a spent budget is not re-planned around
        done = await mesh.resume_run(result.run_id, budget=Budget(max_tokens=100))
        assert done.succeeded and done.output == "six"
        calls = await mesh.model_handle("default").calls.remote()
        assert [c.prompt for c in calls] == ["write about a", "write about b", "write about c"]


@pytest.mark.llama
async def test_the_bundled_model_is_named_by_its_file_digest_and_cached(
    ray_session: None,
) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (`llama` extra)")
    path = default_model_path()
    with open(path, "rb") as weights:
        digest = "sha256:" + hashlib.file_digest(weights, "sha256").hexdigest()
    models = {"gemma": LlamaCppModel(num_cpus=1)}
    async with Mesh([Quiet], models=models, model_cache=ModelCache(), policy=POLICY) as mesh:
        request = _request("The capital of France is", max_tokens=8)
        made = await mesh.generate("gemma", request)
        again = await mesh.generate("gemma", request)
        assert made.digest == again.digest == digest
        assert (made.cached, again.cached, again.text) == (False, True, made.text)
        assert again.duration_s < made.duration_s  # no tokens generated for the hit
        usage = mesh.usage.models["gemma@1"]
        assert usage.saved_tokens == made.prompt_tokens + made.completion_tokens
