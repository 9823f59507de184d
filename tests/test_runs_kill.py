"""Kill the driver for real, mid-run, then finish the run with the real ``agentmesh resume``.

A driver process (``python -m tests.durable_mesh``, its own embedded Ray) runs a -> b -> c;
b makes its effect, says so in a file, and waits. The test SIGKILLs the driver there (Ray and
the mesh die with it), checks the store shows the run cut off, and runs ``agentmesh resume``
in another process, which rebuilds the mesh from the factory the run recorded. Every node's
effect must have happened exactly once. Each process starts its own Ray: this is the one
test that does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .durable_mesh import EFFECTS_ENV, effects

ROOT = Path(__file__).parent.parent
CLI = str(Path(sys.executable).parent / "agentmesh")


def _wait_for(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"the driver ended ({proc.returncode}) first:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{path.name} never appeared:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def _runs(env: dict[str, str], db: Path) -> dict[str, dict[str, object]]:
    out = subprocess.run(
        [CLI, "runs", "--json", "--store", str(db)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return {r["run_id"]: r for r in json.loads(out.stdout)}


def test_killed_driver_is_resumed_by_the_cli(tmp_path: Path) -> None:
    folder, gate, db = tmp_path / "effects", tmp_path / "gate", tmp_path / "state" / "runs.db"
    env = {
        **os.environ,
        "AGENTMESH_STATE_DIR": str(db.parent),
        EFFECTS_ENV: str(folder),
    }
    env.pop("RAY_ADDRESS", None)
    run_id = "killed-run"
    log = tmp_path / "driver.log"
    with log.open("wb") as out:
        driver = subprocess.Popen(
            [sys.executable, "-m", "tests.durable_mesh", run_id, str(gate)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to sweep up after the kill
        )
    try:
        _wait_for(Path(f"{gate}.reached"), driver, log, timeout_s=300)
        os.kill(driver.pid, signal.SIGKILL)  # mid-node: b made its effect and waits
        assert driver.wait(timeout=30) == -signal.SIGKILL
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)  # whatever of its Ray outlived it
        driver.wait(timeout=30)
    assert [e["entry"] for e in effects(folder)] == ["a", "b"]

    cut_off = _runs(env, db)[run_id]
    assert (cut_off["state"], cut_off["nodes_done"], cut_off["nodes_total"]) == ("running", 1, 3)

    gate.write_text("go on")
    resumed = subprocess.run(
        [CLI, "resume", run_id, "--store", str(db)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "Task DAG" in resumed.stdout and "recorded a recorded b recorded c" in resumed.stdout
    done = effects(folder)
    assert sorted(e["entry"] for e in done) == ["a", "b", "c"]  # each exactly once
    assert all(e["key"].startswith(f"{run_id}:{e['entry']}:") for e in done)
    finished = _runs(env, db)[run_id]
    assert (finished["state"], finished["nodes_done"]) == ("succeeded", 3)
