"""``agentmesh dashboard``: its JSON API over a real run, and its page in headless Chromium
(Debian's chromium package), with a screenshot check that the DAG renders."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentmesh import (
    Mesh,
    Plan,
    PlanStep,
    RunFailedError,
    ScriptedError,
    ScriptedModel,
    SqliteRecorder,
    SqliteRunStore,
    TemplatePlanner,
)
from agentmesh._private.dashboard import build_dashboard

from .test_models import POLICY, Writer

GREEN, RED, GREY = (46, 125, 50), (198, 40, 40), (158, 158, 158)  # the page's status colours


@pytest.fixture(scope="module")
async def recorded(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run with a succeeded, a failed and a skipped node, in a store and a recording."""
    folder = tmp_path_factory.mktemp("dashboard")
    model = ScriptedModel(["fine words", ScriptedError(message="model down")])
    topics = {"good": ("a", None), "bad": ("b", "good"), "later": ("c", "bad")}
    steps = [
        PlanStep(id=step, agent="writer", skill="write", args={"topic": topic},
                 inputs={"after": after} if after else {})
        for step, (topic, after) in topics.items()
    ]  # fmt: skip
    plan = Plan(goal="three steps", steps=steps)
    async with Mesh(
        [Writer], models={"default": model}, policy=POLICY, run_store=folder / "runs.db",
        recorder=folder / "recordings.db",
    ) as mesh:  # fmt: skip
        with pytest.raises(RunFailedError) as failed:
            await mesh.run("three steps", planner=TemplatePlanner(lambda goal: plan))
    return folder, failed.value.result.run_id


async def test_the_api_serves_runs_their_dag_and_events(recorded: tuple[Path, str]) -> None:
    folder, run_id = recorded
    app = build_dashboard(
        SqliteRunStore(folder / "runs.db"), SqliteRecorder(folder / "recordings.db")
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        assert "agentmesh dashboard" in (await http.get("/")).text
        runs = (await http.get("/api/runs")).json()
        assert [r["run_id"] for r in runs] == [run_id] and runs[0]["state"] == "failed"
        view = (await http.get(f"/api/runs/{run_id}")).json()
        placed = {n["id"]: (n["status"], n["x"], n["y"]) for n in view["nodes"]}
        assert placed == {
            "good": ("succeeded", 0, 0),
            "bad": ("failed", 1, 0),
            "later": ("skipped", 2, 0),
        }
        assert view["edges"] == [["good", "bad"], ["bad", "later"]]
        calls = [e for e in view["events"] if e["body"]["kind"] == "model_call"]
        assert [c["body"]["text"] for c in calls] == ["fine words", ""]
        assert (await http.get("/api/runs/nope")).status_code == 404


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(recorded: tuple[Path, str]) -> Iterator[str]:
    folder, _ = recorded
    port = _free_port()
    command = [
        str(Path(sys.executable).parent / "agentmesh"), "dashboard",
        "--store", str(folder / "runs.db"), "--recordings", str(folder / "recordings.db"),
        "--port", str(port),
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    _, err = server.communicate()
                    detail = f"exit status {server.returncode}: {err.decode()}"
                    raise AssertionError(f"the dashboard did not start ({detail})") from None
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _chromium(*args: str) -> subprocess.CompletedProcess[bytes]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed (make install installs Debian's package as root)")
    sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium refuses root otherwise
    command = [
        binary,
        "--headless",
        "--disable-gpu",
        *sandbox,
        "--virtual-time-budget=10000",
        *args,
    ]
    return subprocess.run(command, capture_output=True, timeout=120, check=True)


def test_the_page_draws_the_dag_in_chromium(
    served: str, recorded: tuple[Path, str], tmp_path: Path
) -> None:
    from PIL import Image

    _, run_id = recorded
    page = f"{served}#run={run_id}"
    dom = _chromium("--dump-dom", page).stdout.decode()
    for step in ("good", "bad", "later"):
        assert f'data-step="{step}"' in dom  # drawn by the page's script from the API
    assert "fine words" not in dom  # a prompt and answer only show on click
    shot = Path(os.environ.get("AGENTMESH_DASHBOARD_SHOT", tmp_path / "dag.png"))
    _chromium(f"--screenshot={shot}", "--window-size=1280,900", page)
    pixels = Image.open(shot).convert("RGB")
    seen = dict((colour, count) for count, colour in pixels.getcolors(maxcolors=1 << 24) or [])
    counts = {colour: seen.get(colour, 0) for colour in (GREEN, RED, GREY)}
    # each status box is 170 x 54 pixels, most of it filled with its status colour
    assert all(count > 3000 for count in counts.values()), counts
