"""The ``agentmesh`` command line (typer + rich)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated

import typer
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table

from agentmesh._private.cli_audit import audit_app
from agentmesh._private.cli_replay import replay
from agentmesh._private.cli_runs import approve, resume, runs
from agentmesh._private.cli_serve import ModelPathOption, serve
from agentmesh._private.cli_tools import tools_app, warn_unsandboxed
from agentmesh._private.cli_trace import dashboard, trace
from agentmesh._private.decisions import Decision
from agentmesh.errors import AgentMeshError
from agentmesh.executor import RunResult

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="agentmesh: multi-agent systems on Ray actors, speaking A2A, with MCP tools.",
)
# Piped output (CI logs, tests) gets 120 columns rather than rich's default 80.
console = Console(width=None if sys.stdout.isatty() else 120)


_STATUS_STYLES = {"succeeded": "green", "failed": "red", "skipped": "yellow", "waiting": "magenta"}


def _dag_table(result: RunResult) -> Table:
    table = Table(title=f"Task DAG (run {result.run_id})")
    for column in (
        "step",
        "agent.skill",
        "after",
        "status",
        "attempts",
        "start (s)",
        "duration (s)",
    ):
        table.add_column(column)
    upstream = {s.id: ", ".join(sorted(s.upstream())) or "-" for s in result.plan.steps}
    for node in result.nodes:
        start = "" if node.started_at is None else f"{node.started_at - result.started_at:.3f}"
        duration = "" if node.duration_s is None else f"{node.duration_s:.3f}"
        style = {
            "succeeded": "green",
            "failed": "red",
            "skipped": "yellow",
            "waiting": "magenta",
        }.get(node.status, "white")
        table.add_row(
            node.step_id,
            f"{node.agent}.{node.skill}",
            upstream[node.step_id],
            f"[{style}]{node.status}[/{style}]",
            str(node.attempts),
            start,
            duration,
        )
    return table


def _decisions_table(decisions: list[Decision]) -> Table:
    table = Table(title="Security decisions")
    for column in ("#", "kind", "who -> what", "verdict", "rule"):
        table.add_column(column, overflow="fold")
    for d in decisions:
        style = {"allow": "green", "block": "red", "quarantine": "magenta"}[d.verdict]
        rule = d.rule
        if d.findings:
            rule += ": " + ", ".join(f"{f.rule} ({f.score:.2f})" for f in d.findings)
        table.add_row(
            str(d.seq),
            d.kind,
            f"{d.principal} -> {d.target}",
            f"[{style}]{d.verdict}[/{style}]",
            rule,
        )
    return table


@app.command()
def demo(
    goal: Annotated[str, typer.Option(help="What the agents should brief.")] = "",
    model_path: ModelPathOption = None,
    address: Annotated[
        str | None, typer.Option(help="Join this Ray cluster instead of starting one.")
    ] = None,
) -> None:
    """Run the example mesh: research and outline in parallel, then write with the local model."""
    from agentmesh.examples.demo import DEMO_GOAL, demo_servers, run_demo
    from agentmesh.inference import LlamaCppModel

    model = LlamaCppModel(path=str(model_path)) if model_path else None
    warn_unsandboxed(console, demo_servers())
    try:
        report = asyncio.run(run_demo(goal or DEMO_GOAL, model=model, address=address))
    except AgentMeshError as exc:
        console.print(f"[red]{type(exc).__name__}:[/red] {exc}")
        raise typer.Exit(1) from None
    brief = report.result.output
    console.rule("Result")
    console.print_json(json.dumps(brief))
    console.print(_dag_table(report.result))
    console.print(_decisions_table(report.decisions))
    for item in report.quarantine:
        console.print(
            f"[magenta]quarantined[/magenta] {item.id} (decision #{item.decision_seq}): "
            f"{item.content[:160]!r}..."
        )
    if address is not None:  # on a cluster: which node each agent went to
        nodes = sorted({n for ns in report.placement.values() for n in ns})
        where = ", ".join(
            f"{agent} on {' '.join(n[:12] for n in ns)}" for agent, ns in report.placement.items()
        )
        console.print(f"Placement over {len(nodes)} node(s): {where}")
    usage = report.result.usage
    console.print(
        f"Models: {usage.calls} call(s), {usage.tokens} tokens, {usage.cache_hits} cache hit(s). "
        f"Run {report.result.run_id}: agentmesh trace {report.result.run_id} (or agentmesh "
        f"dashboard) shows what happened; agentmesh replay {report.result.run_id} replays it."
    )


@app.command()
def agents(
    as_json: Annotated[bool, typer.Option("--json", help="Print the full cards as JSON.")] = False,
) -> None:
    """Print the A2A Agent Cards of the example mesh's agents."""
    from agentmesh.examples.demo import AGENTS
    from agentmesh.protocols.a2a import build_agent_card

    cards = [build_agent_card(cls) for cls in AGENTS]
    if as_json:
        console.print_json(json.dumps([json_format.MessageToDict(card) for card in cards]))
        return
    table = Table(title="Agent Cards")
    for column in ("agent", "description", "skills", "interface"):
        table.add_column(column, overflow="fold")
    for card in cards:
        skills = "\n".join(f"{s.id}: {s.description.splitlines()[0]}" for s in card.skills)
        iface = card.supported_interfaces[0]
        table.add_row(card.name, card.description.splitlines()[0], skills, iface.url)
    console.print(table)


app.add_typer(
    tools_app,
    name="tools",
    help="Tool definitions: pins, poisoning findings, approvals and rug-pull diffs.",
)
app.add_typer(
    audit_app,
    name="audit",
    help="The hash-chained audit log of security decisions: verify it.",
)

app.command()(serve)
app.command()(runs)
app.command()(resume)
app.command()(approve)
app.command()(trace)
app.command()(replay)
app.command()(dashboard)


def main() -> None:
    app()
