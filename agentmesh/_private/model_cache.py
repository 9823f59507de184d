"""The model services' response cache (see :class:`agentmesh.models.ModelCache`).

It lives in the model service, not in its callers: every agent replica, on any node, and the
driver's planner share one cache per model, and a hit costs one Ray call instead of a
generation. The key is the SHA-256 of the weights digest, the knowledge version and the whole
request as canonical JSON, so any change to the weights, the prompt, a parameter, the tools or
the schema misses. In memory, least recently used first out: a restarted service starts cold.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from agentmesh.inference import GenerateRequest, GenerateResponse
from agentmesh.models import ModelCache

__all__ = ["ResponseCache"]


class ResponseCache:
    """One model service's cache of responses by request."""

    def __init__(self, settings: ModelCache, digest: str) -> None:
        self.settings = settings
        self.digest = digest
        self._entries: OrderedDict[str, GenerateResponse] = OrderedDict()

    def key(self, request: GenerateRequest) -> str | None:
        """The request's key, or None when it is not to be cached (a sampled call, unless
        the settings say so)."""
        if request.temperature > 0 and not self.settings.sampled:
            return None
        text = request.model_dump_json()  # fields in declaration order: canonical enough
        material = f"{self.digest}\n{self.settings.knowledge_version}\n{text}"
        return hashlib.sha256(material.encode()).hexdigest()

    def get(self, key: str) -> GenerateResponse | None:
        response = self._entries.get(key)
        if response is not None:
            self._entries.move_to_end(key)
        return response

    def put(self, key: str, response: GenerateResponse) -> None:
        self._entries[key] = response
        self._entries.move_to_end(key)
        while len(self._entries) > self.settings.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
