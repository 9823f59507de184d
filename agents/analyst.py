"""Analyst: outlines a topic and reviews drafts."""

from __future__ import annotations

import re

from pydantic import BaseModel

from agentmesh.agent import Agent, Resources, skill

__all__ = ["Analyst", "Review"]


class Review(BaseModel):
    words: int
    issues: list[str]


class Analyst(Agent):
    """Outlines a topic into sections and reviews drafts for length and missing sections."""

    name = "analyst"
    # On a cluster the demo's agents go to different nodes (on one machine, all to it).
    resources = Resources(strategy="spread")
    count_tool = "docs.word_count"
    tools = (count_tool,)

    @skill(tags=("analysis",))
    def outline(self, topic: str, sections: int = 3) -> list[str]:
        """Propose section headings for a brief on a topic.

        Args:
            topic: the brief's subject.
            sections: how many headings to propose (1-5).
        """
        headings = ["Context", "How it works", "Risks and safeguards", "Costs", "Next steps"]
        subject = topic.strip().rstrip(".") or "the topic"
        return [f"{h}: {subject}" for h in headings[: max(1, min(sections, 5))]]

    @skill(tags=("analysis",))
    async def review(self, text: str, outline: list[str]) -> Review:
        """Review a draft: count its words (with the word-count tool) and check its sections.

        Args:
            text: the draft.
            outline: the section headings it should contain.
        """
        counted = await self.use_tool(self.count_tool, text=text)
        words = int(re.sub(r"\D", "", counted.text) or 0)
        issues = [f"missing section {h!r}" for h in outline if h.split(":")[0] not in text]
        if words < 40:
            issues.append(f"too short: {words} words")
        return Review(words=words, issues=issues)
