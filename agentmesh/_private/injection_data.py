"""The labelled prompt-injection corpus: built deterministically, split by template family.

Benign text comes from what is installed: the descriptions (METADATA) and docstrings of the
distributions agentmesh runs on (``agentmesh[llama,torch]`` and what they require, in turn),
the standard library's docstrings, and Python's own reference topics (``pydoc_data``); each
distribution, module or topic is a *source*. Only the runtime's distributions: a test or lint
tool installed beside them (the ``dev`` extra, a user's own tools) would otherwise change the
corpus, and with it every figure measured on it. Injections are the project's templates
(``injection_templates.py``): payload families in six styles (polite, urgent, role-play, fake
system prompt, delimiter injection, exfiltration request), filled with a goal, hidden by an
obfuscation and dressed by a carrier wrapper (``injection_carriers.py``: tool output JSON,
e-mail, web page, markdown, code comment, YAML, plain message) around a benign filler paragraph.
Benign samples use the same wrappers, with a benign snippet where the payload would be; many
of them carry the trigger words (``TRIGGER_WORDS``) from the sources themselves or from the
project's benign look-alike templates.

The splits. **train** is all the learned layer ever reads. **heldout** is the evaluation split
the goals are measured on: the same payload families, styles and carrier wrappers as training,
but other goals (what the attacker asks for), other benign sources (a source is held out when
the SHA-256 of its name is 0 mod 4) and other random fillings, so no held-out text, goal or
benign paragraph was seen in training. **unseen** is harder still and reported next to it:
payload families, benign template families and carrier wrappers that training never saw
(``HELD_OUT``, ``HELD_OUT_WRAPPERS``), with the held-out goals and sources; it measures how far
the learned layer generalises to new phrasings of an attack. Obfuscations are transformations,
not templates, and are shared. Neither evaluation split is used for training or threshold
tuning. ``Corpus.split_digest`` tells whether a split's texts changed.

Determinism: the same installed packages give the same corpus (sources are read in sorted
order, every random choice comes from a ``random.Random`` seeded by name).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import random
import re
import sysconfig
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from agentmesh._private.injection_carriers import (
    HELD_OUT_WRAPPERS,
    OBFUSCATIONS,
    WRAPPERS,
    obfuscate,
)
from agentmesh._private.injection_templates import (
    BENIGN_TEMPLATES,
    GOALS,
    HELD_OUT,
    PAYLOADS,
    TRIGGER_WORDS,
    composed_goals,
)

__all__ = [
    "TRIGGER_WORDS",
    "Corpus",
    "Sample",
    "Split",
    "build_corpus",
    "has_trigger",
    "is_held_out_source",
]

T = TypeVar("T")
Split = Literal["train", "heldout", "unseen"]
SPLITS: tuple[Split, ...] = ("train", "heldout", "unseen")

# The trigger words by stem, so "ignored", "instruction", "overriding" and "forgot" count too.
_TRIGGER = re.compile(r"\b(?:ignor|instruct|system|password|overrid|forg[eo]t)\w*", re.IGNORECASE)
_TRIPLE = re.compile(r'"""(.{100,4000}?)"""', re.DOTALL)
_CODE_CHARS = frozenset("[]{}=_<>#`|\\/*;$@")
_CODE = re.compile(r"\b(?:def|self\.|elif|lambda)\b|->|>>>")
_OFF_TOPIC = re.compile(r"prompt[\s-]*injection|jailbreak", re.IGNORECASE)
#: The extras whose distributions (with agentmesh's own requirements) are benign sources.
_SOURCE_EXTRAS = ("llama", "torch")
_FILES_PER_SOURCE = 60
_PARAS_PER_SOURCE = 40  # and as many again that hold trigger words
_ADDRS = ("collector@exfil-mail.net", "backup-team@secure-archive.io", "ops@data-sync.biz")
_URLS = ("https://telemetry-cdn.net/c", "https://api.stat-collect.io/v1", "http://45.13.7.9/x")
#: The share of training injections whose goal is a hand-written one (the rest: composed).
_HAND_SHARE = 0.5
_DAYS = ("Monday", "Tuesday", "Thursday", "Friday", "Saturday")


class Sample(BaseModel):
    """One labelled text and every part it was built from (for the disjointness checks)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    injection: bool
    split: Split
    family: str  # payload family, benign template family, or "doc"
    style: str  # payload style, or "benign"
    goal: str | None
    carrier: str
    wrapper: str
    sources: tuple[str, ...]
    obfuscation: str
    trigger: bool  # benign text holding a trigger word


class Corpus(BaseModel):
    """All samples, and a digest of their texts and labels (to tell two corpora apart)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    samples: list[Sample]
    digest: str

    def split(self, name: Split) -> list[Sample]:
        """The samples of one split, in corpus order."""
        return [s for s in self.samples if s.split == name]

    def split_digest(self, name: Split) -> str:
        """A digest of one split's texts and labels: the evaluation splits' digests stay put
        when only the training split grows."""
        return _digest(self.split(name))


def has_trigger(text: str) -> bool:
    """Whether ``text`` holds one of the trigger words (any inflection: "ignored", "forgot")."""
    return _TRIGGER.search(text) is not None


def is_held_out_source(name: str) -> bool:
    """A benign source (distribution or topic) is held out when its name hashes to 0 mod 4."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 4 == 0


def _paragraphs(text: str) -> list[str]:
    """Prose paragraphs of 150-900 characters, one line each; code and tables are left out."""
    found = []
    for block in re.split(r"\n\s*\n", textwrap.dedent(text)):
        para = " ".join(block.split())
        if not 150 <= len(para) <= 900 or _OFF_TOPIC.search(para):
            continue
        letters = sum(c.isalpha() or c == " " for c in para)
        code = sum(c in _CODE_CHARS for c in para)
        if letters < 0.85 * len(para) or code > 0.02 * len(para) or _CODE.search(para):
            continue
        if para[-1] in ".!?:)\"'" and not para.startswith((">>>", "..", "$", "|", "+")):
            found.append(para)
    return found


def _spread(items: list[T], limit: int) -> list[T]:
    """At most ``limit`` items, evenly spaced (deterministic)."""
    if len(items) <= limit:
        return items
    return [items[i * len(items) // limit] for i in range(limit)]


def _keep(texts: list[str]) -> tuple[str, ...]:
    """A source's paragraphs, at most ``_PARAS_PER_SOURCE`` plain and as many with triggers."""
    paras = list(dict.fromkeys(p for t in texts for p in _paragraphs(t)))
    plain = [p for p in paras if not has_trigger(p)]
    triggered = [p for p in paras if has_trigger(p)]
    return tuple(_spread(plain, _PARAS_PER_SOURCE) + _spread(triggered, _PARAS_PER_SOURCE))


def _docstrings(files: list[Path]) -> list[str]:
    texts = []
    for path in _spread(files, _FILES_PER_SOURCE):
        try:
            if path.stat().st_size < 300_000:
                texts.extend(_TRIPLE.findall(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    return texts


@functools.cache
def _sources() -> dict[str, tuple[str, ...]]:
    """Benign paragraphs by source: installed distributions, standard library modules, and
    Python's reference topics."""
    found: dict[str, list[str]] = {}
    for name, dist in _runtime_distributions().items():
        files = sorted(str(f) for f in dist.files or () if str(f).endswith(".py"))
        paths = [Path(str(dist.locate_file(f))) for f in files]
        found[f"pypi:{name}"] = [dist.metadata.get_payload() or "", *_docstrings(paths)]  # type: ignore[attr-defined]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py")):
        found[f"stdlib:{path.stem}"] = _docstrings([path])
    topics: dict[str, str] = {}
    with contextlib.suppress(ImportError):  # some distributions strip the reference topics
        from pydoc_data.topics import topics as reference

        topics = dict(reference)
    for topic, text in topics.items():
        found[f"python:{topic}"] = [text]
    kept = {source: _keep(texts) for source, texts in sorted(found.items())}
    return {source: paras for source, paras in kept.items() if paras}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _runtime_distributions() -> dict[str, importlib.metadata.Distribution]:
    """agentmesh's installed requirements with ``_SOURCE_EXTRAS``, and theirs in turn (markers
    evaluated here), by normalised name, sorted; agentmesh itself is not a source. A
    requirement that is not installed is skipped (an optional one of a dependency)."""
    from packaging.requirements import Requirement

    found: dict[str, importlib.metadata.Distribution] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [("agentmesh", _SOURCE_EXTRAS)]
    seen: set[tuple[str, tuple[str, ...]]] = set()  # a name again with other extras: read it
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if name != "agentmesh":
            found[name] = dist
        for line in dist.requires or ():
            req = Requirement(line)
            wanted = ("", *extras)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in wanted):
                todo.append((_normal(req.name), tuple(sorted(req.extras))))
    return dict(sorted(found.items()))


def _pool(split: Split) -> list[tuple[str, str]]:
    """(source, paragraph) of one split's sources, in a fixed order."""
    return [
        (source, para)
        for source, paras in _sources().items()
        if is_held_out_source(source) == (split != "train")
        for para in paras
    ]


def _in_split(name: str, kind: str, split: Split) -> bool:
    """Goals: training's or the evaluation splits'; templates and wrappers: unseen's or not."""
    held = name in HELD_OUT[kind]
    return held == (split != "train") if kind == "goal" else held == (split == "unseen")


def _fill(rng: random.Random, template: str, goals: list[str]) -> tuple[str, str | None]:
    goal = rng.choice(goals) if "{goal}" in template else None
    text = template.replace("{goal}", goal) if goal else template
    for slot, values in (
        ("{addr}", _ADDRS),
        ("{url}", _URLS),
        ("{day}", _DAYS),
        ("{n}", tuple(str(n) for n in (3, 7, 14, 30, 90, 412))),
    ):
        text = text.replace(slot, rng.choice(values))
    text = text.replace("{{", "{").replace("}}", "}")
    return text, goal


def _title(para: str) -> str:
    return " ".join(para.split()[:3]).strip(".,:;()`'\"").title() or "Notes"


def _snippet(para: str) -> str:
    """The first sentence or two of a paragraph (the benign stand-in for a payload)."""
    cut = [m.end() for m in re.finditer(r"[.!?](?:\s|$)", para)][:2]
    return para[: cut[-1]].strip() if cut and cut[-1] >= 60 else para[:240]


def _sample(
    rng: random.Random,
    split: Split,
    pool: list[tuple[str, str]],
    make_extra: Callable[[str], str],
    *,
    injection: bool,
    family: str,
    goal: str | None = None,
    obfuscation: str = "none",
    sources: tuple[str, ...] = (),
) -> Sample:
    """A filler paragraph and ``make_extra(carrier)`` in a random wrapper of this split."""
    source, filler = rng.choice(pool)
    carrier = rng.choice(sorted(WRAPPERS))
    names = [w for w in WRAPPERS[carrier] if (w in HELD_OUT_WRAPPERS) == (split == "unseen")]
    wrapper = rng.choice(names)
    text = WRAPPERS[carrier][wrapper](rng, filler, make_extra(carrier), _title(filler))
    return Sample(
        text=text,
        injection=injection,
        split=split,
        family=family,
        style=family.split(".")[0] if injection else "benign",
        goal=goal,
        carrier=carrier,
        wrapper=wrapper,
        sources=(source, *sources),
        obfuscation=obfuscation,
        trigger=not injection and has_trigger(text),
    )


def _hide(rng: random.Random, kind: str, payload: str, carrier: str) -> str:
    return obfuscate(rng, kind, payload, carrier=carrier)


def _same(text: str, carrier: str) -> str:
    return text


def _injections(split: Split, per_family: int) -> list[Sample]:
    pool = _pool(split)
    goals = [g for i, g in enumerate(GOALS) if _in_split(str(i), "goal", split)]
    composed: list[str] = []
    if split == "train":
        held = [g for i, g in enumerate(GOALS) if not _in_split(str(i), "goal", "train")]
        composed = composed_goals(held)
    kinds, weights = list(OBFUSCATIONS), list(OBFUSCATIONS.values())
    samples = []
    for family in sorted(f for f in PAYLOADS if _in_split(f, "payload", split)):
        rng = random.Random(f"injection:{split}:{family}")
        for _ in range(per_family):
            # training draws hand-written and composed goals equally often (there are several
            # times more composed ones, and a held-out goal is a hand-written one)
            pick = composed if composed and rng.random() >= _HAND_SHARE else goals
            payload, goal = _fill(rng, rng.choice(PAYLOADS[family]), pick)
            kind = rng.choices(kinds, weights)[0]
            samples.append(
                _sample(
                    rng,
                    split,
                    pool,
                    functools.partial(_hide, rng, kind, payload),
                    injection=True,
                    family=family,
                    goal=goal,
                    obfuscation=kind,
                )
            )
    return samples


def _benign(split: Split, n_docs: int, per_template: int) -> list[Sample]:
    pool = _pool(split)
    rng = random.Random(f"benign:docs:{split}")
    triggered = [p for p in pool if has_trigger(p[1])]
    samples = []
    for i in range(n_docs):  # a third with a trigger word in the stand-in snippet
        source, para = rng.choice(triggered if i % 3 == 2 and triggered else pool)
        extra, kind = _snippet(para), "none"
        if rng.random() < 0.1:  # encodings occur in benign text too
            kind = rng.choice(["base64", "hex", "url"])
            extra = obfuscate(rng, kind, extra, carrier="plain", benign=True)
        samples.append(
            _sample(
                rng,
                split,
                pool,
                functools.partial(_same, extra),
                injection=False,
                family="doc",
                obfuscation=kind,
                sources=(source,),
            )
        )
    templates = {f: t for f, t in BENIGN_TEMPLATES.items() if _in_split(f, "benign", split)}
    for family in sorted(templates):
        rng = random.Random(f"benign:{split}:{family}")
        for _ in range(per_template):
            extra, _goal = _fill(rng, rng.choice(templates[family]), [])
            samples.append(
                _sample(
                    rng,
                    split,
                    pool,
                    functools.partial(_same, extra),
                    injection=False,
                    family=family,
                )
            )
    return samples


#: Samples per split: (per payload family, benign doc texts, per benign template family).
SIZES: dict[Split, tuple[int, int, int]] = {
    "train": (140, 2400, 60),
    "heldout": (28, 1100, 35),
    "unseen": (84, 1100, 100),
}


@functools.cache
def build_corpus(*, scale: float = 1.0) -> Corpus:
    """The whole labelled corpus (``scale`` shrinks every count, for quick checks)."""
    samples: list[Sample] = []
    for split in SPLITS:
        per_family, n_docs, per_template = (max(1, round(n * scale)) for n in SIZES[split])
        samples.extend(_injections(split, per_family))
        samples.extend(_benign(split, n_docs, per_template))
    return Corpus(samples=samples, digest=_digest(samples))


def _digest(samples: list[Sample]) -> str:
    digest = hashlib.sha256()
    for s in samples:
        digest.update(f"{s.split}|{int(s.injection)}|{s.text}\x00".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]
