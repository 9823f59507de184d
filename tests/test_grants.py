"""Plan-locked grants, tool labels and approvals: the decision logic and through a mesh."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from agentmesh import (
    ApprovalDenied,
    ApprovalRequired,
    Effect,
    Equals,
    InputRequired,
    Label,
    Matches,
    Mesh,
    OneOf,
    Plan,
    PlanStep,
    Policy,
    PolicyError,
    RunFailedError,
    TemplatePlanner,
    ToolGrant,
    UntrustedArguments,
    Verdict,
    check_tool_call,
    load_policy,
)
from agentmesh.security import raise_for_decision

from .office import POLICY, POLICY_YAML, USER_MAIL

UNTRUSTED = Label.user().join(Label.tool("office.read_inbox"))
MAIL = {"to": USER_MAIL, "body": "hi"}


# --- grants and constraints -----------------------------------------------------------------


def test_constraints() -> None:
    grant = ToolGrant.model_validate(
        {
            "tool": "office.*",
            "args": {
                "to": USER_MAIL,
                "amount": {"one_of": [10, 20]},
                "path": {"glob": "/tmp/*"},
                "flag": True,
                "meta": {"equals": {"a": 1}},
            },
        }
    )
    assert isinstance(grant.args["to"], Equals) and isinstance(grant.args["amount"], OneOf)
    assert isinstance(grant.args["path"], Matches)
    good = {"to": USER_MAIL, "amount": 20, "path": "/tmp/x", "flag": True, "meta": {"a": 1}}
    assert grant.covers("office.send_mail") and not grant.covers("bank.transfer")
    assert grant.refused_arguments(good) == []
    assert grant.refused_arguments({**good, "amount": 30, "path": 5}) == ["amount", "path"]
    assert grant.refused_arguments({**good, "flag": 1}) == ["flag"]  # JSON true is not 1
    assert grant.refused_arguments({}) == ["amount", "flag", "meta", "path", "to"]


@pytest.mark.parametrize(
    "bad",
    [
        {"tool": "office", "args": {}},  # not server.tool
        {"tool": "office.x", "args": {"to": {"any": 1}}},  # an object that is no constraint
        {"tool": "office.x", "args": {"to": {"one_of": []}}},
        {"tool": "office.x", "extra": 1},
    ],
)
def test_bad_grants(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ToolGrant.model_validate(bad)


def test_tool_labels_in_policy() -> None:
    labels = POLICY.tool_labels
    assert labels["office.read_inbox"].effect is Effect.READ_ONLY
    assert labels["office.add_forwarding_rule"].sensitive == ["forward_to"]  # one, unbracketed
    assert labels["office.transfer"].untrusted_arguments is UntrustedArguments.APPROVE
    for name in ("default", "demo"):
        assert load_policy(name).name == name
    for path in (Path(__file__).parent / "policies").glob("*.yaml"):
        assert load_policy(str(path)).tool_labels == {}


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("office.x: {effect: maybe}", "effect"),
        ("office.x: {untrusted_arguments: sometimes}", "untrusted_arguments"),
        ("office.x: {result_trust: mostly}", "result_trust"),
        ("office.x: {sensitiv: [to]}", "unknown key"),
        ("office: {effect: read-only}", "server.tool"),
    ],
)
def test_bad_tool_labels(entry: str, problem: str) -> None:
    with pytest.raises(PolicyError, match=problem):
        Policy.from_yaml(f"name: p\ntool_labels:\n  {entry}\n")


# --- the decision, outside any mesh ---------------------------------------------------------


def _check(tool: str, args: dict[str, object], **kw: object) -> tuple[Verdict, str, str]:
    decision = check_tool_call(POLICY, "clerk", tool, args, **kw)  # type: ignore[arg-type]
    return decision.verdict, decision.rule, decision.reason


def test_check_tool_call_order_and_reasons() -> None:
    send = "office.send_mail"
    pinned = [ToolGrant(tool=send, args={"to": Equals(equals=USER_MAIL)})]
    assert _check(send, MAIL)[0] is Verdict.ALLOW
    stranger = check_tool_call(POLICY, "stranger", send, MAIL, grant=pinned)
    assert (stranger.verdict, stranger.rule) == (Verdict.BLOCK, "default")  # the policy first
    assert _check(send, MAIL, grant=pinned)[0] is Verdict.ALLOW
    verdict, rule, reason = _check("office.delete_file", {"path": "/x"}, grant=pinned)
    assert (verdict, rule) == (Verdict.BLOCK, "plan.grant")
    assert "'office.delete_file'" in reason and "'office.send_mail'" in reason
    verdict, rule, reason = _check(send, {"to": "eve@evil.example", "body": "x"}, grant=pinned)
    assert (verdict, rule) == (Verdict.BLOCK, "plan.arguments")
    assert "['to']" in reason and "evil" not in reason
    assert _check(send, MAIL, grant=[])[1] == "plan.grant"  # an empty grant grants nothing


def test_check_tool_call_provenance() -> None:
    send, pinned = "office.send_mail", [ToolGrant(tool="office.*", args={"to": USER_MAIL})]
    assert _check(send, MAIL, label=Label.user())[0] is Verdict.ALLOW
    assert _check(send, MAIL, label=UNTRUSTED)[1] == "provenance.untrusted_arguments"
    assert _check(send, MAIL, label=UNTRUSTED, grant=pinned)[0] is Verdict.ALLOW  # to pinned
    assert _check("office.read_inbox", {}, label=UNTRUSTED)[0] is Verdict.ALLOW  # read-only
    # unlabelled tool: every argument sensitive
    verdict, rule, reason = _check("office.delete_file", {"path": "/x"}, label=UNTRUSTED)
    assert (verdict, rule) == (Verdict.BLOCK, "provenance.untrusted_arguments")
    assert "['path']" in reason
    # a label that asks a human
    pay = {"to_account": "DE-1", "amount": 5}
    decision = check_tool_call(POLICY, "clerk", "office.transfer", pay, label=UNTRUSTED)
    assert decision.rule == "provenance.approval_required"
    with pytest.raises(ApprovalRequired) as info:
        raise_for_decision(decision)
    assert info.value.tool == "office.transfer" and info.value.key.startswith("office.transfer:")
    # a label that lets it through
    lenient = Policy.from_yaml(
        POLICY_YAML.replace("{sensitive: [to]}", "{sensitive: [to], untrusted_arguments: allow}")
        + f"exfiltration: {{allowed_emails: [{USER_MAIL}]}}\n"  # else exfil.email holds it
    )
    allowed = check_tool_call(lenient, "clerk", "office.send_mail", MAIL, label=UNTRUSTED)
    assert allowed.verdict is Verdict.ALLOW and "let through" in allowed.reason


# --- through a mesh ----------------------------------------------------------------------------


async def _effects(mesh: Mesh) -> list[dict[str, object]]:
    log = await mesh.call("clerk", "act", tool="office.effects_log", args={})
    effects: list[dict[str, object]] = json.loads(str(log))["effects"]
    return effects


def _plan(step: PlanStep) -> TemplatePlanner:
    return TemplatePlanner(lambda goal: Plan(goal=goal, steps=[step]))


async def test_a_plan_locked_node_gets_only_its_grant(office_mesh: Mesh) -> None:
    grant = [ToolGrant(tool="office.send_mail", args={"to": USER_MAIL})]
    ok = PlanStep(
        id="s",
        agent="clerk",
        skill="act",
        args={"tool": "office.send_mail", "args": MAIL},
        tools=grant,
    )
    result = await office_mesh.run("mail alice", planner=_plan(ok))
    assert result.output == f"sent to {USER_MAIL}"
    other = ok.model_copy(
        update={"args": {"tool": "office.send_mail", "args": {**MAIL, "to": "b@x.org"}}}
    )
    with pytest.raises(RunFailedError) as info:
        await office_mesh.run("mail alice", planner=_plan(other))
    error = info.value.result.node("s").error
    assert error.type == "ToolCallBlocked" and "plan.arguments" in error.message
    wipe = ok.model_copy(
        update={"args": {"tool": "office.delete_file", "args": {"path": "/tmp/draft.txt"}}}
    )
    with pytest.raises(RunFailedError, match=r"plan\.grant"):
        await office_mesh.run("mail alice", planner=_plan(wipe))


async def test_a_nested_call_inherits_the_grant(office_mesh: Mesh) -> None:
    step = PlanStep(
        id="f",
        agent="clerk",
        skill="forward_inbox",
        args={"to": USER_MAIL},
        tools=[ToolGrant(tool="office.send_mail", args={"to": USER_MAIL})],
    )
    # the assistant's read is not in the node's grant: the nested call cannot widen it
    with pytest.raises(RunFailedError, match=r"plan\.grant.*office\.read_inbox"):
        await office_mesh.run("forward my inbox to me", planner=_plan(step))
    wider = [*(step.tools or []), ToolGrant(tool="office.read_inbox")]
    result = await office_mesh.run(
        "forward my inbox to me", planner=_plan(step.model_copy(update={"tools": wider}))
    )
    assert result.output == f"sent to {USER_MAIL}"  # untrusted body, but `to` is pinned
    assert result.node("f").label is not None and not result.node("f").label.trusted


async def test_approval_pauses_and_resumes_the_task(office_mesh: Mesh) -> None:
    account = f"DE-{uuid.uuid4().hex[:8]}"
    pay = {"to_account": account, "amount": 7}
    with pytest.raises(InputRequired) as asked:
        await office_mesh.call("clerk", "act", tool="office.transfer", args=pay, read_first=True)
    question = asked.value
    assert question.field == "approve" and "'office.transfer'" in question.prompt
    assert account in question.prompt  # the human sees what they approve
    assert not [e for e in await _effects(office_mesh) if e.get("to_account") == account]
    done = await office_mesh.resume("clerk", question.task_id, approve=True)
    assert done == f"transferred 7.0 to {account}"
    paid = [e for e in await _effects(office_mesh) if e.get("to_account") == account]
    assert len(paid) == 1
    # approved once: the same call twice in one task asks twice
    with pytest.raises(InputRequired) as first:
        await office_mesh.call(
            "clerk", "act", tool="office.transfer", args=pay, read_first=True, times=2
        )
    with pytest.raises(InputRequired) as second:
        await office_mesh.resume("clerk", first.value.task_id, approve=True)
    assert second.value.task_id == first.value.task_id
    assert await office_mesh.resume("clerk", first.value.task_id, approve="yes")
    paid = [e for e in await _effects(office_mesh) if e.get("to_account") == account]
    assert len(paid) == 3  # 1 + 2; the first run's approved call was not repeated by a rerun


async def test_a_denied_approval_fails_the_task(office_mesh: Mesh) -> None:
    account = f"DE-{uuid.uuid4().hex[:8]}"
    pay = {"to_account": account, "amount": 9}
    with pytest.raises(InputRequired) as asked:
        await office_mesh.call("clerk", "act", tool="office.transfer", args=pay, read_first=True)
    with pytest.raises(ApprovalDenied, match="did not approve"):
        await office_mesh.resume("clerk", asked.value.task_id, approve=False)
    assert not [e for e in await _effects(office_mesh) if e.get("to_account") == account]
