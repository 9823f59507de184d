"""The one error tree of agentmesh.

Every error the framework raises is an :class:`AgentMeshError`, in one of three branches:

- :class:`UserError`: the definition, configuration or input is wrong; fix it and try again.
- :class:`RunError`: something failed while running (a skill raised, an actor died, a tool
  server went away); the work and state up to the failure are kept on the error.
- :class:`SecurityDenied`: the security actor refused a message or a tool call, or held its
  content in quarantine.

Errors cross process boundaries (Ray actors, A2A tasks), so every field lives in ``__dict__``
and pickling keeps it whatever the subclass's ``__init__`` takes.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentDefinitionError",
    "AgentLostError",
    "AgentMeshError",
    "AgentUnavailableError",
    "ApprovalDenied",
    "ApprovalRequired",
    "BreakerOpenError",
    "BudgetExceededError",
    "BudgetExhausted",
    "CardVerificationError",
    "CircuitOpen",
    "ConfigError",
    "ContentQuarantined",
    "GenerateArgumentsError",
    "InputRequired",
    "MessageBlocked",
    "ModelBusyError",
    "ModelError",
    "ModelHTTPError",
    "ModelNotFoundError",
    "ModelResponseError",
    "ModelServerError",
    "ModelServerTimeoutError",
    "ModelTimeoutError",
    "ModelUnreachableError",
    "NoApprovalPendingError",
    "NoRecordingError",
    "NodeTimeoutError",
    "OutputValidationError",
    "PlacementError",
    "PlanValidationError",
    "PlanningError",
    "PolicyError",
    "RateLimited",
    "RemoteAgentError",
    "ReplayEffectError",
    "RunError",
    "RunFailedError",
    "RunFinishedError",
    "RunPaused",
    "RunStoreError",
    "SandboxUnavailableError",
    "ScriptExhaustedError",
    "SecurityDenied",
    "SkillFailedError",
    "SkillInputError",
    "SkillOutputError",
    "TaskCanceledError",
    "ToolArgumentsError",
    "ToolCallBlocked",
    "ToolCallError",
    "ToolError",
    "ToolNotApprovedError",
    "ToolResultTooLargeError",
    "ToolServerDiedError",
    "ToolServerStartError",
    "ToolTimeoutError",
    "UnknownAgentError",
    "UnknownModelError",
    "UnknownRunError",
    "UnknownSkillError",
    "UnknownTaskError",
    "UnknownToolError",
    "UserError",
]


def _restore(cls: type[AgentMeshError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    obj = cls.__new__(cls)
    Exception.__init__(obj, *args)
    obj.__dict__.update(state)
    return obj


class AgentMeshError(Exception):
    """Root of every error agentmesh raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), self.args, dict(self.__dict__)))


# --- user errors -----------------------------------------------------------------------------


class UserError(AgentMeshError):
    """The definition, configuration or input is wrong."""


class AgentDefinitionError(UserError):
    """An agent class or skill is malformed (raised when the class is defined)."""


class ConfigError(UserError):
    """The mesh configuration is invalid."""


class PolicyError(UserError):
    """A security policy file is missing or invalid."""


class UnknownAgentError(UserError):
    """No agent of that name is in the mesh."""

    def __init__(self, agent: str, *, known: list[str]) -> None:
        super().__init__(f"unknown agent {agent!r}; the mesh has {sorted(known)}")
        self.agent = agent
        self.known = sorted(known)


class UnknownSkillError(UserError):
    """The agent has no skill of that name."""

    def __init__(self, agent: str, skill: str, *, known: list[str]) -> None:
        super().__init__(f"agent {agent!r} has no skill {skill!r}; it has {sorted(known)}")
        self.agent = agent
        self.skill = skill
        self.known = sorted(known)


class SkillInputError(UserError):
    """Arguments do not match the skill's input schema."""

    def __init__(self, agent: str, skill: str, errors: list[str]) -> None:
        super().__init__(f"bad arguments for {agent}.{skill}: " + "; ".join(errors))
        self.agent = agent
        self.skill = skill
        self.errors = errors


class UnknownModelError(UserError):
    """No model of that name is configured in the mesh."""


class ModelNotFoundError(UserError):
    """A model's weights file does not exist or cannot be read."""


class GenerateArgumentsError(UserError):
    """A generate call's arguments are wrong (checked before any model runs): a request field out
    of range, an ``output=`` that is not a pydantic model class, ``max_attempts`` below 1."""


class UnknownToolError(UserError):
    """No connected MCP server offers a tool of that name."""


class ToolNotApprovedError(UserError):
    """A tool's current definition is not approved, so the gateway refuses it.

    ``status`` is ``"new"`` (never approved), ``"changed"`` (differs from the approved, pinned
    definition: a rug pull until someone re-approves it) or ``"flagged"`` (the definition looks
    poisoned). Review with ``agentmesh tools diff`` and approve with ``agentmesh tools approve``.
    """

    def __init__(self, tool: str, *, status: str, reason: str) -> None:
        super().__init__(f"tool {tool!r} is not approved ({status}): {reason}")
        self.tool = tool
        self.status = status
        self.reason = reason


class ToolArgumentsError(UserError):
    """Tool arguments fail the tool's input schema or exceed the configured size bound."""


class CardVerificationError(UserError):
    """An Agent Card was refused: its signature is missing, by an unknown key, or does not verify.

    ``kind`` is ``"unsigned"`` (no signature, and one is required), ``"unknown_key"`` (signed
    only by key ids the verifier does not trust), ``"bad_signature"`` (a trusted key id's
    signature does not match: the card was changed after signing, or signed by another key
    or algorithm under that id) or ``"malformed"`` (no signature could even be read). ``kids``
    lists the key ids the card's signatures name.
    """

    def __init__(self, card: str, *, kind: str, reason: str, kids: list[str]) -> None:
        super().__init__(f"agent card {card!r} refused ({kind}): {reason}")
        self.card = card
        self.kind = kind
        self.reason = reason
        self.kids = kids


class InputRequired(UserError):
    """A skill needs more input before it can finish: its task waits in ``input-required``.

    A skill raises it (``raise InputRequired("Delete 3 files? Reply confirm=true", field=
    "confirm")``); the caller sees it raised with ``agent``, ``skill`` and ``task_id`` filled
    in. Replying on that task (``Mesh.resume``, or an A2A message naming the task id) runs the
    skill again from the start, with its first arguments updated by the reply's; a reply that is
    a lone text part fills ``field`` (default: the skill's one required string parameter).
    When the question asks a human to approve one tool call, ``tool`` names the tool and
    ``approval`` is that exact call's key (the tool and a hash of its arguments).
    """

    def __init__(
        self,
        prompt: str,
        *,
        field: str | None = None,
        agent: str = "",
        skill: str = "",
        task_id: str = "",
        tool: str | None = None,
        approval: str | None = None,
    ) -> None:
        super().__init__(prompt)
        self.prompt = prompt
        self.field = field
        self.agent = agent
        self.skill = skill
        self.task_id = task_id
        self.tool = tool
        self.approval = approval


class UnknownTaskError(UserError):
    """No task of that id is waiting or running for this caller (never existed, finished,
    expired, or belongs to someone else: the answer is the same, so it tells nothing)."""

    def __init__(self, task_id: str, *, agent: str) -> None:
        super().__init__(f"agent {agent!r} has no open task {task_id[:64]!r} for this caller")
        self.task_id = task_id
        self.agent = agent


class PlanValidationError(UserError):
    """A plan failed validation: schema, unknown skills, cycles or dangling inputs."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid plan: " + "; ".join(errors))
        self.errors = errors


class UnknownRunError(UserError):
    """The run store holds no run of that id."""

    def __init__(self, run_id: str, *, store: str) -> None:
        super().__init__(f"no run {run_id[:140]!r} in the run store {store}")
        self.run_id = run_id
        self.store = store


class RunFinishedError(UserError):
    """The run already succeeded: there is nothing left to resume."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} already succeeded; nothing to resume")
        self.run_id = run_id


class RunPaused(UserError):
    """A run waits for a human: some nodes ask for approval (the plan step's ``approval``, or
    a tool call the policy wants approved) and nothing else can run until they are answered.
    Not a failure: the run store holds it ``paused`` (it outlives this process); answer with
    ``Mesh.approve_run(run_id, step_id, approve=...)`` or ``agentmesh approve``. ``result``
    holds every node's record, the waiting ones with their question."""

    def __init__(self, message: str, *, result: Any) -> None:
        super().__init__(message)
        self.result = result


class NoApprovalPendingError(UserError):
    """That node of that run waits for no answer (it never asked, was answered, or the run
    is not paused there)."""

    def __init__(self, run_id: str, step_id: str) -> None:
        super().__init__(f"step {step_id!r} of run {run_id!r} waits for no approval")
        self.run_id = run_id
        self.step_id = step_id


class NoRecordingError(UserError):
    """A replay needs the run's flight recording, and the recorder holds none for that run
    (it ran with ``record=False``, or the recording file is another one)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"run {run_id[:140]!r} has no flight recording to replay (was it run with "
            "record=False, or recorded to another file?)"
        )
        self.run_id = run_id


class RunStoreError(UserError):
    """The run store cannot be used: not a database, another program's database, a newer
    schema, or a file that cannot be opened or written. Nothing in it is changed."""


# --- run failures ----------------------------------------------------------------------------


class RunError(AgentMeshError):
    """Something failed while running."""


class SkillFailedError(RunError):
    """A skill raised an exception that is not an agentmesh error."""

    def __init__(self, agent: str, skill: str, error_type: str, detail: str) -> None:
        super().__init__(f"{agent}.{skill} failed with {error_type}: {detail}")
        self.agent = agent
        self.skill = skill
        self.error_type = error_type
        self.detail = detail


class SkillOutputError(SkillFailedError):
    """A skill returned a value that does not match its declared return type.

    ``output`` names the type and ``errors`` lists each problem as ``field: message``.
    """

    def __init__(self, agent: str, skill: str, errors: list[str], *, output: str) -> None:
        detail = "; ".join(errors)
        RunError.__init__(
            self, f"{agent}.{skill} returned a value that is not a valid {output}: {detail}"
        )
        self.agent = agent
        self.skill = skill
        self.error_type = type(self).__name__
        self.detail = detail
        self.errors = errors
        self.output = output


class TaskCanceledError(RunError):
    """The task was canceled before it finished (by its caller, or by the mesh on its behalf)."""

    def __init__(self, task_id: str, *, agent: str = "") -> None:
        super().__init__(f"task {task_id[:64]!r} of agent {agent!r} was canceled")
        self.task_id = task_id
        self.agent = agent


class AgentUnavailableError(RunError):
    """An agent's actor died or cannot be reached."""


class PlacementError(RunError):
    """No node could host an agent's actor in time: nothing offers the resources it asks for."""


class AgentLostError(PlacementError):
    """An agent's actor died (its process, or its whole node) and Ray did not bring it back in
    time: no live node offers the resources and labels it asks for (an agent pinned to a node
    that left the cluster), or its restarts are spent. ``node_lost`` says whether the node it
    ran on is gone."""

    def __init__(self, agent: str, detail: str, *, node_lost: bool) -> None:
        super().__init__(f"agent {agent!r} is lost: {detail}")
        self.agent = agent
        self.detail = detail
        self.node_lost = node_lost


class NodeTimeoutError(RunError):
    """A plan node ran past its time limit (``PlanStep.timeout_s``, else the retry policy's).

    The executor asked the agent to cancel the node's A2A task; ``canceled`` says whether it
    could (a plain sync skill's thread runs on, and its result is dropped).
    """

    def __init__(
        self, step: str, *, agent: str, timeout_s: float, task_id: str, canceled: bool
    ) -> None:
        what = "canceled" if canceled else "could not be canceled"
        super().__init__(
            f"step {step!r} ({agent}) ran past its {timeout_s:g}s limit; its task {task_id} {what}"
        )
        self.step = step
        self.agent = agent
        self.timeout_s = timeout_s
        self.task_id = task_id
        self.canceled = canceled


class BreakerOpenError(RunError):
    """A reliability circuit breaker (of an agent or a model) is open: the call failed fast,
    nothing was sent. It opened after ``failures`` failures in a row (``cause``: the last one) and
    lets one trial call through after ``retry_in_s`` more seconds.

    Not :class:`CircuitOpen`: that one is the security actor's, opened by policy violations.
    """

    def __init__(self, target: str, *, failures: int, cause: str, retry_in_s: float) -> None:
        super().__init__(
            f"the circuit breaker of {target} is open after {failures} failures in a row "
            f"(last: {cause}); calls fail fast for {retry_in_s:.1f}s more"
        )
        self.target = target
        self.failures = failures
        self.cause = cause
        self.retry_in_s = retry_in_s


class ToolError(RunError):
    """A tool call failed."""


class ToolServerStartError(ToolError):
    """An MCP server could not be started or did not complete its handshake."""


class SandboxUnavailableError(ToolServerStartError):
    """A stdio MCP server must run sandboxed, but bubblewrap (or prlimit/setpriv) is missing.

    The message says how to install it, or how to opt that one server out (``unsandboxed``).
    """


class ToolServerDiedError(ToolError):
    """An MCP server went away while the mesh was using it."""


class ToolCallError(ToolError):
    """The MCP server answered a tool call with an error result."""


class ToolTimeoutError(ToolError):
    """A tool call ran past its time limit (the gateway restarts the server behind it)."""


class ToolResultTooLargeError(ToolError):
    """A tool's result exceeds the configured size bound; it is refused, not truncated."""


class ModelError(RunError):
    """A model call failed."""


class ModelBusyError(ModelError):
    """A model replica refused a request: as many as its ``max_queue`` already wait for it."""


class ModelTimeoutError(ModelError):
    """A model did not answer in time: within its route's ``timeout_s`` (and no fallback was
    left), or an HTTP model server within its spec's (``ModelServerTimeoutError``)."""


class ModelServerError(ModelError):
    """A model server reached over HTTP (an :class:`~agentmesh.OpenAIModel`) failed.

    ``url`` is the address called and ``detail`` what went wrong; the subclasses say how.
    """

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"model server {url}: {detail}")
        self.url = url
        self.detail = detail


class ModelUnreachableError(ModelServerError):
    """No connection to the model server (refused, unknown host, reset before an answer)."""


class ModelServerTimeoutError(ModelServerError, ModelTimeoutError):
    """The model server did not answer within the spec's ``timeout_s``."""


class ModelHTTPError(ModelServerError):
    """The model server answered with an HTTP error status; ``status`` is the code and
    ``detail`` quotes the start of its error message."""

    def __init__(self, url: str, detail: str, *, status: int) -> None:
        super().__init__(url, f"HTTP {status}: {detail}")
        self.status = status


class ModelResponseError(ModelServerError):
    """The model server answered, but not with an OpenAI-shaped JSON body."""


class ScriptExhaustedError(ModelError):
    """A scripted test model was called more often than it had replies queued."""


class OutputValidationError(RunError):
    """A model's answers failed the requested output type on every attempt.

    Nothing is lost: ``texts[i]`` is the raw answer of attempt ``i`` and ``attempts[i]`` the
    errors it was rejected for (``field: message``), as the model was told them. ``model`` is
    the mesh model asked and ``output`` the type's name.
    """

    def __init__(
        self, *, model: str, output: str, texts: list[str], attempts: list[list[str]]
    ) -> None:
        last = "; ".join(attempts[-1]) if attempts else ""
        super().__init__(
            f"model {model!r} gave no valid {output} in {len(texts)} attempt(s); "
            f"last errors: {last}"
        )
        self.model = model
        self.output = output
        self.texts = texts
        self.attempts = attempts


class RemoteAgentError(RunError):
    """A remote A2A agent could not be reached, did not answer in time, or did not complete.

    ``agent`` is its mesh name, ``url`` the address called, ``state`` the remote task's last
    state (``"failed"``, ``"rejected"``, ``"input_required"`` ...; None when no task came back:
    a connection failure or a timeout) and ``detail`` what the remote agent or the transport said.
    """

    def __init__(self, agent: str, url: str, detail: str, *, state: str | None = None) -> None:
        where = f"remote agent {agent!r} at {url}"
        super().__init__(f"{where}: {detail}" + (f" (task {state})" if state else ""))
        self.agent = agent
        self.url = url
        self.detail = detail
        self.state = state


class PlanningError(RunError):
    """The planner could not produce a valid plan within its attempts: ``attempts[i]`` lists
    the errors of attempt ``i`` and ``texts[i]`` is its raw answer (when a model planned)."""

    def __init__(
        self, message: str, *, attempts: list[list[str]], texts: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.texts = texts or []


class RunFailedError(RunError):
    """A task DAG finished with failed nodes; ``result`` holds every node's record and output."""

    def __init__(self, message: str, *, result: Any) -> None:
        super().__init__(message)
        self.result = result


class ReplayEffectError(ToolError):
    """A replay (``Mesh.replay``) made a side-effecting tool call its recording does not hold:
    refused, so a replay never repeats or invents an effect, unless it allows live effects."""

    def __init__(self, tool: str) -> None:
        super().__init__(
            f"the replay calls side-effecting tool {tool!r} with arguments the recording does "
            "not hold; refused (replay with live_effects=True to make such calls)"
        )
        self.tool = tool


class BudgetExceededError(RunFailedError):
    """A run spent its model budget (``Mesh.run(budget=...)``): no more nodes started, and
    those left are failed with this reason (``resume_run`` with a larger budget goes on)."""


# --- security denials ------------------------------------------------------------------------


class SecurityDenied(AgentMeshError):
    """The security actor refused; ``decision`` is the recorded decision."""

    def __init__(self, message: str, *, decision: Any) -> None:
        super().__init__(message)
        self.decision = decision


class MessageBlocked(SecurityDenied):
    """The policy forbids this message between agents, or its content was blocked."""


class ToolCallBlocked(SecurityDenied):
    """The policy does not grant this tool to the calling agent."""


class ApprovalRequired(ToolCallBlocked):
    """A side-effecting call on untrusted data needs a human's yes first (its tool label says
    ``untrusted_arguments: approve``). Left uncaught in a skill, it pauses the task
    ``input-required``; ``Mesh.resume(agent, task_id, approve=True)`` runs the skill again with
    that one exact call (``tool`` and its arguments, keyed by ``key``) approved once."""

    def __init__(self, message: str, *, decision: Any, tool: str, key: str) -> None:
        super().__init__(message, decision=decision)
        self.tool = tool
        self.key = key
        self.arguments: dict[str, Any] | None = None  # filled in by the agent's host


class ApprovalDenied(ToolCallBlocked):
    """The human answered no to a call that needed approval: the task fails with this."""

    def __init__(self, message: str, *, tool: str, decision: Any = None) -> None:
        super().__init__(message, decision=decision)
        self.tool = tool


class ContentQuarantined(SecurityDenied):
    """Content was held in quarantine (for example a suspected prompt injection).

    Nothing is lost: the content stays in the security actor's quarantine under
    ``decision.quarantine_id`` for review.
    """


class RateLimited(SecurityDenied):
    """A rate limit of the policy's ``limits:`` refused the call; retry later.

    ``decision.rule`` names the limit (``limits.agents['researcher*'].rate``) and its reason
    says when a call fits again.
    """


class BudgetExhausted(RateLimited):
    """The call's budget (``limits.<section>['<glob>'].budget``) is spent: no retry helps until
    its window renews (a budget per run never does)."""


class CircuitOpen(SecurityDenied):
    """The caller's circuit breaker is open: after repeated violations (calls outside its grant,
    limit hits) every message and tool call from it is refused until ``Mesh.reset_breaker`` (or
    the policy's ``reset_after_s``). ``decision.reason`` carries the recorded cause."""


def outside_text(exc: AgentMeshError) -> str:
    """``<ErrorType>: <message>`` for a client outside the mesh (MCP, A2A).

    A security denial names its verdict, rule and decision, never the content it refused: the
    reason may quote an attack, and the error text travels back to whoever sent it.
    """
    kind = type(exc).__name__
    if not isinstance(exc, SecurityDenied):
        return f"{kind}: {exc.message}"
    decision = exc.decision
    if decision is None:
        return f"{kind}: refused by the security actor"
    verdict = getattr(decision.verdict, "value", decision.verdict)
    text = (
        f"{kind}: refused by the security actor: {verdict} under rule {decision.rule!r} "
        f"(decision #{decision.seq}, {decision.kind} {decision.principal} -> {decision.target})"
    )
    if decision.quarantine_id:
        text += f"; the content is held in quarantine as {decision.quarantine_id}"
    return text
