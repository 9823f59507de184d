"""``agentmesh runs`` and ``agentmesh resume``: the run store from the command line.

``resume`` runs in a new process, so it needs the run's mesh again: the run records the
``module:function`` its mesh was built by (``Mesh(factory=...)``), and ``--mesh`` overrides
it. The current directory is importable, as under ``python -m``, so a factory in the
project a command is run from is found. ``--store`` names a SQLite store, used by the mesh
too; without it, the run's factory is looked up in the default SQLite store, and with
``--mesh`` and no ``--store`` the mesh's own store (whatever the factory configured) is used.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from agentmesh._private.durable import check_factory
from agentmesh._private.run_sqlite import SqliteRunStore
from agentmesh.errors import (
    AgentMeshError,
    ConfigError,
    RunFailedError,
    RunFinishedError,
    RunPaused,
)
from agentmesh.mesh import Mesh
from agentmesh.results import RunResult
from agentmesh.runs import RunState, RunSummary

__all__ = ["MeshOption", "StoreOption", "approve", "build_mesh", "open_mesh", "resume", "runs"]

console = Console(width=None if sys.stdout.isatty() else 120)

StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store",
        help="The run store, a SQLite file (default: $AGENTMESH_STATE_DIR/runs.db, else "
        "./.agentmesh/runs.db).",
    ),
]


def _fail(exc: AgentMeshError) -> typer.Exit:
    console.print(f"[red]{type(exc).__name__}:[/red] {exc}", highlight=False)
    return typer.Exit(1)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _usage(s: RunSummary) -> str:
    """Tokens processed, then cache hits of calls and the tokens they saved."""
    if not s.model_calls:
        return "-"
    hits = f"{s.cache_hits}/{s.model_calls} cached" if s.cache_hits else "none cached"
    saved = f", {s.saved_tokens} saved" if s.saved_tokens else ""
    cost = f", cost {s.cost:.4g}" if s.cost else ""
    return f"{s.tokens} ({hits}{saved}{cost})"


def _runs_table(summaries: list[RunSummary]) -> Table:
    table = Table(title="Runs")
    for column in ("run", "state", "goal", "nodes done", "model tokens", "created", "updated"):
        table.add_column(column, overflow="fold")
    styles = {
        RunState.SUCCEEDED: "green",
        RunState.FAILED: "red",
        RunState.RUNNING: "yellow",
        RunState.PAUSED: "magenta",
    }
    for s in summaries:
        style = styles[s.state]
        goal = s.goal if len(s.goal) <= 60 else s.goal[:57] + "..."
        table.add_row(
            s.run_id,
            f"[{style}]{s.state}[/{style}]",
            goal,
            f"{s.nodes_done}/{s.nodes_total}",
            _usage(s),
            _when(s.created_at),
            _when(s.updated_at),
        )
    return table


def runs(
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
    store: StoreOption = None,
) -> None:
    """List the runs in the run store with their state, newest first.

    A run shown running whose process is gone was cut off: agentmesh resume RUN_ID.
    """
    try:
        summaries = SqliteRunStore(store).list_runs()
    except AgentMeshError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json") for s in summaries], indent=2))
    else:
        console.print(_runs_table(summaries))


def build_mesh(factory: str) -> Mesh:
    """The Mesh ``package.module:function`` returns (called with no arguments)."""
    check_factory(factory)
    module_name, _, name = factory.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"mesh factory {factory!r}: cannot import {module_name!r}: {exc}"
        ) from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigError(f"mesh factory {factory!r}: {module_name} has no function {name!r}")
    mesh = function()
    if not isinstance(mesh, Mesh):
        raise ConfigError(f"mesh factory {factory!r} returned {type(mesh).__name__}, not a Mesh")
    return mesh


#: The exit status of ``resume`` and ``approve`` when the run is paused again (not a failure).
PAUSED_EXIT = 3

MeshOption = Annotated[
    str | None,
    typer.Option(
        "--mesh",
        help="package.module:function building the run's mesh (default: the factory the "
        "run recorded).",
    ),
]


def open_mesh(
    run_id: str, store: Path | None, mesh: str | None, *, finished_ok: bool = False
) -> Mesh:
    """The run's mesh (its recorded factory, or ``--mesh``) on ``--store`` if given; the run
    is looked up first, so a wrong id or (unless ``finished_ok``) a finished run fails before
    any Ray starts."""
    factory = mesh
    if store is not None or mesh is None:
        info = SqliteRunStore(store).get_run(run_id)
        if info.state is RunState.SUCCEEDED and not finished_ok:
            raise RunFinishedError(run_id)
        factory = mesh or info.factory
    if factory is None:
        raise ConfigError(
            f"run {run_id!r} records no mesh factory: pass --mesh package.module:function"
        )
    the_mesh = build_mesh(factory)
    if store is not None:
        the_mesh.run_store = SqliteRunStore(store)
    return the_mesh


def _finish(work: Callable[[Mesh], Awaitable[RunResult]], the_mesh: Mesh) -> None:
    """Run ``work`` on the started mesh and show how the run ended."""
    from agentmesh.cli import _dag_table  # the cli module registers these commands

    async def main() -> RunResult:
        async with the_mesh:
            return await work(the_mesh)

    try:
        result = asyncio.run(main())
    except RunPaused as exc:
        console.print(_dag_table(exc.result))
        console.print(f"[magenta]paused:[/magenta] {exc}", highlight=False)
        raise typer.Exit(PAUSED_EXIT) from None
    except RunFailedError as exc:
        console.print(_dag_table(exc.result))
        raise _fail(exc) from None
    except AgentMeshError as exc:
        raise _fail(exc) from None
    console.print(_dag_table(result))
    console.rule("Result")
    console.print_json(json.dumps(result.output))


def resume(
    run_id: Annotated[str, typer.Argument(help="The run to finish (see `agentmesh runs`).")],
    store: StoreOption = None,
    mesh: MeshOption = None,
    max_retries: Annotated[
        int | None, typer.Option(help="Re-runs of a node after a run failure.")
    ] = None,
) -> None:
    """Finish a run that was cut off or that failed.

    Nodes that succeeded keep their outputs; the rest run again, and side-effecting tool calls
    already made are not repeated (their recorded results come back). Exits 3 if the run
    pauses (a step waits for approval: agentmesh approve).
    """
    try:
        the_mesh = open_mesh(run_id, store, mesh)
    except AgentMeshError as exc:
        raise _fail(exc) from None
    _finish(lambda m: m.resume_run(run_id, max_retries=max_retries), the_mesh)


def approve(
    run_id: Annotated[str, typer.Argument(help="The paused run (see `agentmesh runs`).")],
    step: Annotated[str, typer.Argument(help="The step whose question to answer.")],
    deny: Annotated[bool, typer.Option("--deny", help="Answer no: the step fails.")] = False,
    store: StoreOption = None,
    mesh: MeshOption = None,
) -> None:
    """Answer a paused run's approval question, then resume the run.

    Yes (the default) runs the step again with its question approved; --deny fails it with
    ApprovalDenied. Exits 3 if the run pauses again (another step waits).
    """
    try:
        the_mesh = open_mesh(run_id, store, mesh)
    except AgentMeshError as exc:
        raise _fail(exc) from None
    _finish(lambda m: m.approve_run(run_id, step, approve=not deny), the_mesh)
