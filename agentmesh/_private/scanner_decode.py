"""The scanner's extra views of a text: encodings decoded, e-mail, markup and YAML folded.

Why separate views: an attacker can split ``ignore`` as ``<b>ig</b>nore``, spread an order over
``#`` comment lines, or hide it hex, URL- or rot13-encoded; the rule table should not have to
know each trick. Each function here returns another readable text (or nothing when the trick is
absent) and the scanner runs its rules on it as well, so the original text keeps its own
evidence (a ``<!--`` comment, a ``![`` image link) and the folded one adds the words.

Every pass is linear in the text and skips texts without the characters it looks for.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.policy
import re
import urllib.parse
from collections.abc import Iterator

import yaml

__all__ = ["DECODERS", "decode_blobs", "fold_email", "fold_markup", "fold_yaml"]

# --- decoders: (prefix for the findings, finder, decoder) -------------------------------------

# A blob may follow "=" (``data=SWdub3Jl...``), never a word character or another blob's body.
_BASE64 = re.compile(
    r"(?<![\w+/-])[A-Za-z0-9+/_-]{16,}(?:\r?\n[A-Za-z0-9+/_-]{4,})*={0,2}(?![\w+/=-])"
)
# Hex bytes: contiguous runs come from the base64 candidates (a superset); the other forms are
# "\x49\x67", "0x49, 0x67" and "49 67 6e" / "49:67:6e". Separate patterns, each run only
# when its literal is present: one alternation tried at every position is several times slower.
_HEX_RUN = re.compile(r"(?:0x)?(?:[0-9A-Fa-f]{2}){12,}")
_HEX_FORMS = (
    ("\\x", re.compile(r"(?:\\x[0-9A-Fa-f]{2}){8,}")),
    ("0x", re.compile(r"(?:0x[0-9A-Fa-f]{2}[,;]?[ \t]?){8,}")),
    ("", re.compile(r"[0-9A-Fa-f]{2}(?:[ :][0-9A-Fa-f]{2}){7,}")),
)
_HEX_DIGITS = re.compile(r"\\x|0x|[^0-9A-Fa-f]")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
# rot13 of words an injection can hardly do without; none of them is an English word.
_ROT13_MARKERS = tuple(
    codecs.encode(w, "rot13")
    for w in (
        "ignore",
        "disregard",
        "instruction",
        "previous",
        "system prompt",
        "password",
        "reveal",
        "secret",
        "assistant",
        "forget",
    )
)
_MAX_BLOBS = 64


def _readable(decoded: str) -> str | None:
    """Decoded text that reads as text (printable, half letters), else None."""
    if not decoded:
        return None
    printable = sum(c.isprintable() or c in "\n\r\t" for c in decoded)
    letters = sum(c.isalpha() for c in decoded)
    if printable / len(decoded) < 0.9 or letters < 0.5 * len(decoded):
        return None
    return decoded


def _from_base64(blob: str) -> str | None:
    decoded = _base64_blob(blob)
    if decoded is None and "\n" in blob:
        # A blob on a line of its own takes the next line's first word along ("...ZGUu\nFollow"
        # the steps): without that last line it may decode.
        decoded = _base64_blob(blob.rsplit("\n", 1)[0])
    return decoded


def _base64_blob(blob: str) -> str | None:
    core = "".join(blob.split()).rstrip("=")
    raw = core + "=" * (-len(core) % 4)
    altchars = b"-_" if ("-" in raw or "_" in raw) else None
    try:
        return _readable(base64.b64decode(raw, altchars=altchars, validate=True).decode("utf-8"))
    except (binascii.Error, ValueError):
        return None


def _from_hex(blob: str) -> str | None:
    digits = _HEX_DIGITS.sub("", blob)
    try:
        return _readable(bytes.fromhex(digits).decode("utf-8"))
    except ValueError:
        return None


def _from_url(token: str) -> str | None:
    decoded = urllib.parse.unquote_plus(token, errors="strict")
    return _readable(decoded) if decoded != token else None


def _base64_finds(text: str, blobs: list[str]) -> Iterator[str]:
    return iter(blobs)


def _hex_finds(text: str, blobs: list[str]) -> Iterator[str]:
    yield from (b for b in blobs if _HEX_RUN.fullmatch(b))
    for literal, pattern in _HEX_FORMS:
        if literal in text:
            yield from (m.group(0) for m in pattern.finditer(text))


def _url_finds(text: str, blobs: list[str]) -> Iterator[str]:
    """Whitespace-free tokens holding three or more %XX escapes (linear: one split)."""
    if text.count("%") < 3:
        return iter(())
    return (t for t in text.split() if len(_PERCENT.findall(t)) >= 3)


def _rot13_finds(text: str, blobs: list[str]) -> Iterator[str]:
    """Each line holding a rot13-encoded injection word (the rest of the text is not encoded)."""
    lowered = text.lower()
    if any(marker in lowered for marker in _ROT13_MARKERS):
        for line in text.split("\n"):
            if any(marker in line.lower() for marker in _ROT13_MARKERS):
                yield line


def _from_rot13(text: str) -> str | None:
    return codecs.encode(text, "rot13")


#: (finding prefix, finder of candidate blobs, decoder returning readable text or None).
DECODERS = (
    ("base64", _base64_finds, _from_base64),
    ("hex", _hex_finds, _from_hex),
    ("url", _url_finds, _from_url),
    ("rot13", _rot13_finds, _from_rot13),
)


def decode_blobs(text: str) -> Iterator[tuple[str, str]]:
    """(prefix, decoded text) for each encoded blob in ``text`` that decodes to readable text."""
    blobs = _BASE64.findall(text)  # one pass serves base64 and contiguous hex
    for prefix, finds, decode in DECODERS:
        for count, blob in enumerate(finds(text, blobs)):
            if count == _MAX_BLOBS:
                break
            decoded = decode(blob)
            if decoded is not None:
                yield prefix, decoded


# --- markup folding -------------------------------------------------------------------------

_COMMENT = re.compile(r"<!--|-->")
_INLINE_TAG = re.compile(
    r"</?(?:a|abbr|b|bdi|bdo|code|del|em|font|i|ins|kbd|mark|q|s|samp|small|span|strong|sub|sup"
    r"|tt|u|var|wbr)(?:\s[^<>]{0,500})?/?>",
    re.IGNORECASE,
)
_TAG = re.compile(r"</?[A-Za-z][\w:-]{0,40}(?:\s[^<>]{0,2000})?/?>")
_MD_LINK = re.compile(r"\[([^\[\]\n]{0,300})\]\(\s*<?([^()\s<>]{0,2000})>?\s*\)")
# Emphasis and code marks: asterisks and backticks go everywhere ("**ig**nore" is one word),
# underscores only at word edges, so snake_case names stay whole.
_MARKS = str.maketrans("", "", "*`")
_UNDERSCORES = re.compile("_+")
_LINE_MARKERS = re.compile(r"(?m)^[ \t]*(?:#{1,6}|//+|/?\*+/?|--|;+|>+|\|)[ \t]?")


def fold_markup(text: str) -> str | None:
    """HTML tags and comment markers, markdown emphasis, links and line markers removed.

    Inline tags vanish (``<b>ig</b>nore`` is one word again), other tags become spaces;
    comment and quote markers at line starts go, so an order spread over ``#`` or ``//``
    lines reads as one sentence. Line breaks stay where they were (line ``n`` of the result is
    line ``n`` of the text, folded), so a caller can rescan only the lines that changed. None
    when nothing changed.
    """
    folded = text
    if "<" in folded:
        folded = _COMMENT.sub(" ", folded)
        folded = _INLINE_TAG.sub(lambda m: "\n" * m.group(0).count("\n"), folded)
        folded = _TAG.sub(lambda m: " " + "\n" * m.group(0).count("\n"), folded)
    if "](" in folded:
        folded = _MD_LINK.sub(r"\1 \2", folded)
    folded = _LINE_MARKERS.sub("", folded).translate(_MARKS).replace("~~", "").replace("|", " ")
    if "_" in folded:
        folded = _UNDERSCORES.sub(lambda m: _inner_underscores(m, folded), folded)
    return None if folded == text else folded


def _inner_underscores(match: re.Match[str], text: str) -> str:
    """Underscores between two letters or digits stay; at a word's edge they are markup."""
    start, end = match.span()
    inner = start > 0 and end < len(text) and text[start - 1].isalnum() and text[end].isalnum()
    return match.group(0) if inner else ""


# --- e-mail folding ------------------------------------------------------------------------

_MAIL_HEADERS = re.compile(r"\A(?:[A-Za-z][\w-]{0,40}:[^\n]*\n(?:[ \t][^\n]*\n)*){2,}\n")
_TRANSFER = re.compile(r"(?im)^content-(?:transfer-encoding|type):[ \t]*(?:quoted|base64|multi)")
_MAX_MAIL = 2_000_000


def fold_email(text: str) -> str | None:
    """A MIME message's subject and text parts, transfer encodings and charsets undone.

    Quoted-printable breaks words at its soft line breaks ("ign=\nore") and base64 bodies hide
    them whole, so a message is read the way a mail client shows it. None for anything that is
    not such a message.
    """
    head = _MAIL_HEADERS.match(text)
    if head is None or len(text) > _MAX_MAIL or _TRANSFER.search(head.group(0) + text) is None:
        return None
    try:
        message = email.message_from_string(text, policy=email.policy.default)
        parts = [str(message.get("subject", ""))]
        for part in message.walk():
            if part.get_content_maintype() == "text":
                parts.append(part.get_content())
    except (LookupError, ValueError, TypeError, AttributeError):
        return None
    folded = "\n".join(p for p in parts if p)
    return folded if folded and folded != text else None


# --- YAML folding ---------------------------------------------------------------------------

_YAML_HINT = re.compile(r"(?m)^[ \t]*(?:-[ \t]+)?[\w.-]{1,64}:[ \t]*(?:[>|][-+0-9]*[ \t]*$|[\"'])")
_MAX_YAML = 200_000
_MAX_NODES = 10_000


def _strings(value: object, budget: list[int]) -> Iterator[str]:
    """The strings of a YAML document; ``budget`` caps the nodes walked (aliases repeat)."""
    budget[0] -= 1
    if budget[0] < 0:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item, budget)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, budget)


def fold_yaml(text: str) -> str | None:
    """The string values of a YAML document with block or quoted scalars, folded as YAML does.

    A folded (``>``) or literal (``|``) block, a quoted scalar's escapes and line joins all
    become the text a YAML reader would see. None for anything that is not such a document.
    """
    if len(text) > _MAX_YAML or _YAML_HINT.search(text) is None:
        return None
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (yaml.YAMLError, RecursionError, ValueError):
        return None
    if not isinstance(data, dict | list):
        return None
    folded = "\n".join(_strings(data, [_MAX_NODES]))
    return folded if folded and folded != text else None
