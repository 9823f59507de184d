"""Configuration of the tool plane that the mesh applies to every MCP tool call."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ToolLimits"]


class ToolLimits(BaseModel):
    """Bounds and trust settings for every tool call through the mesh.

    Args:
        max_argument_bytes: larger arguments fail with ToolArgumentsError.
        max_result_bytes: larger results are refused with ToolResultTooLargeError.
        call_timeout_s: a call running longer fails with ToolError.
        trust_on_first_use: pin a new, unflagged tool definition at first sight; off, every
            new tool waits for ``agentmesh tools approve``.
        pins_path: the pin store (default: $AGENTMESH_STATE_DIR or ./.agentmesh).
        relist_interval_s: how old a server's tool listing may get before a call re-lists it,
            so a definition changed on a live session (a rug pull) is caught; 0 re-lists
            before every call.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_argument_bytes: int = Field(default=64_000, gt=0)
    max_result_bytes: int = Field(default=1_000_000, gt=0)
    call_timeout_s: float = Field(default=60.0, gt=0)
    trust_on_first_use: bool = True
    pins_path: str | None = None
    relist_interval_s: float = Field(default=30.0, ge=0)
