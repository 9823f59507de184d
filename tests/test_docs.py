"""The README's example runs as written (docs are executable)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentmesh import Agent

README = Path(__file__).parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_example_runs(ray_session: None, capsys: pytest.CaptureFixture[str]) -> None:
    example = python_blocks()[0]
    assert len(example.strip().splitlines()) <= 50
    exec(compile(example, str(README), "exec"), {"__name__": "readme_example"})
    assert capsys.readouterr().out.strip() == "4 words"


def test_readme_structured_output_example_runs(
    ray_session: None, capsys: pytest.CaptureFixture[str]
) -> None:
    [example] = [block for block in python_blocks() if "output=Contact" in block]
    exec(compile(example, str(README), "exec"), {"__name__": "readme_structured"})
    assert capsys.readouterr().out.splitlines() == [
        "name='Ann' phone='555-0123'",
        "- phone: String should match pattern '^\\d{3}-\\d{4}$'",
    ]


def test_readme_models_example_runs(ray_session: None, capsys: pytest.CaptureFixture[str]) -> None:
    [example] = [block for block in python_blocks() if "ModelRoute(" in block]
    exec(compile(example, str(README), "exec"), {"__name__": "readme_models"})
    assert capsys.readouterr().out.splitlines() == [
        "['long summary', 'short summary']",
        "2 answered, 1 failed, cost 0.0066",
    ]


def test_readme_placement_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    [example] = [block for block in python_blocks() if 'strategy="spread"' in block]
    scope: dict[str, object] = {"__name__": "readme_placement"}
    exec(compile(example, str(README), "exec"), scope)
    assert capsys.readouterr().out.startswith(
        "bad resources: strategy 'pack' reserves each replica's resources in a placement group"
    )
    vision = scope["Vision"]
    assert isinstance(vision, type) and issubclass(vision, Agent) and vision.replicas == 2
    assert vision.resources.model_dump() == {
        "num_cpus": 1,
        "num_gpus": 1,
        "custom": {},
        "labels": {"tier": "edge"},
        "strategy": "spread",
    }


def test_readme_backends_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    [example] = [block for block in python_blocks() if "TorchModel(device=" in block]
    exec(compile(example, str(README), "exec"), {"__name__": "readme_backends"})
    kinds, error = capsys.readouterr().out.splitlines()
    assert kinds == "['llama_cpp', 'openai', 'torch']"
    assert error.startswith("OpenAIModel base_url must be an http(s) URL such as")
