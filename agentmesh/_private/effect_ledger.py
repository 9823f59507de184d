"""The ledger of side-effecting tool calls made in runs: its actor and the gateway's client.

See :mod:`agentmesh._private.idempotency` for how the keys are made and why the ledger is an
actor on the driver's node: the run store may be a file only that machine can open.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ray.actor import ActorHandle

from agentmesh._private.idempotency import IDEMPOTENCY_META, CallKey
from agentmesh._private.router import await_ray
from agentmesh.protocols.mcp import ToolResult
from agentmesh.runs import LedgerEntry, RunStore

__all__ = ["EffectLedger", "Meta", "RunLedger"]

logger = logging.getLogger("agentmesh.runs")


class RunLedger:
    """Actor body: the run store's ledger, on the driver's node (where the store's file is)."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def lookup(self, key: str) -> LedgerEntry | None:
        return self.store.get_effect(key)

    def record(self, entry: LedgerEntry) -> None:
        self.store.put_effect(entry)


Meta = dict[str, Any]


class EffectLedger:
    """The tool gateway's side of the ledger: run a side-effecting call at most once per key."""

    def __init__(self) -> None:
        self.handle: ActorHandle | None = None
        """The mesh's :class:`RunLedger` actor; None until the mesh runs a plan."""

    async def once(
        self, tool: str, key: CallKey | None, call: Callable[[Meta | None], Awaitable[ToolResult]]
    ) -> ToolResult:
        """``call(meta)``, unless the ledger holds ``key``'s result: then that result.

        ``key`` None: not a side-effecting call in a run; it is simply made. A result the tool
        flagged as an error is not recorded (a retry should try again). A ledger that cannot
        be reached before the call fails it (calling anyway could repeat an effect); one that
        cannot be written after it is logged, and the result still returned: the effect
        happened, and failing the node now would only make a retry repeat it.
        """
        if key is None:
            return await call(None)
        if self.handle is not None and key.recorded is not False:  # False: known absent
            entry: LedgerEntry | None = await await_ray(
                self.handle.lookup.remote(key.key), what="the run ledger"
            )
            if entry is not None and entry.tool == tool:
                return entry.result.model_copy(update={"duration_s": 0.0})
        result = await call({IDEMPOTENCY_META: key.key})
        if self.handle is not None and not result.is_error:
            entry = LedgerEntry(
                key=key.key,
                run_id=key.run_id,
                step_id=key.step_id,
                tool=tool,
                result=result,
                recorded_at=time.time(),
            )
            try:
                await await_ray(self.handle.record.remote(entry), what="the run ledger")
            except Exception as exc:
                logger.warning("tool %s ran but its ledger entry was lost: %s", tool, exc)
        return result
