"""``agentmesh tools``: list, approve and diff MCP tool definitions against the pin store.

The commands connect to the MCP servers directly (no Ray), list what they offer now, and
compare it with the pins (:mod:`agentmesh._private.tool_vetting`). ``list`` only reads the
store unless ``--tofu`` is given; ``approve`` pins the current definition as the OS user.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentmesh._private.tool_vetting import PinStore, ToolAssessment, ToolStatus
from agentmesh.errors import AgentMeshError
from agentmesh.protocols.mcp import McpClientPool, McpServerConfig, ToolInfo, unsandboxed_servers

__all__ = ["make_tools_app", "tools_app"]

ServersFn = Callable[[], Sequence[McpServerConfig]]
PinsOption = Annotated[
    Path | None,
    typer.Option(
        "--pins",
        help="The pin file (default: $AGENTMESH_STATE_DIR/tool-pins.json, else "
        "./.agentmesh/tool-pins.json).",
    ),
]
_STYLE = {"approved": "green", "new": "yellow", "changed": "red", "flagged": "magenta"}


def _demo_servers() -> Sequence[McpServerConfig]:
    from agentmesh.examples.demo import demo_servers  # imports the agents: only when run

    return demo_servers()


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 120, highlight=False)


async def _list(servers: Sequence[McpServerConfig]) -> list[ToolInfo]:
    async with McpClientPool(servers) as pool:
        return pool.tools()


@contextlib.contextmanager
def _errors() -> Iterator[Console]:
    """A console; an agentmesh error (a server that will not start, a bad pin file) exits 1."""
    console = _console()
    try:
        yield console
    except AgentMeshError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


def warn_unsandboxed(console: Console, servers: Sequence[McpServerConfig]) -> None:
    """Say loudly which stdio servers run outside the sandbox (an explicit opt-out)."""
    for name in unsandboxed_servers(servers):
        console.print(
            f"[bold yellow]warning:[/bold yellow] MCP server {escape(name)!r} runs UNSANDBOXED "
            "(unsandboxed=True): it can read, write and reach whatever this user can"
        )


def _connect(servers: ServersFn, console: Console) -> dict[str, ToolInfo]:
    configs = servers()
    warn_unsandboxed(console, configs)
    return {t.qualified_name: t for t in asyncio.run(_list(configs))}


def _unknown(console: Console, name: str, tools: dict[str, ToolInfo]) -> typer.Exit:
    known = ", ".join(sorted(tools))
    console.print(f"[red]error:[/red] no server offers {escape(name)}; known: {escape(known)}")
    return typer.Exit(1)


def _table(assessments: Sequence[ToolAssessment]) -> Table:
    table = Table(title="MCP tools")
    for column in ("tool", "status", "hash", "offered", "findings"):
        table.add_column(column, overflow="fold")
    for a in assessments:
        style = _STYLE[a.status]
        findings = ", ".join(f"{f.rule} ({f.score:.2f})" for f in a.findings) or "-"
        table.add_row(
            a.qualified_name,
            f"[{style}]{a.status}[/{style}]",
            a.hash[:12],
            "yes" if a.offered else "no",
            escape(findings),
        )
    return table


def make_tools_app(servers: ServersFn = _demo_servers) -> typer.Typer:
    """The ``tools`` sub-app over the MCP servers ``servers()`` returns."""
    app = typer.Typer(
        no_args_is_help=True,
        add_completion=False,
        help="Review MCP tool definitions: pinned (approved), new, changed (rug pull), flagged.",
    )

    @app.command("list")
    def list_(
        pins: PinsOption = None,
        tofu: Annotated[
            bool, typer.Option("--tofu", help="Pin new unflagged tools, as the gateway would.")
        ] = False,
    ) -> None:
        """Connect to the servers and show each tool's status against the pins."""
        with _errors() as console:
            store = PinStore(pins)
            tools = list(_connect(servers, console).values())
            console.print(_table(store.assess(tools, trust_on_first_use=tofu)))
            console.print(f"pins: {escape(str(store.path))}")

    @app.command()
    def approve(
        qualified_name: Annotated[
            str | None, typer.Argument(help="The tool, as server.tool.")
        ] = None,
        all_: Annotated[
            bool,
            typer.Option("--all", help="Approve every new or changed tool that is not flagged."),
        ] = False,
        pins: PinsOption = None,
    ) -> None:
        """Pin a tool's current definition as approved by you (re-approving a changed one)."""
        with _errors() as console:
            if all_ == (qualified_name is not None):
                console.print("[red]error:[/red] give one tool (server.tool) or --all")
                raise typer.Exit(2)
            store, by = PinStore(pins), getpass.getuser()
            tools = _connect(servers, console)
            if qualified_name is not None and qualified_name not in tools:
                raise _unknown(console, qualified_name, tools)
            assessed = store.assess(list(tools.values()), trust_on_first_use=False)
            pending = [a for a in assessed if a.status != ToolStatus.APPROVED]
            if qualified_name is not None:
                chosen = [a for a in assessed if a.qualified_name == qualified_name]
            else:
                chosen = [a for a in pending if not a.flagged]
                for a in pending:
                    if a.flagged:
                        console.print(f"skipped {a.qualified_name}: flagged; approve it by name")
            for a in chosen:
                if a.findings:
                    rules = ", ".join(f.rule for f in a.findings)
                    console.print(f"[magenta]warning:[/magenta] {a.qualified_name}: {rules}")
                pin = store.approve(tools[a.qualified_name], by=by)
                console.print(f"approved {a.qualified_name} ({pin.hash[:12]}) by {escape(by)}")
            if not chosen:
                console.print("nothing to approve")

    @app.command()
    def diff(qualified_name: str, pins: PinsOption = None) -> None:
        """Show how a tool's current definition differs from its pinned one."""
        with _errors() as console:
            store = PinStore(pins)
            tools = _connect(servers, console)
            if qualified_name not in tools:
                raise _unknown(console, qualified_name, tools)
            pin, text = store.get(qualified_name), store.diff(tools[qualified_name])
            if pin is None:
                console.print(f"{qualified_name} is not pinned (new): `approve` pins it")
            elif not text:
                by = escape(pin.approved_by)
                console.print(f"{qualified_name} is unchanged since {by} approved it")
            else:
                typer.echo(text)

    return app


tools_app = make_tools_app()
