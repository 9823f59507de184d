"""Researcher: gathers sources on a topic from a document-search MCP server."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from agentmesh.agent import Agent, Resources, skill
from agentmesh.errors import SecurityDenied
from agentmesh.protocols.mcp import ToolResult

__all__ = ["Notes", "Researcher", "Skipped", "Source"]


class Source(BaseModel):
    doc_id: str
    title: str
    text: str


class Skipped(BaseModel):
    """A document the researcher could not use, and why (nothing is dropped silently)."""

    doc_id: str
    reason: str
    quarantine_id: str | None = None


class Notes(BaseModel):
    topic: str
    sources: list[Source]
    skipped: list[Skipped]


def _structured_list(result: ToolResult) -> list[dict[str, Any]]:
    """MCP wraps a list-returning tool's output as {"result": [...]}."""
    data = result.structured
    if isinstance(data, dict) and "result" in data:
        data = data["result"]
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


class Researcher(Agent):
    """Gathers sources on a topic from a document-search MCP server.

    Reads each hit in full; a document the security actor refuses (for example a planted
    prompt injection it quarantines) is listed under ``skipped`` with the reason.
    """

    name = "researcher"
    # On a cluster the demo's agents go to different nodes (on one machine, all to it).
    resources = Resources(strategy="spread")
    search_tool = "docs.search_docs"
    read_tool = "docs.read_doc"
    tools = (search_tool, read_tool)

    @skill(tags=("research",), examples=("running agents at the edge",))
    async def gather(self, topic: str, limit: int = 3) -> Notes:
        """Search the documents for a topic and read the best hits.

        Args:
            topic: what to look for.
            limit: how many hits to read.
        """
        hits = _structured_list(await self.use_tool(self.search_tool, query=topic, limit=limit))
        sources: list[Source] = []
        skipped: list[Skipped] = []
        for hit in hits:
            doc_id = str(hit.get("doc_id"))
            try:
                doc = await self.use_tool(self.read_tool, doc_id=doc_id)
            except SecurityDenied as exc:
                skipped.append(
                    Skipped(
                        doc_id=doc_id,
                        # the rule names, not the reason: it may quote what was refused
                        reason=f"{exc.decision.verdict} by the security actor: "
                        + ", ".join(f.rule for f in exc.decision.findings),
                        quarantine_id=exc.decision.quarantine_id,
                    )
                )
                continue
            sources.append(Source(doc_id=doc_id, title=str(hit.get("title", "")), text=doc.text))
        return Notes(topic=topic, sources=sources, skipped=skipped)
