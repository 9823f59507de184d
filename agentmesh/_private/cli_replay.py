"""``agentmesh replay RUN_ID [--with FACTORY]``: a recorded run again, on its recorded answers.

Without ``--with`` the run is replayed on its own mesh (the factory it recorded, or
``--mesh``) and the command is a check: exit 1 when the replay differs from the recording.
With ``--with package.module:function`` it is replayed on that changed mesh, and the command
shows where the execution diverged (exit 0: a divergence is the answer asked for).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from agentmesh._private.cli_runs import MeshOption, StoreOption, open_mesh
from agentmesh._private.cli_trace import RecordingsOption
from agentmesh._private.record_sqlite import SqliteRecorder
from agentmesh.errors import AgentMeshError
from agentmesh.replay import ReplayReport

__all__ = ["replay"]

console = Console(width=None if sys.stdout.isatty() else 120)


def _show(report: ReplayReport) -> None:
    c = report.counts
    if report.identical:
        console.print(
            f"[green]identical[/green]: replay {report.replay_run_id} did what run "
            f"{report.run_id} recorded",
            highlight=False,
        )
    else:
        console.print(
            f"[yellow]diverged[/yellow]: replay {report.replay_run_id} of run {report.run_id}, "
            f"{len(report.divergences)} difference(s)",
            highlight=False,
        )
        for n, divergence in enumerate(report.divergences):
            lead = "first" if n == 0 else "then"
            console.print(f"  {lead}: {escape(divergence.describe())}", highlight=False)
    console.print(
        f"served from the recording: {c.served_model_calls} model call(s), "
        f"{c.served_tool_calls} tool call(s); live: {c.live_model_calls} model call(s), "
        f"{c.live_tool_calls} tool call(s); recorded answers unused: {c.unused}",
        highlight=False,
    )
    if report.error is not None:
        console.print(f"the replay failed: {report.error.type}: {escape(report.error.message)}")


def replay(
    run_id: Annotated[str, typer.Argument(help="The recorded run (see `agentmesh runs`).")],
    changed: Annotated[
        str | None,
        typer.Option(
            "--with",
            help="package.module:function building a changed mesh (a prompt, a model, a "
            "policy, an agent's code): replay on it and show where it diverged.",
        ),
    ] = None,
    mesh: MeshOption = None,
    store: StoreOption = None,
    recordings: RecordingsOption = None,
    live_effects: Annotated[
        bool,
        typer.Option(
            "--live-effects",
            help="Let side-effecting tool calls the recording lacks run for real.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run a recorded run again with every model and tool answer served from its recording,
    and compare: the DAG, the messages, the calls and the final result.

    Without --with it checks the run is reproducible (exit 1 if the replay differs); with
    --with it shows where a changed mesh diverged, unchanged calls still served from the
    recording and changed ones made live.
    """
    try:
        the_mesh = open_mesh(run_id, store, changed or mesh, finished_ok=True)
        if recordings is not None:
            the_mesh.recorder = SqliteRecorder(recordings)
    except AgentMeshError as exc:
        console.print(f"[red]{type(exc).__name__}:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None

    async def main() -> ReplayReport:
        async with the_mesh:
            return await the_mesh.replay(run_id, live_effects=live_effects)

    try:
        report = asyncio.run(main())
    except AgentMeshError as exc:
        console.print(f"[red]{type(exc).__name__}:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        _show(report)
    if changed is None and not report.identical:
        raise typer.Exit(1)
