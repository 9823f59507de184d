"""Ready specialised agents shipped with agentmesh (they power the demo, too)."""

from agentmesh.agents.analyst import Analyst, Review
from agentmesh.agents.researcher import Notes, Researcher, Skipped, Source
from agentmesh.agents.writer import Brief, Writer

__all__ = ["Analyst", "Brief", "Notes", "Researcher", "Review", "Skipped", "Source", "Writer"]
