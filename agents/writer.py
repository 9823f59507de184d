"""Writer: composes a brief from research notes with a local model."""

from __future__ import annotations

from pydantic import BaseModel

from agentmesh.agent import Agent, Resources, skill
from agentmesh.agents.analyst import Review
from agentmesh.agents.researcher import Notes

__all__ = ["Brief", "Writer"]


class Brief(BaseModel):
    title: str
    summary: str
    summary_model: str
    body: str
    sources: list[str]
    review: Review


class Writer(Agent):
    """Composes a short brief from research notes and an outline, using a local model.

    Asks the analyst to review the draft (an agent-to-agent message the policy must allow).
    """

    name = "writer"
    # On a cluster the demo's agents go to different nodes (on one machine, all to it).
    resources = Resources(strategy="spread")
    model = "local"

    @skill(tags=("writing",))
    async def compose(self, topic: str, notes: Notes, outline: list[str]) -> Brief:
        """Write a brief on a topic from research notes, one section per outline heading.

        Args:
            topic: the brief's subject.
            notes: the researcher's notes.
            outline: section headings, in order.
        """
        facts = " ".join(source.text.split(". ")[0] + "." for source in notes.sources)
        # A base model continues text rather than following instructions: give it a sentence
        # to finish.
        lead = f"In short, {topic} means"
        completion = await self.generate(f"{facts}\n\n{lead}", max_tokens=40, stop=["\n", "\n\n"])
        summary = f"{lead}{completion.text.rstrip()}"
        sections = [
            f"{heading}\n{source.text}"
            for heading, source in zip(outline, notes.sources, strict=False)
        ]
        body = "\n\n".join(sections)
        review = Review.model_validate(
            await self.call("analyst", "review", text=body, outline=outline)
        )
        return Brief(
            title=f"Brief: {topic}",
            summary=summary,
            summary_model=f"{completion.backend}:{completion.model}",
            body=body,
            sources=[source.doc_id for source in notes.sources],
            review=review,
        )
