"""``agentmesh trace RUN_ID`` (a run's flight recording in the terminal) and
``agentmesh dashboard`` (the runs and their recordings on a local web page).

Two views of the same events: the causal tree (each node, the message that ran it, and under
it what that caused: the vets, the agents' own calls to other agents, models and tools), and
the timeline (every event in the order recorded, its time since the run started). ``--json``
prints the events themselves, for other tools.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from agentmesh._private.dashboard import serve_dashboard
from agentmesh._private.record_sqlite import SqliteRecorder
from agentmesh._private.run_sqlite import SqliteRunStore
from agentmesh.errors import AgentMeshError
from agentmesh.recording import RunEvent

__all__ = ["RecordingsOption", "dashboard", "trace"]

console = Console(width=None if sys.stdout.isatty() else 120)

RecordingsOption = Annotated[
    Path | None,
    typer.Option(
        "--recordings",
        help="The recording file (default: $AGENTMESH_STATE_DIR/recordings.db, else "
        "./.agentmesh/recordings.db).",
    ),
]


def _tree(run_id: str, events: list[RunEvent]) -> Tree:
    root = Tree(f"[bold]run {escape(run_id)}[/bold]")
    children: dict[str | None, list[RunEvent]] = defaultdict(list)
    known = {e.id for e in events}
    for event in events:
        children[event.parent if event.parent in known else None].append(event)

    def grow(branch: Tree, event: RunEvent) -> None:
        who = f"[cyan]{escape(event.agent)}[/cyan] " if event.agent else ""
        why = f" [dim]({escape(event.why)})[/dim]" if event.why else ""
        twig = branch.add(f"{who}{escape(event.describe())}{why}")
        for child in children.get(event.id, []):
            grow(twig, child)

    for event in children[None]:
        grow(root, event)
    return root


def trace(
    run_id: Annotated[str, typer.Argument(help="The run to show.")],
    recordings: RecordingsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the events as JSON.")] = False,
) -> None:
    """Show a run's flight recording: its causal tree and its timeline."""
    try:
        events = SqliteRecorder(recordings).events(run_id)
    except AgentMeshError as exc:
        console.print(f"[red]{type(exc).__name__}:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    if not events:
        console.print(f"[red]no recording of run {run_id!r}[/red]", highlight=False)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps([e.model_dump(mode="json") for e in events], indent=2))
        return
    console.print(_tree(run_id, events))
    start = events[0].at
    console.print("[bold]timeline[/bold]")
    for event in events:
        where = f"{event.node or '-':>10} {event.agent or '-':>10}"
        console.print(f"{event.at - start:9.3f}s {where}  {escape(event.describe())}")


def dashboard(
    store: Annotated[
        Path | None,
        typer.Option("--store", help="The run store (default: as agentmesh runs)."),
    ] = None,
    recordings: RecordingsOption = None,
    host: Annotated[str, typer.Option(help="The address to listen on (loopback).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The port to listen on.")] = 8765,
) -> None:
    """Serve a local web page of the runs: each run's DAG, timeline, security decisions, and
    its model calls' prompts and answers."""
    console.print(f"agentmesh dashboard on http://{host}:{port}/ (Ctrl-C stops it)")
    serve_dashboard(SqliteRunStore(store), SqliteRecorder(recordings), host=host, port=port)
