"""A tamper-evident audit log of every security decision, and its verifier.

Each security actor appends every :class:`~agentmesh.security.Decision` it makes to its own
append-only JSON-lines file, hash-chained (format and checks: ``_private/audit_chain.py``);
``agentmesh audit verify PATH`` (or :func:`verify_audit`) names the first entry that was edited,
removed, inserted or reordered. Reasons and scanner excerpts are redacted before they are
written (:func:`agentmesh.redact`); the content hash stays, so a reviewer holding the content
can still match it to its entry.

Threat model. A plain hash chain proves the file is self-consistent: an edit, a removed or
inserted line or a reordering breaks it. It does not stop someone who can rewrite the whole
file from recomputing every hash, nor notice a cut-off tail (the shorter file is consistent).
Two things cover that, and either is enough: a secret key (``key=``; the chain is HMAC-SHA-256,
so a rewrite without the key does not verify), or a head hash kept somewhere the attacker cannot
write (:meth:`AuditLog.head`, :meth:`Mesh.audit_heads`; ``verify_audit(heads=...)``, or
``--anchor`` on the command line), which also detects a cut-off tail.

Layout: one file per writer (per security actor, named by its node), never shared, so a pool of
actors needs no cross-process locking, each file is a complete chain whose gaps are visible, and
an actor on another node writes to its own disk. A lock makes one writer safe for threads.

Durability: each entry is one ``write()`` of the whole line to a file opened ``O_APPEND``
before the decision is returned, so it survives the process dying or being killed; a machine
crash may lose the last entries unless ``fsync=True`` (one ``fsync`` per decision, roughly
0.1-10 ms by disk). ``close()`` always fsyncs. A crash mid-write leaves a last line with no
newline; the verifier reports it as a torn tail, not as tampering.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import JsonValue

from agentmesh._private.audit_chain import (
    FORMAT,
    AuditEntry,
    AuditHead,
    AuditHeader,
    AuditReport,
    LogReport,
    canonical,
    digest,
    genesis,
    verify_path,
)
from agentmesh._private.decisions import Decision
from agentmesh._private.redact import redact
from agentmesh._private.tool_vetting import STATE_DIR_ENV
from agentmesh.errors import ConfigError, RunError

__all__ = [
    "AuditEntry",
    "AuditHead",
    "AuditLog",
    "AuditReport",
    "LogReport",
    "default_audit_dir",
    "redact_decision",
    "verify_audit",
]

_WRITER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def default_audit_dir() -> Path:
    """``$AGENTMESH_STATE_DIR/audit``, else ``./.agentmesh/audit`` (beside the tool pins)."""
    state = os.environ.get(STATE_DIR_ENV)
    return (Path(state) if state else Path.cwd() / ".agentmesh") / "audit"


def redact_decision(decision: Decision) -> Decision:
    """``decision`` with its reason and every finding's excerpt redacted; all else unchanged."""
    reason = redact(decision.reason)
    excerpts = [redact(f.excerpt) for f in decision.findings]
    if reason == decision.reason and excerpts == [f.excerpt for f in decision.findings]:
        return decision  # nothing to hide: no copy
    findings = [
        f.model_copy(update={"excerpt": e})
        for f, e in zip(decision.findings, excerpts, strict=True)
    ]
    return decision.model_copy(update={"reason": reason, "findings": findings})


def _check_key(key: bytes | None) -> bytes | None:
    if key is not None and (not isinstance(key, bytes) or len(key) < 16):
        raise ConfigError("an audit key is bytes, at least 16 of them")
    return key


class AuditLog:
    """One writer's append-only, hash-chained log file (created here; never reopened).

    ``path`` must not exist: a second writer on one chain would fork it. A pickled copy (Ray
    ships monitors this way) becomes a new writer with its own file in the same directory.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        key: bytes | None = None,
        fsync: bool = False,
        writer: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.writer = writer or self.path.stem
        self.log_id = uuid.uuid4().hex
        self._key = _check_key(key)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._broken: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
            self._fd: int | None = os.open(self.path, flags, 0o600)
        except FileExistsError:
            raise ConfigError(f"audit log {self.path} exists; each writer starts its own") from None
        except OSError as exc:
            raise ConfigError(f"cannot create audit log {self.path}: {exc.strerror}") from None
        alg = "hmac-sha256" if key is not None else "sha256"
        body: dict[str, JsonValue] = {
            "v": FORMAT,
            "log": self.log_id,
            "seq": 0,
            "prev": genesis(self.log_id, key),
            "alg": alg,
            "writer": self.writer,
            "created": time.time(),
        }
        self._head = digest(canonical(body), key)
        self._seq = 0
        self._write(canonical({**body, "hash": self._head}) + b"\n")
        if fsync:  # the new file's name, too
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self.header = AuditHeader.model_validate({**body, "hash": self._head})

    @classmethod
    def create(
        cls,
        directory: str | os.PathLike[str],
        *,
        writer: str = "audit",
        key: bytes | None = None,
        fsync: bool = False,
    ) -> AuditLog:
        """A new log in ``directory``: ``<writer>-<UTC time>-<random>.jsonl``."""
        if not _WRITER.match(writer):
            raise ConfigError(f"an audit writer name is 1-64 of [A-Za-z0-9._-], not {writer!r}")
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = Path(directory) / f"{writer}-{stamp}-{uuid.uuid4().hex[:8]}.jsonl"
        return cls(path, key=key, fsync=fsync, writer=writer)

    def __getstate__(self) -> dict[str, Any]:
        state = {"writer": self.writer, "key": self._key, "fsync": self._fsync}
        return {"directory": str(self.path.parent), **state}

    def __setstate__(self, state: dict[str, Any]) -> None:
        writer = re.sub(r"[^A-Za-z0-9._-]", "_", state["writer"])[:64] or "audit"
        fresh = AuditLog.create(
            state["directory"], writer=writer, key=state["key"], fsync=state["fsync"]
        )
        self.__dict__.update(fresh.__dict__)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def head(self) -> AuditHead:
        """The last entry written: anchor it elsewhere to detect a cut-off tail or a rewrite."""
        with self._lock:
            return AuditHead(
                log_id=self.log_id, path=str(self.path), seq=self._seq, hash=self._head
            )

    def append(self, decision: Decision) -> AuditEntry:
        """Redact and write one decision as the next entry; RunError if it cannot be written
        (the caller should fail closed: an unrecorded decision is not a decision)."""
        record = redact_decision(decision)
        data = record.model_dump(mode="json")
        with self._lock:
            if self._fd is None:
                raise RunError(f"audit log {self.path} is closed")
            seq, prev, alg = self._seq + 1, self._head, self.header.alg
            body: dict[str, JsonValue] = {"v": FORMAT, "log": self.log_id, "seq": seq}
            body |= {"prev": prev, "alg": alg}
            payload = canonical({**body, "decision": data})
            entry_hash = digest(payload, self._key)
            # "hash" sorts between "decision" and "log"; the last ',"log":' is the top-level one
            # (only hex and numbers follow it), so splicing gives canonical() of the whole entry.
            cut = payload.rindex(b',"log":')
            line = b'%s,"hash":"%s"%s\n' % (payload[:cut], entry_hash.encode(), payload[cut:])
            self._write(line)
            self._seq, self._head = seq, entry_hash
        return AuditEntry(
            v=1, log=self.log_id, seq=seq, prev=prev, alg=alg, decision=record, hash=entry_hash
        )

    def _write(self, line: bytes) -> None:
        if self._broken is not None:
            raise RunError(f"audit log {self.path} is broken ({self._broken}); start a new one")
        assert self._fd is not None
        view = memoryview(line)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
            if self._fsync:
                os.fsync(self._fd)
        except OSError as exc:
            self._broken = exc.strerror or str(exc)
            raise RunError(f"cannot append to audit log {self.path}: {self._broken}") from None

    def close(self) -> None:
        """Flush the file to disk and close it; appending afterwards raises RunError."""
        with self._lock:
            if self._fd is None:
                return
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def verify_audit(
    path: str | os.PathLike[str],
    *,
    key: bytes | None = None,
    heads: Sequence[AuditHead] = (),
) -> AuditReport:
    """Verify one audit log file, or every ``*.jsonl`` log in a directory.

    ``key`` verifies keyed logs (and makes an unkeyed log a failure: it may be a rewrite).
    ``heads`` are anchored heads (from :meth:`AuditLog.head`): a log whose tail is cut below its
    anchor, or whose anchored entry changed, fails; for a directory, an anchored log that is
    gone fails too. A torn last line (a crash mid-write) sets ``torn_tail`` but not ``ok=False``.

    Raises:
        ConfigError: ``path`` does not exist, or the key is not bytes of at least 16.
    """
    where = Path(path)
    if not where.exists():
        raise ConfigError(f"no audit log or directory at {where}")
    return verify_path(where, _check_key(key), heads)
