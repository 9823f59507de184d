"""A first content scanner for prompt injections: normalise the text, then match a rule table.

Why this shape: attackers hide instructions behind Unicode tricks, letter spacing and encodings,
so the text is first brought to one canonical form, and the tricks themselves become evidence.
E-mail (MIME transfer encodings), markup (HTML tags and comments, markdown, comment markers)
and YAML block scalars are folded into further views, and base64, hex, URL-encoded and rot13
payloads are decoded and scanned in turn (``scanner_decode.py``; such findings carry the
encoding as a prefix, "hex:..."). The
rules are data (name, category, weight, regex; ``scanner_rules.py``), so every finding names the
rule that fired and the text it saw, and the table grows without touching the logic. Scores
combine as independent evidence, ``1 - prod(1 - weight)``; the policy's threshold turns a score
into a verdict.

This is a heuristic first line, not a proof (``detector.py`` adds a learned layer on top).
Known blind spots: paraphrased or non-English injections, instructions split across several
messages or tool results, encodings other than base64, hex, URL-encoding and rot13
(compression, other ciphers), homoglyphs outside the small Cyrillic/Greek table, text hidden in
images or PDFs, and exfiltration through tool arguments that carry no wording or secret pattern
(for example an innocuous-looking URL query). Quoted attacks in benign text (a blog post about
prompt injection) are flagged too.

Speed (large tool results and replies): ASCII text skips the Unicode passes, which otherwise run
only when a character they look for is present; each rule's regex runs only when the plain
strings every match contains (``Rule.requires``) are in the text. Results are the same as
running every pass and every rule; only the work is skipped.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator

from pydantic import BaseModel, ConfigDict, Field

from agentmesh._private.scanner_decode import (
    DECODERS,
    decode_blobs,
    fold_email,
    fold_markup,
    fold_yaml,
)
from agentmesh._private.scanner_rules import (
    BIDI_CONTROL,
    CATEGORIES,
    HOMOGLYPH,
    RULE_NAMES,
    RULES,
    TAG_CHARACTERS,
    ZERO_WIDTH_SPLIT,
    Rule,
)

__all__ = [
    "CATEGORIES",
    "RULES",
    "RULE_NAMES",
    "Finding",
    "Inspection",
    "Rule",
    "base_rule",
    "inspect",
    "scan_text",
    "score",
]


class Finding(BaseModel):
    """One piece of evidence: which rule fired, in which category, how strongly, on what text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str
    category: str
    score: float = Field(ge=0.0, le=1.0)
    excerpt: str


# --- normalisation ---------------------------------------------------------------------------

# Zero-width, joiners, bidi marks and controls, invisible operators, fillers, variation selectors.
_INVISIBLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064"
    "\u2066-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0"
)
_INVISIBLE_RUN = re.compile(f"[{_INVISIBLE}]+")
_SPLIT_WORD = re.compile(f"(?<=[A-Za-z0-9])[{_INVISIBLE}]+(?=[A-Za-z0-9])")
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
_FLAG_TAGS = re.compile("\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f")
_TAGS = re.compile("[\U000e0000-\U000e007f]+")
# One pass tells whether the four passes above have work (bidi is inside _INVISIBLE).
_HIDDEN = re.compile(f"[{_INVISIBLE}\U000e0000-\U000e007f]")
_HOMOGLYPH_CHARS = "аеорсухіјѕԁһӏАВЕКМНОРСТХІЈЅαεικνορτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ"
_HOMOGLYPHS = str.maketrans(_HOMOGLYPH_CHARS, "aeopcyxijsdhlABEKMHOPCTXIJSaeikvoptuxABEZHIKMNOPTYX")
_ANY_HOMOGLYPH = re.compile(f"[{_HOMOGLYPH_CHARS}]")
# The first character any pass of _reveal looks for (hidden or homoglyph); none: nothing to do.
_SUSPECT = re.compile(f"[{_INVISIBLE}\U000e0000-\U000e007f{_HOMOGLYPH_CHARS}]")
# A word (\w+) with both an ASCII letter and a homoglyph; the lookarounds stay inside the word.
_MIXED_WORD = re.compile(rf"(?<!\w)(?=\w*?[A-Za-z])(?=\w*?[{_HOMOGLYPH_CHARS}])\w+")
# Three or more single letters joined by one repeated separator: "i.g.n.o.r.e", "i g n o r e".
# Each element checks its own end, so a failed run never backtracks (linear time).
_SINGLE = r"[^\W_](?![^\W_])"
_SPACED = re.compile(
    rf"(?<![^\W_]){_SINGLE}([ .\-_*|+~·•/:,]){_SINGLE}(?:\1{_SINGLE})+(?:\1(?=\s|$))?"
)
_QUOTES = (("\u2018", "'"), ("\u2019", "'"), ("\u201c", '"'), ("\u201d", '"'))
# Blanks (whitespace but line breaks) that are not a lone space: a run, or one tab or the like.
# Starting with a character class lets the regex engine skip the rest of the text quickly.
_BLANKS = re.compile(r"[^\S\n](?:[^\S\n]+|(?<=[^\S \n]))")
_LINE_BREAK = re.compile(r"\n\s+")  # after _BLANKS, with " \n" made "\n"
# Letters only, leet undone (non-ASCII characters go first; they are never letters here). "l"
# stays "l" for excerpts and becomes "i" for matching, as "1" and "|" could be either.
_LETTERS_SHOWN: dict[int, int | None] = {
    **dict.fromkeys(range(128)),
    **{ord(c): ord(c) for c in "abcdefghijklmnopqrstuvwxyz"},
    **str.maketrans("0134578@$!|", "oieastbasii"),
}
_MAX_DEPTH = 2


def _finding(spec: tuple[str, str, float], excerpt: str) -> Finding:
    name, category, weight = spec
    return Finding(rule=name, category=category, score=weight, excerpt=excerpt)


def _excerpt(text: str, start: int, end: int, *, pad: int = 24, limit: int = 160) -> str:
    snippet = text[max(0, start - pad) : min(len(text), end + pad)]
    snippet = " ".join(snippet.split())
    return snippet if len(snippet) <= limit else snippet[: limit - 1] + "…"


def _untag(match: re.Match[str]) -> str:
    return "".join(chr(ord(c) - 0xE0000) for c in match.group(0) if 0xE0020 <= ord(c) <= 0xE007E)


def _reveal(text: str) -> tuple[str, list[Finding], list[str]]:
    """NFKC, undo entities, strip invisibles; report tricks and return smuggled text."""
    findings: list[Finding] = []
    smuggled: list[str] = []
    text = html.unescape(text)
    if text.isascii():  # already NFKC, and every trick below needs a non-ASCII character
        return text, findings, smuggled
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    suspect = _SUSPECT.search(text)
    if suspect is None:
        return text, findings, smuggled
    if _HIDDEN.search(text, suspect.start()):
        text = _FLAG_TAGS.sub("\U0001f3f4", text)  # emoji subdivision flags use tag characters
        for m in _TAGS.finditer(text):
            hidden = _untag(m)
            if hidden.strip():
                smuggled.append(hidden)
        if smuggled:
            excerpt = _excerpt(" ".join(smuggled), 0, 0, limit=120)
            findings.append(_finding(TAG_CHARACTERS, excerpt))
        text = _TAGS.sub("", text)
        split = _SPLIT_WORD.search(text)
        if split:
            shown = _INVISIBLE_RUN.sub("", _excerpt(text, split.start(), split.end()))
            findings.append(_finding(ZERO_WIDTH_SPLIT, f"invisible character inside {shown!r}"))
        bidi = _BIDI.search(text)
        if bidi:
            findings.append(_finding(BIDI_CONTROL, f"bidi control U+{ord(bidi.group(0)):04X}"))
        text = _INVISIBLE_RUN.sub("", text)
    if _ANY_HOMOGLYPH.search(text):
        mixed = [m.group(0) for m in itertools.islice(_MIXED_WORD.finditer(text), 3)]
        if mixed:
            findings.append(_finding(HOMOGLYPH, "mixed-script words: " + ", ".join(mixed)))
            # Homoglyphs are word characters, so this maps exactly the words that hold them.
            text = text.translate(_HOMOGLYPHS)
    return text, findings, smuggled


def _join_spaced(match: re.Match[str]) -> str:
    return match.group(0).replace(match.group(1), "").rstrip()


def _flatten(text: str) -> str:
    """Case-fold, join spaced-out letters, collapse whitespace (keeping line breaks)."""
    text = text.lower() if text.isascii() else text.casefold()  # the same on ASCII, faster
    if not text.isascii():
        for curly, straight in _QUOTES:
            text = text.replace(curly, straight)
    text = _SPACED.sub(_join_spaced, text)
    text = _BLANKS.sub(" ", text).replace(" \n", "\n")
    return _LINE_BREAK.sub("\n", text).strip()


def _squash(flat: str) -> tuple[str, str]:
    """Letters only, leet undone: (canonical text for matching, aligned text for excerpts)."""
    shown = flat.encode("ascii", "ignore").decode("ascii").translate(_LETTERS_SHOWN)
    return shown.replace("l", "i"), shown


def _json_strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_strings(item)


def _as_text(text: str) -> str:
    """A JSON document (tool arguments, structured replies) is scanned as its strings."""
    if text.lstrip()[:1] in ("{", "["):
        try:
            return "\n".join(_json_strings(json.loads(text)))
        except (ValueError, RecursionError):  # not JSON, or nested too deep to walk
            pass
    return text


def _possible(rule: Rule, flat: str, seen: dict[str, bool]) -> bool:
    """Whether each ``requires`` group has a string in the text (each looked up once a scan)."""
    for group in rule.requires:
        for needle in group:
            found = seen.get(needle)
            if found is None:
                found = seen[needle] = needle in flat
            if found:
                break
        else:
            return False
    return True


def _occurrences(flat: str, needle: str, limit: int) -> list[int] | None:
    """Where ``needle`` starts in the text (overlaps included); None past ``limit`` of them."""
    found: list[int] = []
    at = flat.find(needle)
    while at >= 0:
        if len(found) == limit:
            return None
        found.append(at)
        at = flat.find(needle, at + 1)
    return found


def _search(
    pattern: re.Pattern[str], starts: tuple[str, ...], flat: str, spots: dict[str, list[int] | None]
) -> re.Match[str] | None:
    """``pattern.search(flat)``, trying only where a match can begin when ``starts`` says where.

    Every match begins with one of ``starts``, so the leftmost one is the first of those places
    where ``pattern.match`` succeeds (lookbehinds and ``\\b`` still see the text before it).
    Where the places are too many, one search in C beats a loop in Python.
    """
    if not starts:
        return pattern.search(flat)
    limit = len(flat) // 32 + 16
    places: set[int] = set()
    for needle in starts:
        if needle not in spots:
            spots[needle] = _occurrences(flat, needle, limit)
        found = spots[needle]
        if found is None:
            return pattern.search(flat)
        places.update(found)
    if len(places) > limit:
        return pattern.search(flat)
    for at in sorted(places):
        if (m := pattern.match(flat, at)) is not None:
            return m
    return None


def _match_rules(flat: str) -> Iterator[Finding]:
    squashed, shown = _squash(flat)
    seen: dict[str, bool] = {}
    spots: dict[str, list[int] | None] = {}
    for rule in RULES:
        m = None
        if rule.pattern is not None and _possible(rule, flat, seen):
            m = _search(rule.pattern, rule.starts, flat, spots)
        if m is not None:
            excerpt = _excerpt(flat, m.start(), m.end())
        elif rule.squashed is not None and (m := rule.squashed.search(squashed)) is not None:
            excerpt = f"(letters only) {shown[m.start() : m.end()]}"
        else:
            continue
        yield Finding(rule=rule.name, category=rule.category, score=rule.weight, excerpt=excerpt)


class Inspection(BaseModel):
    """What the scanner saw: its findings and the text brought to its readable form.

    ``text`` is the flattened text (markup and YAML folded when present) followed by every
    decoded payload and smuggled tag text, one per line: the input of the learned layer.
    ``views`` names the extra views made ("yaml", "markup", "base64", ...), in order.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    findings: list[Finding]
    text: str
    views: list[str] = []


_PREFIXES = tuple(f"{prefix}:" for prefix, _, _ in DECODERS)


def base_rule(name: str) -> str:
    """A finding's rule name without its decoder prefix ("base64:", "hex:", "url:", "rot13:")."""
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _changed_lines(before: str, after: str) -> str:
    """The lines a fold changed, each with its neighbours; runs apart stay a blank line apart.

    On a large text with a little markup this rescans kilobytes, not the whole text again.
    """
    old, new = before.split("\n"), after.split("\n")
    if len(old) != len(new):
        return after
    keep = sorted(
        {
            j
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            if a != b
            for j in (i - 1, i, i + 1)
        }
        & set(range(len(new)))
    )
    lines: list[str] = []
    for n, i in enumerate(keep):
        if n and i != keep[n - 1] + 1:
            lines.append("")
        lines.append(new[i])
    return "\n".join(lines)


def _scan(
    text: str, depth: int, *, want_text: bool, views: list[str]
) -> tuple[list[Finding], list[str]]:
    revealed, findings, smuggled = _reveal(_as_text(text))
    body = "\n".join([revealed, *smuggled])
    view = _flatten(body)
    findings.extend(_match_rules(view))
    mail = fold_email(body)
    other = mail if mail is not None else fold_yaml(body)
    if other is not None:  # a new text, revealed and scanned whole
        views.append("email" if mail is not None else "yaml")
        revealed, more, smuggled = _reveal(other)
        findings.extend(more)
        other = "\n".join([revealed, *smuggled])
        view = _flatten(other)
        findings.extend(_match_rules(view))
    folded = body if other is None else other
    if (marked := fold_markup(folded)) is not None:  # YAML values may hold markup too
        views.append("markup")
        findings.extend(_match_rules(_flatten(_changed_lines(folded, marked))))
        view = _flatten(marked) if want_text else view
    readable = [view]
    if depth < _MAX_DEPTH:
        # A YAML value may escape what the raw text shows plainly, and the other way round;
        # a mail's raw body only breaks its encoded blobs at soft line breaks.
        sources = [folded] if mail is not None else list(dict.fromkeys([body, folded]))
        decodings = dict.fromkeys(d for t in sources for d in decode_blobs(t))
        for prefix, decoded in decodings:
            views.append(prefix)
            inner, inner_text = _scan(decoded, depth + 1, want_text=want_text, views=views)
            readable.extend(inner_text)
            for f in inner:
                rule = f.rule if base_rule(f.rule) != f.rule else f"{prefix}:{f.rule}"
                findings.append(f.model_copy(update={"rule": rule}))
    best: dict[str, Finding] = {}
    for f in findings:
        if f.rule not in best or f.score > best[f.rule].score:
            best[f.rule] = f
    return sorted(best.values(), key=lambda f: (-f.score, f.rule)), readable


def inspect(text: str, *, want_text: bool = True) -> Inspection:
    """Findings for one text and its readable form (see :class:`Inspection`). Without
    ``want_text`` the readable form is left empty (nothing will read it: it costs a pass over
    a large marked-up text)."""
    views: list[str] = []
    findings, readable = _scan(text, 0, want_text=want_text, views=views)
    shown = "\n".join(readable) if want_text else ""
    return Inspection(findings=findings, text=shown, views=list(dict.fromkeys(views)))


def scan_text(text: str) -> list[Finding]:
    """Findings for one text, strongest first, at most one per rule; empty means nothing seen."""
    return _scan(text, 0, want_text=False, views=[])[0]


def score(findings: Iterable[Finding]) -> float:
    """Combine findings as independent evidence: ``1 - prod(1 - score)``, in [0, 1]."""
    return min(1.0, max(0.0, 1.0 - math.prod(1.0 - f.score for f in findings)))
