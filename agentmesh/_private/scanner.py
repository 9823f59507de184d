"""A first content scanner for prompt injections: normalise the text, then match a rule table.

Why this shape: attackers hide instructions behind Unicode tricks, letter spacing and encodings,
so the text is first brought to one canonical form, and the tricks themselves become evidence.
The rules are data (name, category, weight, regex), so every finding names the rule that fired
and the text it saw, and the table grows without touching the logic. Scores combine as
independent evidence, ``1 - prod(1 - weight)``; the policy's threshold turns a score into a
verdict.

This is a heuristic first line, not a proof. Known blind spots: paraphrased or non-English
injections, instructions split across several messages or tool results, encodings other than
base64 (hex, rot13, URL-encoding, compression), homoglyphs outside the small Cyrillic/Greek
table, text hidden in images or PDFs, and exfiltration through tool arguments that carry no
wording or secret pattern (for example an innocuous-looking URL query). Quoted attacks in
benign text (a blog post about prompt injection) are flagged too.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CATEGORIES", "RULES", "RULE_NAMES", "Finding", "Rule", "scan_text", "score"]


class Finding(BaseModel):
    """One piece of evidence: which rule fired, in which category, how strongly, on what text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str
    category: str
    score: float = Field(ge=0.0, le=1.0)
    excerpt: str


@dataclass(frozen=True, slots=True)
class Rule:
    """A weighted pattern; ``pattern`` sees the flattened text, ``squashed`` the letters only."""

    name: str
    category: str
    weight: float
    pattern: re.Pattern[str] | None
    squashed: re.Pattern[str] | None = None


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _sq(pattern: str) -> re.Pattern[str]:
    # The squashed text maps "l" to "i" (leet "1" and "|" are ambiguous), so patterns do too.
    return re.compile(pattern.replace("l", "i"))


_VERB_IGNORE = r"\b(?:ignore|disregard|forget|bypass)\s+"
_SECRET = (
    r"(?:secrets?|api[\s_-]?keys?|access[\s_-]?keys?|(?:auth|access|bearer|session|api)[\s_-]?"
    r"tokens?|passwords?|passwd|credentials?|creds|private[\s_-]?keys?|ssh[\s_-]?keys?|~/\.ssh"
    r"|\.ssh/|\bid_rsa|\bid_ed25519|\.env\b|env(?:ironment)?[\s_]+var(?:iable)?s?|/etc/passwd"
    r"|/etc/shadow|\.aws/credentials|aws_secret\w*|cookies|\.netrc|kubeconfig"
    r"|(?:conversation|chat)\s+history)"
)
_DEST = (
    r"(?:https?://|ftp://|www\.)\S+|(?<![\w.+-])[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+"
    r"|\b(?:webhook|pastebin|ngrok|requestbin|pipedream|interactsh)\S*"
)
# URL characters; brackets and quotes end a URL, so a scan never runs into the next link.
_URL_PATH = r"[^)\s\[\]<>\"'?{]"
_URL_QUERY = r"[^)\s\[\]<>\"']"
_IMG_DATA = (
    r"(?:\{|\$|%7b|%24|\b(?:data|d|secret|password|pass|pwd|chat"
    r"|history|conversation|msg|message|content|payload|info|q|leak|exfil|email|ssn)=)"
)

#: The rule table. Weights: >= 0.5 flags alone at the default threshold; lower ones are weak
#: signals that only flag in combination.
RULES: tuple[Rule, ...] = (
    # --- instruction override --------------------------------------------------------------
    Rule(
        "override.ignore_previous",
        "instruction_override",
        0.9,
        _rx(
            _VERB_IGNORE + r"(?:(?:all|any|every|each|the|your|my|of|these|those)\s+){0,3}"
            r"(?:previous|prior|above|earlier|preceding|foregoing|former|original|initial"
            r"|system|developer|safety)\s+(?:[\w-]+\s+){0,2}?(?:instructions?|rules?|context"
            r"|directives?|prompts?|guidelines?|guardrails?|constraints?|commands?|orders?)\b"
        ),
        _sq(
            r"(?:ignore|disregard|forget)(?:all|any|every|the|your|of|these){0,3}"
            r"(?:previous|prior|above|earlier|preceding)(?:instructions?|rules|context"
            r"|directives|prompts?|guidelines)"
        ),
    ),
    Rule(
        "override.ignore_your_rules",
        "instruction_override",
        0.8,
        _rx(
            _VERB_IGNORE + r"(?:all\s+(?:of\s+)?)?your\s+(?:[\w-]+\s+)?(?:instructions|guidelines"
            r"|guardrails|rules|programming|training|directives)\b"
        ),
        _sq(r"(?:ignore|disregard|forget)(?:all)?(?:of)?your(?:instructions|guidelines|rules)"),
    ),
    Rule(
        "override.ignore_everything",
        "instruction_override",
        0.8,
        _rx(
            _VERB_IGNORE + r"(?:all\s+(?:the\s+)?(?:instructions|guidelines|guardrails)\b"
            r"|(?:everything|anything|all)\s+(?:(?:that\s+)?(?:was\s+)?(?:written\s+|said\s+)?"
            r"(?:above|before|previously|so\s+far|earlier)\b|(?:that\s+)?you(?:\s+have|'ve"
            r"|\s+were)?\s+(?:been\s+)?(?:told|instructed|given)\b))"
        ),
    ),
    Rule(
        "override.new_instructions",
        "instruction_override",
        0.6,
        _rx(
            r"\b(?:new|real|actual|true|secret|hidden)\s+(?:system\s+)?instructions?\s*:"
            r"|\byour\s+(?:new|real|actual|true)\s+(?:task|instructions?|role|goal|objective"
            r"|purpose|mission)\s+(?:is|are|will\s+be)\b"
        ),
    ),
    Rule(
        "override.from_now_on",
        "instruction_override",
        0.55,
        _rx(
            r"\bfrom\s+now\s+on,?\s+(?:you|the\s+assistant|assistant|the\s+ai)\s+(?:are|will"
            r"|must|shall|act|respond|answer|reply|obey|only|always|never|have\s+to|no\s+longer)\b"
        ),
    ),
    Rule(
        "override.addressed_to_ai",
        "instruction_override",
        0.55,
        _rx(
            r"\b(?:if\s+you\s+are|to\s+(?:any|every|the))\s+(?:an?\s+)?(?:ai|llm|language\s+model"
            r"|chatbot|ai\s+(?:assistant|agent|model))s?\s+(?:reading|processing|summari[sz]ing"
            r"|parsing|browsing|analy[sz]ing|that\s+reads)\b"
        ),
    ),
    Rule(
        "override.ignore_user",
        "instruction_override",
        0.35,
        _rx(
            r"\b(?:ignore|disregard)\s+(?:what\s+)?the\s+user(?:'s)?\s+(?:asks?|asked|says|said"
            r"|wants|request|question|instructions?|and)\b"
        ),
    ),
    Rule(
        "concealment.hide_from_user",
        "concealment",
        0.45,
        _rx(
            r"\b(?:do\s+not|don't|never)\s+(?:tell|inform|notify|alert|(?:mention|reveal|show)"
            r"\s+(?:this\s+|it\s+)?to)\s+(?:the\s+)?(?:user|human|operator)\b|\bwithout\s+"
            r"(?:telling|informing|notifying|alerting)\s+(?:the\s+)?(?:user|human|operator)\b"
        ),
    ),
    Rule(
        "prompt_leak.reveal_system_prompt",
        "prompt_leak",
        0.55,
        _rx(
            r"\b(?:reveal|print|show|repeat|output|display|leak|dump|recite|tell\s+me)\s+(?:me\s+)?"
            r"(?:all\s+)?(?:of\s+)?(?:your|the)\s+(?:(?:full|entire|original|initial|hidden|secret)"
            r"\s+)?(?:system\s+prompt|system\s+message|initial\s+instructions|hidden\s+instructions"
            r"|original\s+instructions|instructions\s+above|prompt\s+above)"
        ),
    ),
    # --- role hijack -----------------------------------------------------------------------
    Rule(
        "role.chat_template_marker",
        "role_hijack",
        0.85,
        _rx(
            r"<\|(?:im_start|im_end|im_sep|endoftext|start_header_id|end_header_id|eot_id"
            r"|begin_of_text|system|assistant|user)\|>|\[/?inst\]|<</?sys>>|<(?:start|end)_of_turn>"
        ),
    ),
    Rule(
        "role.fake_header",
        "role_hijack",
        0.7,
        _rx(
            r"(?<!#)#{2,}[ \t]*(?:new\s+)?(?:system|developer|admin)"
            r"(?:\s+(?:prompt|message|instructions?|override|note))?\s*:"
        ),
    ),
    Rule(
        "role.bracket_tag",
        "role_hijack",
        0.55,
        _rx(
            r"(?<![\w\])])\[(?:system|sys|admin|administrator|developer)(?:\s+(?:message|prompt|note"
            r"|override|instructions?))?\]|</?(?:system|system_prompt|sys|instructions?)>"
        ),
    ),
    Rule(
        "role.turn_marker",
        "role_hijack",
        0.35,
        _rx(r"(?m)^[ \t]*(?:system|developer|assistant)[ \t]*(?:message|prompt)?[ \t]*:[ \t]*\S"),
    ),
    Rule(
        "role.mode_switch",
        "role_hijack",
        0.75,
        _rx(
            r"\byou\s+are\s+now\s+(?:in\s+|an?\s+|the\s+)?(?:[\w-]+\s+){0,3}?mode\b|\b(?:enter"
            r"|entering|enable|enabling|activate|activating|switch\s+to|switching\s+to)\s+(?:god"
            r"|jailbreak|dan|unrestricted|unfiltered|uncensored|evil)\s+mode\b"
        ),
        _sq(
            r"youarenow(?:in)?(?:developer|god|jailbreak|dan|unrestricted|unfiltered|admin|sudo"
            r"|root|evil|debug)mode"
        ),
    ),
    Rule(
        "role.jailbreak_mode",
        "role_hijack",
        0.7,
        _rx(r"\b(?:god|jailbreak|jailbroken|dan|unrestricted|unfiltered|uncensored|evil)\s+mode\b"),
    ),
    Rule("role.developer_mode", "role_hijack", 0.45, _rx(r"\bdeveloper\s+mode\b")),
    Rule(
        "role.persona",
        "role_hijack",
        0.6,
        _rx(
            r"\byou\s+are\s+(?:no\s+longer|not)\s+(?:an?\s+|the\s+)?(?:ai|assistant|language\s+"
            r"model|chatbot|bound\s+by|restricted|limited)\b|\b(?:pretend|act)\s+(?:to\s+be|as\s+if"
            r"\s+you\s+(?:are|were)|as|like)\s+(?:an?\s+)?(?:unrestricted|unfiltered|uncensored"
            r"|jailbroken|evil|rogue)\b|\bdo\s+anything\s+now\b"
        ),
    ),
    Rule(
        "role.no_restrictions",
        "role_hijack",
        0.35,
        _rx(
            r"\b(?:without|free\s+(?:of|from)|no\s+longer\s+(?:bound|restricted)\s+by|ignore"
            r"|bypass)\s+(?:any\s+|all\s+|your\s+|the\s+)?(?:restrictions|filters|limitations"
            r"|guardrails|safety\s+(?:rules|guidelines|filters)|content\s+polic(?:y|ies)"
            r"|ethical\s+guidelines)\b"
        ),
    ),
    # --- exfiltration ----------------------------------------------------------------------
    Rule(
        "exfil.send_secrets",
        "exfiltration",
        0.85,
        _rx(
            r"\b(?:send|upload|post|forward|transmit|exfiltrate|leak|e-?mail|mail|share|copy"
            r"|paste|submit|push|pipe|dump|write)\b[\s\S]{0,80}?" + _SECRET + r"[\s\S]{0,100}?"
            r"(?:" + _DEST + r")"
        ),
    ),
    Rule(
        "exfil.shell_command",
        "exfiltration",
        0.8,
        _rx(
            r"\b(?:curl|wget|nc|ncat|netcat|scp|rsync|invoke-webrequest|iwr)\b[^\n]{0,160}?"
            r"(?:~/\.ssh|\bid_rsa|\bid_ed25519|@\.env\b|/etc/passwd|/etc/shadow|\.aws/credentials"
            r"|\$\(\s*(?:env|printenv|cat\b)[^)\n]{0,200}\)|`(?:env|printenv|cat\b)[^`\n]{0,200}`)"
            r"|\b(?:env|printenv|cat\s+\S{0,200}?(?:\.env|id_rsa|credentials|\.ssh)\S{0,200})\s?\|\s?"
            r"(?:curl|wget|nc|ncat|netcat)\b"
        ),
    ),
    Rule(
        "exfil.markdown_image_data",
        "exfiltration",
        0.75,
        _rx(
            rf"!\[[^\]\n]{{0,200}}\]\(\s*<?https?://(?:{_URL_PATH}*\?{_URL_QUERY}{{0,2000}}?"
            rf"{_IMG_DATA}|{_URL_PATH}*\{{\w{{1,64}}\}})|<img\b[^>]{{0,200}}?\bsrc\s*=\s*[\"']?"
            rf"https?://{_URL_PATH}*\?{_URL_QUERY}{{0,2000}}?{_IMG_DATA}"
        ),
    ),
    Rule(
        "exfil.markdown_image_query",
        "exfiltration",
        0.2,
        _rx(rf"!\[[^\]\n]{{0,200}}\]\(\s*<?https?://{_URL_PATH}+\?{_URL_QUERY}{{1,2000}}\)"),
    ),
    Rule(
        "exfil.embed_secret",
        "exfiltration",
        0.7,
        _rx(
            r"\b(?:include|append|add|put|embed|insert|encode)\s+(?:the\s+|your\s+|all\s+|any\s+)?"
            r"(?:[\w'-]+\s+){0,2}?(?:secrets?|api[\s_-]?keys?|tokens?|passwords?|credentials?"
            r"|private\s+keys?|conversation|chat\s+history|user(?:'s)?\s+data|personal\s+data)\b"
            r"[\s\S]{0,60}?\b(?:in|into|to|as)\s+(?:the\s+|an?\s+)?(?:image|markdown|img|link)\b"
        ),
    ),
    # --- secret material (leaving through a tool call or a reply) --------------------------
    Rule(
        "secret.private_key",
        "secret",
        0.6,
        _rx(r"-----begin\s+(?:[a-z]+\s+){0,2}private\s+key-----"),
    ),
    Rule(
        "secret.token",
        "secret",
        0.55,
        _rx(
            r"\b(?:akia|asia)[0-9a-z]{16}\b|\bgh[pousr]_[0-9a-z]{36,}\b|\bgithub_pat_\w{40,}"
            r"|\bsk-(?:proj-|ant-)?[0-9a-z_-]{20,}|\bxox[abprs]-[0-9a-z-]{10,}|\bglpat-[\w-]{20}"
            r"|\baiza[\w-]{35}"
        ),
    ),
    # --- hidden text in markup ------------------------------------------------------------
    Rule(
        "hidden.html_invisible",
        "hidden_text",
        0.2,
        _rx(
            r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?:px|pt|em)?\b"
            r"|opacity\s*:\s*0(?:\.0+)?\b|color\s*:\s*(?:white|#fff(?:fff)?|transparent)\b"
        ),
    ),
    Rule(
        "hidden.html_comment",
        "hidden_text",
        0.4,
        _rx(r"<!--[^>]{0,300}?\b(?:ai|assistant|llm|chatbot|language\s+model)\b"),
    ),
)

# Findings the normaliser itself reports (the obfuscation is the evidence).
_ZERO_WIDTH_SPLIT = ("hidden.zero_width_split", "hidden_text", 0.45)
_BIDI_CONTROL = ("hidden.bidi_control", "hidden_text", 0.3)
_TAG_CHARACTERS = ("hidden.tag_characters", "hidden_text", 0.7)
_HOMOGLYPH = ("obfuscation.homoglyph", "obfuscation", 0.35)
_NORMALISER_RULES = (_ZERO_WIDTH_SPLIT, _BIDI_CONTROL, _TAG_CHARACTERS, _HOMOGLYPH)

#: Every rule name the scanner can report (base64-decoded findings add a "base64:" prefix).
RULE_NAMES: frozenset[str] = frozenset(
    [r.name for r in RULES] + [name for name, _, _ in _NORMALISER_RULES]
)
#: Every category the scanner can report.
CATEGORIES: frozenset[str] = frozenset(
    [r.category for r in RULES] + [cat for _, cat, _ in _NORMALISER_RULES]
)

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
_HOMOGLYPHS = str.maketrans(
    "аеорсухіјѕԁһӏАВЕКМНОРСТХІЈЅαεικνορτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdhlABEKMHOPCTXIJSaeikvoptuxABEZHIKMNOPTYX",
)
_HOMOGLYPH_CHARS = frozenset("аеорсухіјѕԁһӏАВЕКМНОРСТХІЈЅαεικνορτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ")
_WORD = re.compile(r"\w+")
# Three or more single letters joined by one repeated separator: "i.g.n.o.r.e", "i g n o r e".
# Each element checks its own end, so a failed run never backtracks (linear time).
_SINGLE = r"[^\W_](?![^\W_])"
_SPACED = re.compile(
    rf"(?<![^\W_]){_SINGLE}([ .\-_*|+~·•/:,]){_SINGLE}(?:\1{_SINGLE})+(?:\1(?=\s|$))?"
)
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_LEET = str.maketrans("0134578@$!|l", "oieastbasiii")
_LEET_SHOWN = str.maketrans("0134578@$!|", "oieastbasii")  # same positions, "l" kept for excerpts
_NOT_LETTER = re.compile(r"[^a-z]+")
_BASE64 = re.compile(
    r"(?<![\w+/=-])[A-Za-z0-9+/_-]{16,}(?:\r?\n[A-Za-z0-9+/_-]{4,})*={0,2}(?![\w+/=-])"
)
_MAX_DEPTH = 2
_MAX_BLOBS = 64


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
    text = unicodedata.normalize("NFKC", html.unescape(text))
    text = _FLAG_TAGS.sub("\U0001f3f4", text)  # emoji subdivision flags use tag characters
    for m in _TAGS.finditer(text):
        hidden = _untag(m)
        if hidden.strip():
            smuggled.append(hidden)
    if smuggled:
        findings.append(_finding(_TAG_CHARACTERS, _excerpt(" ".join(smuggled), 0, 0, limit=120)))
    text = _TAGS.sub("", text)
    split = _SPLIT_WORD.search(text)
    if split:
        shown = _INVISIBLE_RUN.sub("", _excerpt(text, split.start(), split.end()))
        findings.append(_finding(_ZERO_WIDTH_SPLIT, f"invisible character inside {shown!r}"))
    bidi = _BIDI.search(text)
    if bidi:
        findings.append(_finding(_BIDI_CONTROL, f"bidi control U+{ord(bidi.group(0)):04X}"))
    text = _INVISIBLE_RUN.sub("", text)
    mixed = [
        w
        for w in _WORD.findall(text)
        if any(c.isascii() and c.isalpha() for c in w) and _HOMOGLYPH_CHARS.intersection(w)
    ]
    if mixed:
        findings.append(_finding(_HOMOGLYPH, "mixed-script words: " + ", ".join(mixed[:3])))
        text = _WORD.sub(
            lambda m: (
                m.group(0).translate(_HOMOGLYPHS)
                if _HOMOGLYPH_CHARS.intersection(m.group(0))
                else m.group(0)
            ),
            text,
        )
    return text, findings, smuggled


def _flatten(text: str) -> str:
    """Case-fold, join spaced-out letters, collapse whitespace (keeping line breaks)."""
    text = text.casefold().translate(_QUOTES)
    text = _SPACED.sub(lambda m: m.group(0).replace(m.group(1), "").rstrip(), text)
    text = re.sub(r"[^\S\n]+", " ", text)
    return re.sub(r" ?\n[\s]*", "\n", text).strip()


def _squash(flat: str) -> tuple[str, str]:
    """Letters only, leet undone: (canonical text for matching, aligned text for excerpts)."""
    return _NOT_LETTER.sub("", flat.translate(_LEET)), _NOT_LETTER.sub(
        "", flat.translate(_LEET_SHOWN)
    )


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


def _decode_base64(blob: str) -> str | None:
    core = "".join(blob.split()).rstrip("=")
    raw = core + "=" * (-len(core) % 4)
    altchars = b"-_" if ("-" in raw or "_" in raw) else None
    try:
        data = base64.b64decode(raw, altchars=altchars, validate=True)
        decoded = data.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    printable = sum(c.isprintable() or c in "\n\r\t" for c in decoded)
    letters = sum(c.isalpha() for c in decoded)
    if not decoded or printable / len(decoded) < 0.9 or letters < 0.5 * len(decoded):
        return None
    return decoded


def _match_rules(flat: str) -> Iterator[Finding]:
    squashed, shown = _squash(flat)
    for rule in RULES:
        m = rule.pattern.search(flat) if rule.pattern is not None else None
        if m is not None:
            excerpt = _excerpt(flat, m.start(), m.end())
        elif rule.squashed is not None and (m := rule.squashed.search(squashed)) is not None:
            excerpt = f"(letters only) {shown[m.start() : m.end()]}"
        else:
            continue
        yield Finding(rule=rule.name, category=rule.category, score=rule.weight, excerpt=excerpt)


def _scan(text: str, depth: int) -> list[Finding]:
    revealed, findings, smuggled = _reveal(_as_text(text))
    body = "\n".join([revealed, *smuggled])
    flat = _flatten(body)
    findings.extend(_match_rules(flat))
    if depth < _MAX_DEPTH:
        for blob in _BASE64.findall(body)[:_MAX_BLOBS]:
            decoded = _decode_base64(blob)
            if decoded is None:
                continue
            for inner in _scan(decoded, depth + 1):
                rule = inner.rule if inner.rule.startswith("base64:") else f"base64:{inner.rule}"
                findings.append(inner.model_copy(update={"rule": rule}))
    best: dict[str, Finding] = {}
    for f in findings:
        if f.rule not in best or f.score > best[f.rule].score:
            best[f.rule] = f
    return sorted(best.values(), key=lambda f: (-f.score, f.rule))


def scan_text(text: str) -> list[Finding]:
    """Findings for one text, strongest first, at most one per rule; empty means nothing seen."""
    return _scan(text, 0)


def score(findings: Iterable[Finding]) -> float:
    """Combine findings as independent evidence: ``1 - prod(1 - score)``, in [0, 1]."""
    return min(1.0, max(0.0, 1.0 - math.prod(1.0 - f.score for f in findings)))
