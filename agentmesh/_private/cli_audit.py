"""``agentmesh audit verify``: check a hash-chained audit log (a file, or a directory of them).

Exit codes are for scripts and CI: 0 intact (a torn last line from a crash is a warning, not
tampering), 1 tampered (or an anchored log gone, or an unkeyed log where a key was given),
2 a usage error (no such path, an unreadable key or anchor file, a keyed log and no key).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentmesh.audit import AuditHead, AuditReport, verify_audit
from agentmesh.errors import AgentMeshError

__all__ = ["audit_app"]

audit_app = typer.Typer(no_args_is_help=True, add_completion=False)


@audit_app.callback()
def _audit() -> None:
    """The tamper-evident audit log of every security decision."""


_HEADS = TypeAdapter(list[AuditHead] | AuditHead)
_USAGE = 2


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read the {what} {path}: {exc.strerror}") from None


def _heads(path: Path | None) -> list[AuditHead]:
    if path is None:
        return []
    try:
        heads = _HEADS.validate_json(_read(path, "anchor file"))
    except ValidationError as exc:
        raise typer.BadParameter(f"{path} holds no audit heads: {exc.errors()[0]['msg']}") from None
    return heads if isinstance(heads, list) else [heads]


def _print(console: Console, report: AuditReport) -> None:
    table = Table(title="Audit logs")
    for column in ("log", "entries", "status"):
        table.add_column(column, overflow="fold")
    for log in report.logs:
        status = "[green]intact[/green]" if log.ok else f"[red]{log.issue}[/red]"
        if log.torn_tail and log.ok:
            status += " [yellow](torn last line)[/yellow]"
        table.add_row(escape(Path(log.path).name), str(log.entries), status)
    console.print(table)
    if not report.logs:
        console.print("[yellow]no audit logs (*.jsonl) there[/yellow]")
    for log in report.logs:
        if log.torn_tail and log.ok:  # a bad log says it in its problem
            console.print(
                f"[yellow]warning:[/yellow] {escape(log.path)}: {escape(log.problem or '')}"
            )
    if report.ok:
        console.print(f"[green]intact:[/green] {report.entries} entries in {len(report.logs)} logs")
    else:
        where = f"entry #{report.first_bad_seq}" if report.first_bad_seq is not None else "a log"
        console.print(f"[bold red]TAMPERED[/bold red] at {where}: {escape(report.problem or '')}")


@audit_app.command()
def verify(
    path: Annotated[Path, typer.Argument(help="An audit log file, or a directory of them.")],
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file", help="The HMAC key of keyed logs (surrounding whitespace stripped)."
        ),
    ] = None,
    anchor: Annotated[
        Path | None,
        typer.Option(
            "--anchor",
            help="A JSON file of anchored heads (Mesh.audit_heads()): "
            "also detects a cut-off tail and a rewrite.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check that no entry of an audit log was edited, removed, inserted or reordered."""
    console = Console(width=None if sys.stdout.isatty() else 120, highlight=False)
    key = _read(key_file, "key file").strip() if key_file is not None else None
    try:
        report = verify_audit(path, key=key, heads=_heads(anchor))
    except AgentMeshError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(_USAGE) from None
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        _print(console, report)
    if report.issue == "key_required":
        raise typer.Exit(_USAGE)
    raise typer.Exit(0 if report.ok else 1)
