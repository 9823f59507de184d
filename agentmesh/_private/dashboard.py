"""``agentmesh dashboard``: a local web page over the run store and the flight recordings.

One page (``data/dashboard.html``, no external scripts: these machines reach no CDN) and a
small JSON API it reads: ``/api/runs`` (the run store's summaries) and ``/api/runs/{id}``
(the run's plan, its nodes with status, agent and duration, the DAG laid out by topological
generation, and its recorded events). The page draws the DAG as SVG, the timeline, the
security decisions, and a model call's prompt and answer on click. It binds to loopback by
default: runs hold prompts and results (redacted, but a user's data all the same).
"""

from __future__ import annotations

import importlib.resources
from typing import Any

import networkx as nx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from agentmesh.errors import UnknownRunError
from agentmesh.recording import Recorder
from agentmesh.runs import RunInfo, RunStore

__all__ = ["build_dashboard", "run_view", "serve_dashboard"]


def _layout(info: RunInfo) -> dict[str, tuple[int, int]]:
    """Column = topological generation, row = place in it (plan order)."""
    graph = nx.DiGraph()
    order = {s.id: i for i, s in enumerate(info.plan.steps)}
    graph.add_nodes_from(order)
    for step in info.plan.steps:
        for ref in step.inputs.values():
            source = ref.split(".", 1)[0]
            if source in order:
                graph.add_edge(source, step.id)
    return {
        node: (column, row)
        for column, generation in enumerate(nx.topological_generations(graph))
        for row, node in enumerate(sorted(generation, key=order.__getitem__))
    }


def run_view(info: RunInfo, recorder: Recorder | None) -> dict[str, Any]:
    """What the page shows of one run (JSON-ready)."""
    layout = _layout(info)
    nodes = []
    for node in info.nodes:
        duration = node.duration_s
        nodes.append(
            {
                "id": node.step_id,
                "agent": node.agent,
                "skill": node.skill,
                "status": node.status.value,
                "attempts": node.attempts,
                "duration_s": round(duration, 3) if duration is not None else None,
                "error": node.error.model_dump() if node.error else None,
                "x": layout[node.step_id][0],
                "y": layout[node.step_id][1],
            }
        )
    edges = [
        [ref.split(".", 1)[0], step.id]
        for step in info.plan.steps
        for ref in step.inputs.values()
        if ref.split(".", 1)[0] in layout
    ]
    events = recorder.events(info.run_id) if recorder is not None else []
    return {
        "run": info.summary().model_dump(mode="json"),
        "nodes": nodes,
        "edges": edges,
        "events": [e.model_dump(mode="json") for e in events],
    }


def build_dashboard(store: RunStore, recorder: Recorder | None) -> Starlette:
    """The dashboard's ASGI app over ``store`` and ``recorder``."""
    page = importlib.resources.files("agentmesh._private").joinpath("data/dashboard.html")
    html = page.read_text(encoding="utf-8")

    async def index(request: Request) -> Response:
        return HTMLResponse(html)

    async def runs(request: Request) -> Response:
        return JSONResponse([s.model_dump(mode="json") for s in store.list_runs()])

    async def run(request: Request) -> Response:
        try:
            info = store.get_run(request.path_params["run_id"])
        except UnknownRunError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return JSONResponse(run_view(info, recorder))

    routes = [
        Route("/", index),
        Route("/api/runs", runs),
        Route("/api/runs/{run_id}", run),
    ]
    return Starlette(routes=routes)


def serve_dashboard(
    store: RunStore, recorder: Recorder | None, *, host: str = "127.0.0.1", port: int = 8765
) -> None:
    """Serve the dashboard until interrupted."""
    import uvicorn

    uvicorn.run(build_dashboard(store, recorder), host=host, port=port, log_level="warning")
