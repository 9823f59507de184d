"""Pins the public API: a change to agentmesh.__all__ must be deliberate."""

from __future__ import annotations

import agentmesh
import agentmesh.agents
import agentmesh.errors

PUBLIC = {
    "USER",
    "ApprovalDenied",
    "ApprovalRequired",
    "Effect",
    "Equals",
    "Matches",
    "OneOf",
    "ToolGrant",
    "ToolLabel",
    "UntrustedArguments",
    "check_tool_call",
    # durable runs: the run store, its records, and their errors
    "LedgerEntry",
    "NodeApproval",
    "NoApprovalPendingError",
    "NodeCheckpoint",
    "RunFinishedError",
    "RunPaused",
    "RunInfo",
    "RunState",
    "RunStore",
    "RunStoreError",
    "RunSummary",
    "SqliteRunStore",
    "UnknownRunError",
    # exfiltration checks outside a mesh
    "OutboundFinding",
    "check_outbound",
    "Label",
    "Trust",
    "Agent",
    "AgentContext",
    "AgentDefinitionError",
    "AgentMeshError",
    "AgentUnavailableError",
    # retries, time limits and circuit breakers of plan nodes and models
    "AgentLostError",
    "BreakerOpenError",
    "BreakerPolicy",
    "BreakerState",
    "CircuitBreaker",
    "NodeTimeoutError",
    "RetryPolicy",
    "BudgetExhausted",
    "CardVerificationError",
    "CircuitOpen",
    "ConfigError",
    "ContentQuarantined",
    "GenerateArgumentsError",
    "InputRequired",
    "Decision",
    "Detection",
    "ErrorInfo",
    "Finding",
    "GatewayAuth",
    "GatewayIdentity",
    # the inference plane's backends, streaming, and the HTTP backend's errors
    "GenerateChunk",
    "OpenAIModel",
    "TorchModel",
    "ModelHTTPError",
    "ModelResponseError",
    "ModelServerError",
    "ModelTimeoutError",
    "ModelUnreachableError",
    "GenerateRequest",
    "GenerateResponse",
    "HttpServer",
    "LlamaCppModel",
    "McpServerConfig",
    "Mesh",
    "MessageBlocked",
    "ModelBackend",
    "ModelError",
    "ModelInfo",
    "ModelNotFoundError",
    "OutputValidationError",
    "ModelPlanner",
    "ModelSpec",
    "NodeRecord",
    "NodeStatus",
    "Plan",
    "PlanRevision",
    "PlanStep",
    "PlacementError",
    "PlanValidationError",
    "Planner",
    "PlanningError",
    "Policy",
    "PolicyError",
    "QuarantineItem",
    "RateLimited",
    "RemoteAgent",
    "RemoteAgentError",
    "Replanner",
    "Resources",
    "RunError",
    "RunFailedError",
    "RunResult",
    "SandboxUnavailableError",
    "ScriptExhaustedError",
    "ScriptedError",
    "ScriptedModel",
    "ScriptedToolCall",
    "SecurityDenied",
    "SecurityMonitor",
    "SkillFailedError",
    "SkillInfo",
    "SkillInputError",
    "SkillOutputError",
    "TaskCanceledError",
    "StdioServer",
    "TaskRetention",
    "TokenAuth",
    "TemplatePlanner",
    "ToolCall",
    "ToolArgumentsError",
    "ToolCallBlocked",
    "ToolCallError",
    "ToolError",
    "ToolNotApprovedError",
    "ToolResultTooLargeError",
    "ToolInfo",
    "ToolLimits",
    "ToolResult",
    "ToolServerDiedError",
    "ToolServerStartError",
    "ToolTimeoutError",
    "ToolSpec",
    "UnknownAgentError",
    "UnknownModelError",
    "UnknownSkillError",
    "UnknownTaskError",
    "UnknownToolError",
    "UserError",
    "Verdict",
    "__version__",
    "build_a2a_app",
    "build_mcp_server",
    "default_model_path",
    "load_policy",
    "redact",
    "scan",
    "serve_mcp",
    "skill",
}


def test_all_is_pinned_and_importable() -> None:
    assert set(agentmesh.__all__) == PUBLIC
    assert len(agentmesh.__all__) == len(PUBLIC)
    for name in agentmesh.__all__:
        assert getattr(agentmesh, name) is not None, name


def test_every_error_has_one_root_and_a_branch() -> None:
    branches = (agentmesh.UserError, agentmesh.RunError, agentmesh.SecurityDenied)
    for name in agentmesh.errors.__all__:
        cls = getattr(agentmesh.errors, name)
        assert issubclass(cls, agentmesh.AgentMeshError), name
        if cls is not agentmesh.AgentMeshError:
            assert issubclass(cls, branches), name
        assert name in agentmesh.__all__, f"{name} is not re-exported"


def test_namespaced_folders() -> None:
    assert agentmesh.agents.__name__ == "agentmesh.agents"
    assert set(agentmesh.agents.__all__) >= {"Researcher", "Analyst", "Writer"}
