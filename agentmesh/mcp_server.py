"""The mesh as an MCP server: every skill a tool, every Agent Card a resource.

Each skill of a started mesh is the tool ``<agent>.<skill>`` (MCP tool names allow ``A-Za-z0-9``,
``_``, ``-`` and ``.``, 1-128 characters) with the skill's description and schemas; a call is
``mesh.call`` as the mesh's "user", vetted by the security actor like any other. A result is
structured content plus the same JSON as text; a skill whose output is not a JSON object is
wrapped as ``{"result": <value>}`` (as mcp's ``MCPServer`` does: protocols before 2026-07-28
need an object). An agentmesh error is a tool error ``<ErrorType>: <message>``; a security
denial names its rule and decision, never the refused content. Each Agent Card is the JSON
resource ``agentmesh://agents/<name>``.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Literal

import mcp_types as types
from google.protobuf import json_format
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from pydantic import JsonValue

from agentmesh._private.asgi import serve_asgi
from agentmesh.errors import (
    AgentMeshError,
    ConfigError,
    UnknownAgentError,
    UnknownSkillError,
    outside_text,
)
from agentmesh.mesh import Mesh
from agentmesh.planner import SkillInfo

__all__ = ["AGENT_URI_PREFIX", "build_mcp_server", "serve_mcp"]

logger = logging.getLogger(__name__)
_Ctx = ServerRequestContext[Any]
_Paging = types.PaginatedRequestParams | None

#: Agent Cards are served as resources under this prefix, followed by the agent's name.
AGENT_URI_PREFIX = "agentmesh://agents/"
# SEP-986, as mcp.shared.tool_name_validation checks it.
_TOOL_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_INSTRUCTIONS = (
    "Each tool is a skill of an agent in an agentmesh mesh, named <agent>.<skill>. Calls run as "
    "the mesh's user principal and pass its security policy; a refusal is a tool error naming "
    "the rule. The agents' A2A Agent Cards are resources under agentmesh://agents/."
)


def _output_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The MCP output schema for a skill's output schema, and whether results are wrapped."""
    if schema.get("type") == "object":
        return schema, False
    inner = dict(schema)
    defs = inner.pop("$defs", None)  # refs are "#/$defs/...": keep the definitions at the root
    wrapped = {"type": "object", "properties": {"result": inner}, "required": ["result"]}
    if defs is not None:
        wrapped["$defs"] = defs
    return wrapped, True


def _error_result(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


class _MeshTools:
    """The tools and resources of one started mesh (its catalog is fixed once it has started)."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.cards = {card.name: card for card in mesh.cards()}  # ConfigError if not started
        self.skills: dict[str, SkillInfo] = {}
        self.wrapped: dict[str, bool] = {}
        self.tools: list[types.Tool] = []
        for info in mesh.catalog():
            name = f"{info.agent}.{info.skill}"
            if not _TOOL_NAME.match(name):
                raise ConfigError(
                    f"skill {name!r} cannot be an MCP tool: tool names are 1-128 characters "
                    "of A-Z, a-z, 0-9, '_', '-' and '.'"
                )
            output, self.wrapped[name] = _output_schema(info.output_schema)
            inputs = info.input_schema or {"type": "object", "properties": {}}
            self.skills[name] = info
            tool = types.Tool(
                name=name, description=info.description, input_schema=inputs, output_schema=output
            )
            self.tools.append(tool)

    async def list_tools(self, ctx: _Ctx, params: _Paging) -> types.ListToolsResult:
        return types.ListToolsResult(tools=list(self.tools))

    async def call_tool(
        self, ctx: _Ctx, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        name = params.name
        try:
            info = self.skills.get(name)
            if info is None:
                raise self._unknown(name)
            value = await self.mesh.call(info.agent, info.skill, **(params.arguments or {}))
        except AgentMeshError as exc:
            logger.info("MCP tool %r failed: %s", name, type(exc).__name__)
            return _error_result(outside_text(exc))
        except Exception as exc:  # never let one call take the server down
            logger.exception("MCP tool %r raised an unexpected error", name)
            return _error_result(f"InternalError: {type(exc).__name__}: {exc}")
        structured: JsonValue = {"result": value} if self.wrapped[name] else value
        text = json.dumps(structured, ensure_ascii=False)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], structured_content=structured
        )

    def _unknown(self, name: str) -> AgentMeshError:
        agent, _, skill = name.partition(".")
        if agent not in self.cards:
            return UnknownAgentError(agent, known=list(self.cards))
        known = [s.id for s in self.cards[agent].skills]
        return UnknownSkillError(agent, skill, known=known)

    async def list_resources(self, ctx: _Ctx, params: _Paging) -> types.ListResourcesResult:
        resources = [
            types.Resource(
                uri=AGENT_URI_PREFIX + name,
                name=name,
                title=f"Agent Card: {name}",
                description=card.description,
                mime_type="application/json",
            )
            for name, card in self.cards.items()
        ]
        return types.ListResourcesResult(resources=resources)

    async def read_resource(
        self, ctx: _Ctx, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        name = uri.removeprefix(AGENT_URI_PREFIX)
        card = self.cards.get(name) if name != uri else None
        if card is None:
            raise MCPError(
                code=types.INVALID_PARAMS, message=f"no such resource: {uri}", data={"uri": uri}
            )
        text = json_format.MessageToJson(card)
        contents: list[types.TextResourceContents | types.BlobResourceContents] = [
            types.TextResourceContents(uri=uri, text=text, mime_type="application/json")
        ]
        return types.ReadResourceResult(contents=contents)


def build_mcp_server(mesh: Mesh, *, name: str = "agentmesh") -> Server[Any]:
    """An MCP server (mcp's low-level ``Server``) offering a started mesh's skills and cards.

    Connect to it in-process with ``mcp.Client(server)``, or serve it with :func:`serve_mcp`.

    Raises:
        ConfigError: the mesh is not started, or a skill's name cannot be an MCP tool name.
    """
    tools = _MeshTools(mesh)
    from agentmesh import __version__

    return Server(
        name,
        version=__version__,
        description="An agentmesh mesh: agents on Ray actors behind a security actor.",
        instructions=_INSTRUCTIONS,
        on_list_tools=tools.list_tools,
        on_call_tool=tools.call_tool,
        on_list_resources=tools.list_resources,
        on_read_resource=tools.read_resource,
    )


async def serve_mcp(
    mesh: Mesh,
    *,
    transport: Literal["stdio", "http"] = "stdio",
    host: str = "127.0.0.1",
    port: int = 8766,
) -> None:
    """Serve a started mesh over MCP until cancelled (or, on stdio, until stdin closes).

    ``http`` is streamable HTTP at ``http://<host>:<port>/mcp``; on a loopback host the
    server also rejects requests whose Host or Origin is not loopback (DNS rebinding). There is
    no authentication: anyone who reaches the endpoint calls skills as the mesh's user.
    With ``stdio``, fd 1 points at stderr while it serves, so stray output cannot corrupt the
    frames; what an actor printed before then went to stdout. ``agentmesh serve --mcp``
    therefore claims stdio before it starts its mesh.

    Raises:
        ConfigError: see :func:`build_mcp_server`; or the HTTP port cannot be bound.
    """
    server = build_mcp_server(mesh)
    if transport == "stdio":
        from mcp.server.stdio import stdio_server

        # While it serves, stdio_server points fd 1 at stderr (and fd 0 at /dev/null), so
        # stray prints from this process and its children cannot corrupt the frames.
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    elif transport == "http":
        await _serve_http(server, host, port)
    else:
        raise ConfigError(f"unknown MCP transport {transport!r}; use 'stdio' or 'http'")


async def _serve_http(server: Server[Any], host: str, port: int) -> None:
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("MCP on %s:%d: not loopback, and there is no authentication", host, port)
    await serve_asgi(server.streamable_http_app(host=host), host, port, what="MCP")
