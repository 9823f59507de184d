"""The layered prompt-injection detector: normalisation, rules, then a learned classifier.

Why layers: the rules (``scanner.py``) are fast, explainable and see every byte, but miss
paraphrases; the classifier (``classifier.py``) generalises over wording but reads one window
of the text and cannot say which words it disliked. Each layer's evidence stands on its own:
the text is flagged when the rules' score reaches the policy's ``threshold`` or the
classifier's reaches ``classifier_threshold``. ``Detection.score`` is the larger of the two (the
classifier's output is calibrated so that its shipped operating point is 0.5, the default of
both thresholds).

The learned layer is optional: off in a policy (``scanning.classifier: false``), or unavailable
here (no torch, no model package, no weights), the detector runs its rules alone and says so in
its reasons, never silently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentmesh._private import classifier
from agentmesh._private.scanner import Finding, Inspection, base_rule, inspect, score
from agentmesh.errors import UserError

if TYPE_CHECKING:
    from agentmesh.security import ScanPolicy

__all__ = ["Detection", "Layer", "Provenance", "detect"]

#: Where the text came from; recorded, and ``agentmesh.scan`` maps it to the policy's action.
Provenance = Literal["message", "reply", "tool_call", "tool_result", "document", "unknown"]
Layer = Literal["normalise", "rules", "classifier"]


class Detection(BaseModel):
    """The detector's verdict on one text: a score, whether it is flagged, and why.

    ``verdict`` is the policy's action for the text's provenance when flagged ("allow"
    otherwise). ``reasons`` name rules, layers and scores, never the text itself (they travel
    in error messages); the matched excerpts are in ``findings``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    score: float = Field(ge=0.0, le=1.0)
    flagged: bool
    verdict: Literal["allow", "block", "quarantine"]
    rules_score: float = Field(ge=0.0, le=1.0)
    classifier_score: float | None = Field(default=None, ge=0.0, le=1.0)
    threshold: float
    classifier_threshold: float
    provenance: Provenance
    layers: list[Layer]
    reasons: list[str]
    findings: list[Finding] = []


def _settings(scanning: ScanPolicy | None) -> ScanPolicy:
    from agentmesh.security import ScanPolicy  # security imports this module's users

    return scanning if scanning is not None else ScanPolicy(classifier=True)


def _rules_reason(findings: list[Finding], value: float, threshold: float) -> str:
    if not findings:
        return f"rules: nothing matched (score 0.00 < {threshold:.2f})"
    named = ", ".join(f"{f.rule} ({f.score:.2f})" for f in findings[:3])
    more = f" and {len(findings) - 3} more" if len(findings) > 3 else ""
    relation = ">=" if value >= threshold else "<"
    return f"rules: {named}{more}; score {value:.2f} {relation} {threshold:.2f}"


def detect(
    text: str, *, provenance: Provenance = "unknown", scanning: ScanPolicy | None = None
) -> Detection:
    """Run the layers on ``text`` under ``scanning`` (default: the defaults, classifier on)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    if provenance not in _ACTION:
        raise UserError(f"unknown provenance {provenance!r}; expected one of {sorted(_ACTION)}")
    settings = _settings(scanning)
    seen = inspect(text, want_text=settings.classifier)  # only the classifier reads the text
    off = set(settings.disabled_rules)
    kept = [f for f in seen.findings if base_rule(f.rule) not in off and f.category not in off]
    seen = Inspection(findings=kept, text=seen.text, views=seen.views)
    rules_value = score(kept)
    layers: list[Layer] = ["normalise", "rules"]
    reasons = []
    if seen.views:
        reasons.append("normalised: " + ", ".join(_VIEW_NAMES.get(v, v) for v in seen.views))
    reasons.append(_rules_reason(kept, rules_value, settings.threshold))
    learned: float | None = None
    if not settings.classifier:
        reasons.append("classifier: off in this policy (rules only)")
    else:
        layer = classifier.load()
        if isinstance(layer, classifier.Unavailable):
            reasons.append(f"classifier: unavailable, rules only ({layer.reason})")
        else:
            learned = layer.probability(seen)
            layers.append("classifier")
            relation = ">=" if learned >= settings.classifier_threshold else "<"
            reasons.append(
                f"classifier: {learned:.2f} {relation} {settings.classifier_threshold:.2f} "
                f"(MiniLM over up to {layer.weights.max_segments} sentences, with the rule "
                "scores)"
            )
    flagged = rules_value >= settings.threshold or (
        learned is not None and learned >= settings.classifier_threshold
    )
    action = getattr(settings, _ACTION[provenance]) if flagged else "allow"
    return Detection(
        score=max(rules_value, learned or 0.0),
        flagged=flagged,
        verdict=str(action),  # type: ignore[arg-type]
        rules_score=rules_value,
        classifier_score=learned,
        threshold=settings.threshold,
        classifier_threshold=settings.classifier_threshold,
        provenance=provenance,
        layers=layers,
        reasons=reasons,
        findings=kept,
    )


#: The policy setting whose action applies to a flagged text of each provenance; content of
#: unknown origin is treated like a tool's result (untrusted, kept for review).
_ACTION: dict[str, str] = {
    "message": "on_message",
    "reply": "on_reply",
    "tool_call": "on_tool_arguments",
    "tool_result": "on_tool_result",
    "document": "on_tool_result",
    "unknown": "on_tool_result",
}
_VIEW_NAMES = {
    "yaml": "YAML folded",
    "markup": "markup folded",
    "base64": "base64 decoded",
    "hex": "hex decoded",
    "url": "URL-encoding decoded",
    "rot13": "rot13 decoded",
}
