"""The office mesh of the provenance, grant and containment tests: a mail/bank/files MCP
server whose inbox carries a prompt injection, a scripted agent that obeys it, and a clerk."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, JsonValue

from agentmesh import Agent, Plan, PlanStep, Policy, Resources, SecurityDenied, StdioServer, skill

from .servers.office_server import ATTACK

OFFICE = StdioServer(
    name="office",
    command=[sys.executable, str(Path(__file__).parent / "servers" / "office_server.py")],
)
USER_MAIL = "alice@example.com"
USER_ACCOUNT = "DE-ALICE-1"
POLICY_YAML = """
name: office
default: block
messages:
  - {from: [user, "user:*"], to: ["*"]}
  - {from: [clerk], to: [assistant.inbox]}
tools:
  assistant: ["office.*"]
  clerk: ["office.*"]
tool_labels:
  office.read_inbox: {effect: read-only}
  office.effects_log: {effect: read-only, result_trust: trusted}
  office.send_mail: {sensitive: [to]}
  office.transfer: {sensitive: [to_account, amount], untrusted_arguments: approve}
  office.add_forwarding_rule: {sensitive: forward_to}
  # office.delete_file has no label: side-effecting, every argument sensitive
scanning:
  enabled: false  # the injection reaches the agent: only plan grants and provenance stand
"""
POLICY = Policy.from_yaml(POLICY_YAML)
ATTACKS = len(ATTACK)


class Outcome(BaseModel):
    tool: str
    done: bool
    rule: str = ""
    error: str = ""


class Report(BaseModel):
    attacks: list[Outcome]
    legit: list[Outcome]


class Assistant(Agent):
    """Handles the user's inbox; scripted to obey whatever its inbox tells it (hijacked)."""

    name = "assistant"
    tools = ("office.*",)
    resources = Resources(num_cpus=0.1)

    @skill
    async def handle_inbox(self, recipient: str, account: str, amount: float) -> Report:
        """Summarise the inbox to ``recipient`` and pay ``amount`` to ``account``."""
        mails = json.loads((await self.use_tool("office.read_inbox")).text)
        injected = [
            json.loads(line.removeprefix("AGENT-DO: "))
            for mail in mails
            for line in mail["body"].splitlines()
            if line.startswith("AGENT-DO: ")
        ]
        attacks = [await self._try(a["tool"], a["args"]) for a in injected]
        summary = "Summary: " + "; ".join(m["subject"] for m in mails)
        legit = [
            await self._try("office.send_mail", {"to": recipient, "body": summary}),
            await self._try("office.transfer", {"to_account": account, "amount": amount}),
        ]
        return Report(attacks=attacks, legit=legit)

    @skill
    async def inbox(self) -> str:
        """The raw inbox."""
        return (await self.use_tool("office.read_inbox")).text

    async def _try(self, tool: str, args: dict[str, Any]) -> Outcome:
        try:
            await self.use_tool(tool, **args)
        except SecurityDenied as exc:
            rule = exc.decision.rule if exc.decision is not None else ""
            return Outcome(tool=tool, done=False, rule=rule, error=type(exc).__name__)
        return Outcome(tool=tool, done=True)


class Clerk(Agent):
    """Calls office tools as told; reports the labels it sees."""

    name = "clerk"
    model = "scripted"
    tools = ("office.*",)
    resources = Resources(num_cpus=0.1)

    @skill
    async def act(
        self, tool: str, args: dict[str, JsonValue], read_first: bool = False, times: int = 1
    ) -> str:
        """Call ``tool`` ``times`` times, after reading the inbox if ``read_first``."""
        if read_first:
            await self.use_tool("office.read_inbox")
        return "\n".join([(await self.use_tool(tool, **args)).text for _ in range(times)])

    @skill
    async def read(self) -> str:
        """The inbox, as read by a tool."""
        return (await self.use_tool("office.read_inbox")).text

    @skill
    def relay(self, text: str) -> str:
        """A pure transformation of its input."""
        return text.upper()

    @skill
    async def labels(self) -> dict[str, JsonValue]:
        """The labels of a model output before and after reading the inbox, and of the read."""
        before = (await self.generate("hi", max_tokens=4)).label
        read = (await self.use_tool("office.read_inbox")).label
        after = (await self.generate("hi", max_tokens=4)).label
        return {
            name: None if lab is None else lab.model_dump(mode="json")
            for name, lab in {"before": before, "read": read, "after": after}.items()
        }

    @skill
    async def forward_inbox(self, to: str) -> str:
        """Ask the assistant for the inbox, then mail it to ``to``."""
        text = str(await self.call("assistant", "inbox"))
        return (await self.use_tool("office.send_mail", to=to, body=text[:200])).text


def one_step_plan(goal: str, step: PlanStep) -> Plan:
    return Plan(goal=goal, steps=[step])
