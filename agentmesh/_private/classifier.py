"""The detector's learned layer: a small torch model over MiniLM embeddings of the text.

Input: the scanner's readable text (normalised, markup and YAML folded, payloads decoded; see
``scanner.Inspection``), cut into segments of a sentence or a few (``segments``), each embedded
by all-MiniLM-L6-v2 (``embedding.py``; its first layers, with the adapters the weights carry
merged in: ``Adapter``, ``finetune.py``) and joined with the rules' evidence (the combined score
and the strongest finding per category). A one-hidden-layer MLP scores every segment and the
text takes the highest: an injection is usually a sentence or two inside benign text, and one
embedding of the whole text would drown it. A lexical channel (``lexical.py``: hashed word and
character n-grams, a linear model trained with the MLP) adds its logit to each segment's. The
output is a probability, shifted so that the
operating point chosen at training time (``Weights.threshold_note``) reads 0.5.

Cost bound: the encoder's time grows with the tokens it reads, so it reads at most
``max_segments`` segments of at most ``max_tokens`` tokens. A longer text keeps the segments
with the most instruction-like words (``CUES``; the rules still read all of it), so an
injection hidden among many instruction-like sentences of a long document may escape this layer.

The weights are a JSON file inside the package (``data/injection_classifier.json``, 0.7 MB),
written by ``python -m agentmesh._private.train_detector``. Everything here loads lazily; when
torch, the model package or the weights are missing, ``load`` says why and the detector runs
its rules alone.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentmesh._private.lexical import ngram_ids, unpack
from agentmesh._private.scanner import CATEGORIES, Inspection, score

if TYPE_CHECKING:
    import torch

    from agentmesh._private.embedding import MiniLM

__all__ = [
    "CATEGORY_ORDER",
    "CUES",
    "Adapter",
    "Classifier",
    "Lexical",
    "Unavailable",
    "Weights",
    "load",
    "of",
    "readable",
    "rules_row",
    "segments",
    "segments_of",
]

WEIGHTS_FILE = "injection_classifier.json"
#: The rule categories in the order of the classifier's rule features.
CATEGORY_ORDER = tuple(sorted(CATEGORIES))
CUES = re.compile(
    r"\b(?:you|your|yourself|assistant|ai|model|agent|bot|llm|gpt|system|prompt|instructions?"
    r"|ignore|disregard|forget|override|must|now|immediately|urgent|important|please|kindly"
    r"|send|forward|e-?mail|upload|post|reveal|print|output|repeat|delete|approve|transfer"
    r"|execute|run|call|tool|secret|password|keys?|tokens?|credentials?|user|reply|answer"
    r"|respond|say|tell|task|mode|pretend|act|role|rules?|new|stop|instead|never|always"
    r"|obey|comply|admin|developer|do|don't|hidden|real|actual|note|reminder)\b"
)
_SHORT = 60  # a segment shorter than this takes the next sentence along
_SENTENCE = re.compile(r"[^\n]*?(?:[.!?]+(?=\s)|\n|$)")  # a stop and a space end one


class Lexical(BaseModel):
    """The lexical channel (``lexical.py``): one weight per hash bucket, packed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    buckets: int = Field(gt=0)
    chars: list[int]
    weights: str  # lexical.pack of ``buckets`` float16 values

    @model_validator(mode="after")
    def _weights_fill_the_buckets(self) -> Lexical:
        if len(unpack(self.weights)) != self.buckets:
            raise ValueError(f"lexical weights do not hold {self.buckets} buckets")
        return self


class Adapter(BaseModel):
    """Low-rank changes to the encoder's weights (``finetune.py``): for each adapted weight W
    (out, in), ``a`` (rank, in) and ``b`` (out, rank), packed as the lexical weights are; the
    encoder runs ``W + b @ a``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rank: int = Field(gt=0)
    a: dict[str, str]
    b: dict[str, str]

    @model_validator(mode="after")
    def _pairs_of_rank(self) -> Adapter:
        if self.a.keys() != self.b.keys():
            raise ValueError("adapter a and b name different weights")
        for name in self.a:
            if len(unpack(self.a[name])) % self.rank or len(unpack(self.b[name])) % self.rank:
                raise ValueError(f"adapter of {name} is not of rank {self.rank}")
        return self

    def deltas(self) -> dict[str, torch.Tensor]:
        """Each adapted weight's change ``b @ a``, by weight name."""
        import torch

        def matrix(packed: str, shape: tuple[int, int]) -> torch.Tensor:
            return torch.tensor(unpack(packed)).view(shape)

        r = self.rank
        return {n: matrix(self.b[n], (-1, r)) @ matrix(self.a[n], (r, -1)) for n in self.a}


class Weights(BaseModel):
    """The shipped model: segmentation, a one-hidden-layer MLP, the encoder's adapters (when it
    was fine-tuned), and its calibration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 1
    embedding: str
    pooling: str
    segment_chars: int
    max_segments: int
    max_tokens: int
    layers: int = 6
    categories: list[str]
    w1: list[list[float]]
    b1: list[float]
    w2: list[float]
    b2: float
    lexical: Lexical | None = None
    adapter: Adapter | None = None
    shift: float
    threshold_note: str
    training: dict[str, str | int | float]


class Unavailable(BaseModel):
    """Why the learned layer cannot run here (the detector reports it in its reasons)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str


def _pieces(text: str, max_chars: int) -> Iterator[str]:
    """Sentences (and lines), a sentence longer than ``max_chars`` cut at spaces."""
    for m in _SENTENCE.finditer(text):
        piece = m.group(0).strip()
        while len(piece) > max_chars:
            cut = piece.rfind(" ", max_chars // 2, max_chars)
            cut = cut if cut > 0 else max_chars
            yield piece[:cut]
            piece = piece[cut:].strip()
        if piece:
            yield piece


def readable(piece: str) -> bool:
    """Whether a piece reads as words: encoded runs (hex, base64, %-escapes) do not, and the
    scanner appends their decoded text, which is what the classifier should judge. Left in,
    an encoded run teaches the model "encoded means hostile", and benign encoded text (a
    checksum, an attachment, a hex dump) is flagged for its look."""
    tokens = piece.split()
    wordy = sum(len(t) for t in tokens if len(t) <= 24 and _letters(t) >= 0.6 * len(t))
    return bool(tokens) and wordy >= 0.4 * sum(map(len, tokens))


def _letters(token: str) -> int:
    return sum(c.isalpha() for c in token)


def segments(text: str, *, max_chars: int, limit: int) -> list[str]:
    """Sentences, a short one joined to the next (up to ``max_chars``); past ``limit`` segments,
    the ``limit`` with the most cue words (ties: the earlier), in text order. Linear in the
    text. Sentence-sized, so an injected sentence is not averaged with its benign neighbours.
    Pieces that do not read as words (:func:`readable`) are left out.
    """
    chunks: list[str] = []
    for piece in filter(readable, _pieces(text, max_chars)):
        if chunks and len(chunks[-1]) < _SHORT and len(chunks[-1]) + 1 + len(piece) <= max_chars:
            chunks[-1] += " " + piece
        else:
            chunks.append(piece)
    if len(chunks) <= limit:
        return chunks
    cues = [len(CUES.findall(chunk.lower())) for chunk in chunks]
    best = sorted(range(len(chunks)), key=lambda i: (-cues[i], i))[:limit]
    return [chunks[i] for i in sorted(best)]


def segments_of(inspection: Inspection, weights: Weights) -> list[str]:
    """The segments of the inspected text that the encoder reads (at least one)."""
    found = segments(inspection.text, max_chars=weights.segment_chars, limit=weights.max_segments)
    return found or [""]


def rules_row(inspection: Inspection) -> list[float]:
    """The rules' evidence as features: the combined score, the strongest score per category."""
    strongest = dict.fromkeys(CATEGORY_ORDER, 0.0)
    for f in inspection.findings:
        strongest[f.category] = max(strongest[f.category], f.score)
    return [score(inspection.findings), *strongest.values()]


class Classifier:
    """The loaded layer: encoder and MLP; ``probability`` is its calibrated score in [0, 1]."""

    def __init__(self, weights: Weights, encoder: MiniLM) -> None:
        import torch

        self.weights = weights
        self.encoder = encoder
        self._w1 = torch.tensor(weights.w1)
        self._b1 = torch.tensor(weights.b1)
        self._w2 = torch.tensor(weights.w2)
        lexical = weights.lexical
        self._lexical = None if lexical is None else torch.tensor(unpack(lexical.weights))
        self._torch = torch

    def logits(self, rows: torch.Tensor) -> torch.Tensor:
        """Raw segment logits (before the calibration shift) for feature rows (n, features)."""
        hidden = self._torch.relu(rows @ self._w1.T + self._b1)
        return hidden @ self._w2 + self.weights.b2

    def lexical(self, texts: list[str]) -> torch.Tensor:
        """Each segment's lexical-channel logit (zeros when the weights have no channel)."""
        spec, table = self.weights.lexical, self._lexical
        if spec is None or table is None:
            return self._torch.zeros(len(texts))
        chars = tuple(spec.chars)
        return self._torch.stack(
            [table[ngram_ids(t, buckets=spec.buckets, chars=chars)].mean() for t in texts]
        )

    def raw(self, inspection: Inspection) -> float:
        """The text's logit before the calibration shift: its highest segment's."""
        torch = self._torch
        texts = segments_of(inspection, self.weights)
        embedded = self.encoder.embed(texts)
        rules = torch.tensor(rules_row(inspection), dtype=embedded.dtype)
        rows = torch.cat([embedded, rules.expand(len(embedded), -1)], dim=1)
        with torch.inference_mode():
            return float((self.logits(rows) + self.lexical(texts)).max())

    def probability(self, inspection: Inspection) -> float:
        """The calibrated probability that the inspected text is an injection."""
        return 1.0 / (1.0 + math.exp(-(self.raw(inspection) + self.weights.shift)))


def read_weights() -> Weights:
    """The shipped weights; FileNotFoundError or ValidationError when absent or malformed."""
    data = importlib.resources.files("agentmesh._private").joinpath("data", WEIGHTS_FILE)
    return Weights.model_validate_json(data.read_text(encoding="utf-8"))


@functools.cache
def load() -> Classifier | Unavailable:
    """The learned layer, loaded once per process; or why it cannot run here."""
    try:
        weights = read_weights()
    except (FileNotFoundError, ValidationError, ValueError) as exc:
        return Unavailable(reason=f"no usable classifier weights ({type(exc).__name__})")
    if weights.categories != list(CATEGORY_ORDER):
        return Unavailable(reason="classifier weights were trained on other rule categories")
    try:
        return of(weights)
    except ImportError as exc:
        return Unavailable(reason=f"learned layer needs torch and {weights.embedding}: {exc}")


def of(weights: Weights) -> Classifier:
    """The layer for ``weights`` (its encoder in the fastest precision here, adapters merged);
    ImportError without torch or the model package."""
    from agentmesh._private.embedding import load_minilm

    encoder = load_minilm(
        max_tokens=weights.max_tokens,
        pooling=weights.pooling,
        dtype="auto",
        layers=weights.layers,
        deltas=None if weights.adapter is None else weights.adapter.deltas(),
    )
    return Classifier(weights, encoder)
