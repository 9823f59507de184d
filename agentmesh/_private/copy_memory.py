"""What a run has read from untrusted sources, as word shingles, for the copy check.

The security actor remembers, per run (the A2A context id every task of one ``Mesh.call`` or
``Mesh.run`` shares), the hashes of every run of ``words`` consecutive normalised words in the
untrusted tool results and remote agents' replies it let through, and the same of the user's
own messages. An outbound text holding a remembered untrusted run that the user did not also
write was copied from untrusted data. Hashes, not text: nothing read is kept.

Memory is bounded: at most ``max_shingles`` hashes in all (the least recently used runs are
forgotten first) and ``max_shingles // 4`` per run (past that, a run's new reads are not
remembered: the check then misses copies of them). Per security actor: a run whose agents are
vetted by different actors (a pool, several nodes) is remembered in pieces.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CopyMemory", "words"]

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The text's words, case-folded (punctuation and spacing do not hide a copy)."""
    return _WORD.findall(text.casefold())


def _shingles(text: str, n: int) -> list[int]:
    """A 64-bit hash of every run of ``n`` words. Deterministic across processes (CRC-32 per
    word, then the tuple hash of ints, which Python does not salt) so a pickled memory holds."""
    ids = [zlib.crc32(w.encode()) for w in words(text)]
    return [hash(tuple(ids[i : i + n])) for i in range(len(ids) - n + 1)]


@dataclass
class _Run:
    untrusted: set[int] = field(default_factory=set)
    trusted: set[int] = field(default_factory=set)
    sources: list[str] = field(default_factory=list)

    def size(self) -> int:
        return len(self.untrusted) + len(self.trusted)


class CopyMemory:
    """Shingles of untrusted (and the user's trusted) text per run; thread-safe, picklable."""

    def __init__(self, words: int, *, max_shingles: int = 400_000, max_runs: int = 1024) -> None:
        self.words = words
        self.max_shingles = max_shingles
        self.max_runs = max_runs
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def remember(self, context: str | None, text: str, *, trusted: bool, source: str) -> None:
        """Remember ``text`` (from ``source``) as read in run ``context``."""
        if not self.words or not context:
            return
        hashes = _shingles(text, self.words)
        if not hashes:
            return
        with self._lock:
            run = self._runs.pop(context, None) or _Run()
            self._runs[context] = run  # most recently used last
            room = max(0, self.max_shingles // 4 - run.size())
            before = run.size()
            (run.trusted if trusted else run.untrusted).update(hashes[:room])
            self._size += run.size() - before
            if not trusted and source not in run.sources and len(run.sources) < 8:
                run.sources.append(source)
            while len(self._runs) > 1 and (
                self._size > self.max_shingles or len(self._runs) > self.max_runs
            ):
                _, old = self._runs.popitem(last=False)
                self._size -= old.size()

    def copied(self, context: str | None, text: str) -> tuple[int, list[str]]:
        """The longest run of words in ``text`` copied from untrusted data this run read (0:
        none of at least ``words``) and where that data came from."""
        if not self.words or not context:
            return 0, []
        with self._lock:
            run = self._runs.get(context)
            if run is None or not run.untrusted:
                return 0, []
            flags = [
                h in run.untrusted and h not in run.trusted for h in _shingles(text, self.words)
            ]
            sources = list(run.sources)
        longest = streak = 0
        for flag in flags:
            streak = streak + 1 if flag else 0
            longest = max(longest, streak)
        return (longest + self.words - 1 if longest else 0), sources
