"""The detector's lexical channel: hashed word and character n-grams, fastText style.

Why: the MiniLM segment embedding (``classifier.py``) generalises over meaning but blurs the exact
imperative phrasing an injection is made of ("ignore the previous", "you must now", "forward ...
to"); a bag of n-grams keeps it. Each segment becomes bucket ids (word unigrams and bigrams, and
character n-grams of each word with its boundaries, hashed with CRC-32 into ``buckets``); the
learned layer adds the mean of their learned weights to the segment's MLP logit (a hashed linear
model trained jointly with the MLP). Fed into the MLP as an 8-wide embedding instead, it overfitted
(out of fold 0.917 against 0.952 without it). Hashing is stable across processes and platforms
(CRC-32 of the UTF-8 bytes, not Python's salted ``hash``), so training and inference see the same
ids.

Cost: linear in the segment's length, pure Python, a fraction of a millisecond per
200-character segment.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import struct
import zlib
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import torch

__all__ = ["Bags", "ngram_ids", "pack", "unpack"]

_TOKEN = re.compile(r"[a-z0-9']+|[^\sa-z0-9]+")


def ngram_ids(text: str, *, buckets: int, chars: tuple[int, ...] = (3, 4)) -> list[int]:
    """Bucket ids of ``text``'s n-grams (lower-cased): word unigrams and bigrams, and the
    character n-grams of each word of letters and digits (lengths in ``chars``, the word
    bracketed by ``<`` and ``>`` so that prefixes and suffixes count apart). Never empty:
    a text without tokens maps to the id of the empty text."""
    words = _TOKEN.findall(text.lower())
    grams = [f"w {w}" for w in words]
    grams += [f"b {a} {b}" for a, b in itertools.pairwise(words)]
    for w in words:
        if w[0].isalnum() and len(w) > 1:
            padded = f"<{w}>"
            for n in chars:
                grams += [padded[i : i + n] for i in range(len(padded) - n + 1)]
    return [zlib.crc32(g.encode("utf-8", "surrogatepass")) % buckets for g in grams or [""]]


class Bags(NamedTuple):
    """The bucket ids of many segments, packed: segment ``i`` owns
    ``flat[starts[i] : starts[i] + lens[i]]``."""

    flat: torch.Tensor
    starts: torch.Tensor
    lens: torch.Tensor

    @classmethod
    def of(cls, texts: list[str], *, buckets: int, chars: tuple[int, ...]) -> Bags:
        """The packed ids of ``texts``."""
        import torch

        ids = [ngram_ids(t, buckets=buckets, chars=chars) for t in texts]
        lens = torch.tensor([len(i) for i in ids])
        flat = torch.tensor([j for i in ids for j in i])
        return cls(flat, torch.cumsum(lens, 0) - lens, lens)

    def take(self, segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, offsets) of ``segments`` (row indices), as ``torch.nn.EmbeddingBag`` reads them."""
        import torch

        lens = self.lens[segments]
        offsets = torch.cumsum(lens, 0) - lens
        shift = torch.repeat_interleave(self.starts[segments] - offsets, lens)
        return self.flat[shift + torch.arange(int(lens.sum()))], offsets


def pack(values: list[float]) -> str:
    """Bucket weights as base64 of little-endian float16: a quarter of the size of a JSON list
    of the same numbers, and float16's precision (about 3 digits) is more than the weights carry."""
    return base64.b64encode(struct.pack(f"<{len(values)}e", *values)).decode("ascii")


def unpack(text: str) -> list[float]:
    """The weights :func:`pack` wrote; ValueError when ``text`` is not such a string."""
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"lexical weights are not base64: {exc}") from exc
    if len(raw) % 2:
        raise ValueError("lexical weights have an odd number of bytes")
    return list(struct.unpack(f"<{len(raw) // 2}e", raw))
