"""What a model planner is told: the plan format, the skills, and (re-planning) how a run failed.

Kept apart from :mod:`agentmesh.planner` so the prompts can be read (and changed) in one place.
A failed run is shown as the plan's JSON, each succeeded step's output (cut to a bound: a long
output would crowd out the rest) and each failed step's last error.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the executor imports the planner, which imports this module
    from agentmesh.planner import SkillInfo
    from agentmesh.results import RunResult

__all__ = ["PLAN_FORMAT", "replan_prompt", "skills_text"]

PLAN_FORMAT = (
    "Plan how to reach the goal with these skills. Answer with one JSON object "
    '{"goal": str, "steps": [{"id", "agent", "skill", "args", "inputs", "description"}], '
    "\"output\"}; 'inputs' maps a parameter to the id of the step whose result feeds it; "
    "'description' says why this agent and skill (it is recorded with the step).\n"
)
#: The most characters of one succeeded step's output shown to the model.
OUTPUT_CHARS = 400


def skills_text(catalog: Sequence[SkillInfo]) -> str:
    return "\n".join(
        f"- agent {s.agent!r}, skill {s.skill!r}: {s.description} "
        f"input schema: {json.dumps(s.input_schema)}"
        for s in catalog
    )


def replan_prompt(failed: RunResult, skills: str) -> str:
    """Ask for a revised plan for what remains of ``failed``'s goal."""
    lines = []
    for node in failed.nodes:
        if node.status == "succeeded":
            output = json.dumps(node.output)
            if len(output) > OUTPUT_CHARS:
                output = output[:OUTPUT_CHARS] + "..."
            lines.append(f"- {node.step_id}: succeeded, output {output}")
        elif node.status == "failed" and node.error is not None:
            lines.append(
                f"- {node.step_id}: FAILED for good: {node.error.type}: {node.error.message}"
            )
        else:
            lines.append(f"- {node.step_id}: {node.status}")
    return (
        f"{PLAN_FORMAT}A plan for this goal failed. Write a revised plan for what remains: "
        "do not use a failed step's agent and skill the same way again. A step repeated "
        "exactly as it was (same id, agent, skill, args and inputs) whose node succeeded is "
        "kept and not run again.\n"
        f"Skills:\n{skills}\nGoal: {failed.goal}\n"
        f"Failed plan: {failed.plan.model_dump_json(exclude_defaults=True)}\n"
        "How its steps ended:\n" + "\n".join(lines) + "\nJSON plan:"
    )
