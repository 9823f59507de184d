"""The audit log's hash chain: the line schemas, hashing, and the verifier behind ``verify_audit``.

One log file is a header line (entry #0: the log id, the writer, the algorithm) followed by one
line per decision (#1, #2, ...). Each line is canonical JSON (sorted keys, no spaces, ASCII) of
the entry with ``hash`` = digest(canonical JSON of the entry without ``hash``), where digest is
SHA-256, or HMAC-SHA-256 under the log's key. Each entry's ``prev`` is the hash before it; the
header's ``prev`` is the genesis value, digest("agentmesh-audit-v1" NUL log id), so a line
copied from another log, or a header swapped in from one, does not chain.

The verifier walks the lines once, stops at the first bad one, and names what happened there:
a line that does not parse (``malformed``), an entry whose hash does not match its content
(``edited``), a sequence gap (``removed``), an entry out of place (``reordered``), an entry that
is not part of the chain (``inserted``), an anchored head beyond the end (``truncated``). A last
line with no newline is a write cut short by a crash (``torn_tail``): reported, never counted,
and not tampering.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from agentmesh._private.decisions import Decision

__all__ = [
    "FORMAT",
    "AuditEntry",
    "AuditHead",
    "AuditHeader",
    "AuditReport",
    "Issue",
    "LogReport",
    "canonical",
    "digest",
    "genesis",
    "verify_path",
]

FORMAT = 1
_TAG = b"agentmesh-audit-v1\x00"
_HEX = r"^[0-9a-f]{64}$"

Alg = Literal["sha256", "hmac-sha256"]
Issue = Literal[
    "malformed",
    "edited",
    "removed",
    "reordered",
    "inserted",
    "truncated",
    "missing",
    "wrong_key",
    "key_required",
    "unkeyed",
]


def canonical(obj: JsonValue) -> bytes:
    """The one byte form that is hashed and written: sorted keys, no spaces, ASCII only."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii")


def digest(payload: bytes, key: bytes | None) -> str:
    """SHA-256, or HMAC-SHA-256 under ``key``, as hex."""
    if key is None:
        return hashlib.sha256(payload).hexdigest()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def genesis(log_id: str, key: bytes | None) -> str:
    """The ``prev`` of a log's header: ties the chain to its log id (and key)."""
    return digest(_TAG + log_id.encode("utf-8"), key)


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1]
    log: str = Field(min_length=1, max_length=128)
    seq: int = Field(ge=0)
    prev: str = Field(pattern=_HEX)
    alg: Alg
    hash: str = Field(pattern=_HEX)


class AuditHeader(_Line):
    """Entry #0 of a log: who writes it and how it is hashed."""

    seq: Literal[0] = 0
    writer: str
    created: float


class AuditEntry(_Line):
    """One recorded decision (reason and excerpts already redacted) and its place in the chain."""

    seq: int = Field(ge=1)
    decision: Decision


class AuditHead(BaseModel):
    """The last entry of one log: anchor it elsewhere to detect a cut tail or a full rewrite."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    log_id: str
    path: str
    seq: int = Field(ge=0)
    hash: str = Field(pattern=_HEX)


class LogReport(BaseModel):
    """The verdict on one log file."""

    path: str
    log_id: str | None = None
    ok: bool
    entries: int = Field(ge=0, description="decision entries verified, before any problem")
    head: str | None = Field(default=None, description="hash of the last verified entry")
    issue: Issue | None = None
    problem: str | None = None
    bad_seq: int | None = None
    bad_line: int | None = None
    torn_tail: bool = False


class AuditReport(BaseModel):
    """The verdict on a log file or a directory of them; the first problem found is on top."""

    ok: bool
    entries: int = Field(ge=0)
    first_bad_seq: int | None = None
    first_bad_line: int | None = None
    path: str | None = Field(default=None, description="the log with the first problem")
    issue: Issue | None = None
    problem: str | None = None
    torn_tail: bool = False
    logs: list[LogReport] = []


class _Bad(Exception):
    def __init__(self, issue: Issue, seq: int | None, line: int | None, text: str) -> None:
        super().__init__(text)
        self.issue, self.seq, self.line, self.text = issue, seq, line, text


def _parse(raw: bytes) -> dict[str, JsonValue] | str:
    """The line's object, or what is wrong with it."""
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"is not JSON ({exc})"
    if not isinstance(obj, dict):
        return "is not a JSON object"
    return obj if canonical(obj) == raw else "is not in canonical form (hand-edited)"


def _invalid(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(map(str, err['loc'])) or 'entry'}: {err['msg']}"


def _header(obj: dict[str, JsonValue], key: bytes | None) -> AuditHeader:
    if obj.get("seq") != 0:
        raise _Bad(
            "removed", 0, 1, f"the header (entry #0) is missing: line 1 is #{obj.get('seq')}"
        )
    try:
        header = AuditHeader.model_validate(obj)
    except ValidationError as exc:
        raise _Bad("malformed", 0, 1, f"the header (line 1) is invalid: {_invalid(exc)}") from None
    if header.alg == "hmac-sha256" and key is None:
        raise _Bad("key_required", 0, 1, "the log is keyed (HMAC): pass its key to verify it")
    if header.alg == "sha256" and key is not None:
        raise _Bad("unkeyed", 0, 1, "a key was given but the log is not keyed: it may be a rewrite")
    body = canonical({k: v for k, v in obj.items() if k != "hash"})
    if header.prev != genesis(header.log, key) or digest(body, key) != header.hash:
        if key is not None:
            text = "the header does not verify under this key: a wrong key, or a rewrite without it"
            raise _Bad("wrong_key", 0, 1, text)
        raise _Bad("edited", 0, 1, "the header (entry #0, line 1) was edited")
    return header


def _walk(lines: list[bytes], key: bytes | None, hashes: list[str]) -> str:
    """Check every line in order, appending each verified hash; the log id, or _Bad."""
    objs = [_parse(raw) for raw in lines]
    seqs = [o.get("seq") if isinstance(o, dict) else None for o in objs]
    if not objs:
        raise _Bad("removed", 0, None, "the file is empty: its header (entry #0) is missing")
    if isinstance(objs[0], str):
        raise _Bad("malformed", 0, 1, f"line 1 {objs[0]}")
    header = _header(objs[0], key)
    hashes.append(header.hash)
    where = {0: 1}  # seq -> line of its verified entry
    for n, obj in enumerate(objs[1:], 2):
        expected, follows = len(hashes), len(hashes) in seqs[n:]
        if isinstance(obj, str):
            raise _Bad("malformed", expected, n, f"line {n} {obj}")
        try:
            entry = AuditEntry.model_validate(obj)
        except ValidationError as exc:
            raise _Bad("malformed", expected, n, f"line {n} is invalid: {_invalid(exc)}") from None
        seq, label = entry.seq, f"entry #{entry.seq} (line {n})"
        if entry.log != header.log:
            raise _Bad("inserted", seq, n, f"{label} belongs to another log ({entry.log})")
        if entry.alg != header.alg:
            raise _Bad("edited", seq, n, f"{label} has alg {entry.alg}, not {header.alg}")
        forged = f"line {n} is a forged entry #{expected}: the real one follows"
        if digest(canonical({k: v for k, v in obj.items() if k != "hash"}), key) != entry.hash:
            if seq == expected and follows:
                raise _Bad("inserted", expected, n, forged)
            raise _Bad("edited", seq, n, f"{label} was edited: its hash does not match")
        if seq > expected and follows:
            raise _Bad("reordered", expected, n, f"{label} comes before entry #{expected}")
        if seq > expected:
            gap = f"#{expected}" + (f"..#{seq - 1}" if seq - 1 > expected else "")
            raise _Bad("removed", expected, n, f"entry {gap} is missing before line {n}")
        if seq < expected:
            if hashes[seq] == entry.hash:
                text = f"{label} is a copy of line {where[seq]}: an inserted (replayed) line"
            else:
                text = f"{label} and line {where[seq]} both claim #{seq}: one was inserted"
            raise _Bad("inserted", seq, n, text)
        if entry.prev != hashes[-1]:
            if follows:
                raise _Bad("inserted", expected, n, forged)
            text = f"{label} does not chain to entry #{seq - 1} (line {where[seq - 1]}): "
            raise _Bad("edited", seq - 1, where[seq - 1], text + "that entry was replaced")
        hashes.append(entry.hash)
        where[seq] = n
    return header.log


def _verify_file(path: Path, key: bytes | None) -> tuple[LogReport, list[str]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        text = f"cannot read it: {exc.strerror or exc}"
        return LogReport(path=str(path), ok=False, entries=0, issue="malformed", problem=text), []
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    torn = (
        f"; its last line (line {len(lines) + 1}) is incomplete, a write cut short" if tail else ""
    )
    hashes: list[str] = []
    report = LogReport(path=str(path), ok=True, entries=0, torn_tail=bool(tail))
    log_id: str | None = None
    try:
        log_id = _walk(lines, key, hashes)
    except _Bad as bad:
        update = {"ok": False, "issue": bad.issue, "problem": bad.text + torn, "bad_seq": bad.seq}
        report = report.model_copy(update={**update, "bad_line": bad.line})
        log_id = _log_id_of(lines)
    else:
        report.problem = f"intact{torn} (a crash mid-write; not counted)" if tail else None
    report.log_id, report.head = log_id, hashes[-1] if hashes else None
    report.entries = max(0, len(hashes) - 1)
    return report, hashes


def _log_id_of(lines: list[bytes]) -> str | None:
    try:
        log = json.loads(lines[0]).get("log")
    except (IndexError, ValueError, AttributeError):
        return None
    return log if isinstance(log, str) else None


def _anchor(report: LogReport, hashes: list[str], head: AuditHead) -> LogReport:
    """Check a verified log against its anchored head: still there, same hash."""
    if not report.ok:
        return report
    if len(hashes) <= head.seq:
        text = (
            f"the log ends at entry #{len(hashes) - 1} but was anchored at #{head.seq}: "
            "its tail was cut off"
        )
        return report.model_copy(
            update={"ok": False, "issue": "truncated", "problem": text, "bad_seq": len(hashes)}
        )
    if hashes[head.seq] != head.hash:
        text = f"entry #{head.seq} differs from its anchored hash: the log was rewritten"
        return report.model_copy(
            update={"ok": False, "issue": "edited", "problem": text, "bad_seq": head.seq}
        )
    return report


def verify_path(path: Path, key: bytes | None, heads: Sequence[AuditHead]) -> AuditReport:
    """Verify a log file, or every ``*.jsonl`` log in a directory (see ``verify_audit``)."""
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    anchors = {h.log_id: h for h in heads}
    logs: list[LogReport] = []
    seen: dict[str, str] = {}  # log id -> its file
    for file in files:
        report, hashes = _verify_file(file, key)
        if report.ok and report.log_id in seen:  # a whole log copied in beside its original
            text = f"it is a copy of log {report.log_id} ({seen[report.log_id]})"
            report = report.model_copy(update={"ok": False, "issue": "inserted", "problem": text})
        seen.setdefault(report.log_id or "", str(file))
        head = anchors.pop(report.log_id, None) if report.log_id else None
        logs.append(report if head is None else _anchor(report, hashes, head))
    if path.is_dir():  # a single file is checked against its own anchor only
        for head in anchors.values():
            text = f"log {head.log_id} (anchored at #{head.seq}, was {head.path}) is missing"
            missing = {"path": head.path, "log_id": head.log_id, "ok": False, "entries": 0}
            logs.append(LogReport.model_validate({**missing, "issue": "missing", "problem": text}))
    bad = next((log for log in logs if not log.ok), None)
    return AuditReport(
        ok=bad is None,
        entries=sum(log.entries for log in logs),
        first_bad_seq=bad.bad_seq if bad else None,
        first_bad_line=bad.bad_line if bad else None,
        path=bad.path if bad else None,
        issue=bad.issue if bad else None,
        problem=f"{bad.path}: {bad.problem}" if bad else None,
        torn_tail=any(log.torn_tail for log in logs),
        logs=logs,
    )
