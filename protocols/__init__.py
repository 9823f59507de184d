"""Protocol bindings of agentmesh: A2A (agent messages, cards) and MCP (tools)."""
