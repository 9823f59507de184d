"""Prompt-injection detection as a library call, outside any mesh: :func:`scan`.

The same layered detector the security actor runs on every message and tool result
(normalisation, weighted rules, and a learned classifier over MiniLM embeddings when the
``torch`` extra is installed), for a text you hold: a fetched web page, a document before it
goes into a prompt, a tool's output in your own agent loop.
"""

from __future__ import annotations

from agentmesh._private.detector import Detection, Provenance, detect
from agentmesh.security import Policy, ScanPolicy

__all__ = ["Detection", "Provenance", "scan"]


def scan(
    text: str, *, provenance: Provenance = "unknown", policy: Policy | ScanPolicy | None = None
) -> Detection:
    """Score ``text`` for prompt injection and say why.

    ``policy`` (a whole :class:`Policy` or its ``scanning`` part) sets the thresholds, the
    ignored rules and whether the learned layer runs; without one, the defaults apply with the
    learned layer on. ``provenance`` picks the policy's action for a flagged text
    (``Detection.verdict``): "message" -> ``on_message``, "reply" -> ``on_reply``,
    "tool_call" -> ``on_tool_arguments``, anything else -> ``on_tool_result``. A policy with
    scanning off is honoured (nothing runs, and the reasons say so). Raises TypeError for a
    text that is not a str.
    """
    scanning = policy.scanning if isinstance(policy, Policy) else policy
    if scanning is not None and not scanning.enabled:
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        return Detection(
            score=0.0,
            flagged=False,
            verdict="allow",
            rules_score=0.0,
            threshold=scanning.threshold,
            classifier_threshold=scanning.classifier_threshold,
            provenance=provenance,
            layers=[],
            reasons=["content scanning is off in this policy"],
        )
    return detect(text, provenance=provenance, scanning=scanning)
