"""Executable examples: the demo mesh and the MCP servers it uses."""
