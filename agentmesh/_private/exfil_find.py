"""Finding URLs, hosts and e-mail addresses in text, defanged spellings included.

Split from ``exfiltration.py`` (which judges what is found). Text is first "refanged":
``hxxp``/``h**p`` become ``http``, ``[.]``/``(dot)``/``{.}`` become ``.``, ``[at]``/``(@)`` become
``@``, ``[:]`` becomes ``:`` and backslashes slashes (browsers read ``http:\\\\evil`` as
``http://evil``). A URL's host is the one a client would connect to (after any ``user@``).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["find_emails", "find_hosts", "mask"]

_DEFANG = (
    (re.compile(r"\s*[\[({]\s*(?:\.|dot)\s*[\])}]\s*", re.I), "."),
    (re.compile(r"\s*[\[({]\s*(?:@|at)\s*[\])}]\s*", re.I), "@"),
    (re.compile(r"[\[(]:[\])]"), ":"),
    (re.compile(r"\bh(?:xx|\*\*|tt)p(s?)(?=:)", re.I), r"http\1"),
    (re.compile(r"\\"), "/"),
)
_SCHEME_URL = re.compile(r"\b[a-z][a-z0-9+.-]{0,15}://[^\s\"'<>`{}|^]+", re.I)
_TLD_LIST = (  # schemeless hosts count only under these (file names end in .py, .md, .sh)
    "com net org edu gov mil int io ai co me info biz xyz app dev cloud site online tech store "
    "shop top link click live news blog page pro name mobi us uk de fr nl ru cn jp in br au ca "
    "es it ch se no fi dk cz at be eu tk ml ga cf gq pw tv ws su kr tw hk sg vn tr ir ua kz za "
    "mx ar cl nz ie pt gr hu ro il sa ae ly gl gd example test invalid localhost local internal "
    "onion"
)
_TLDS = frozenset(_TLD_LIST.split())
_HOST = re.compile(
    r"(?<![\w@.:/%+-])((?:[a-z0-9][a-z0-9_-]{0,62}\.)+([a-z]{2,24}))\.?(:\d{1,5})?([/?#]\S*)?",
    re.I,
)
_IPV4 = re.compile(r"(?<![\w.:/])((?:\d{1,3}\.){3}\d{1,3})(:\d{1,5})?([/?#]\S*)?(?![\w.])")
_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b", re.I)


def _defang(text: str) -> str:
    for pattern, repl in _DEFANG:
        text = pattern.sub(repl, text)
    return text


def find_hosts(text: str) -> list[tuple[str, bool, str]]:
    """``(host, carries data, url)`` of every URL or host in ``text``; "carries data": a path
    beyond ``/``, a query or a fragment."""
    text, found = _defang(text), []
    for m in _SCHEME_URL.finditer(text):
        try:
            parts = urlsplit(m.group(0))
            host = parts.hostname or ""
        except ValueError:  # a malformed IPv6 literal: keep what is between // and the path
            host, parts = m.group(0).split("://", 1)[1].split("/", 1)[0].lower(), None
        data = parts is None or bool(parts.path.strip("/") or parts.query or parts.fragment)
        if host:
            found.append((host.rstrip("."), data, m.group(0)))
    rest = _SCHEME_URL.sub(" ", text)
    for m in _HOST.finditer(rest):
        if m.group(2).lower() in _TLDS:
            found.append((m.group(1).lower(), bool((m.group(4) or "").strip("/")), m.group(0)))
    for m in _IPV4.finditer(rest):
        octets_ok = all(int(o) <= 255 for o in m.group(1).split("."))
        if octets_ok and (m.group(2) or m.group(3) or m.group(0) == rest.strip()):
            found.append((m.group(1), bool((m.group(3) or "").strip("/")), m.group(0)))
    return found


def find_emails(text: str) -> list[str]:
    """Every e-mail address in ``text`` (``[at]`` / ``[dot]`` spellings too), lower-cased."""
    return [m.group(0).lower() for m in _EMAIL.finditer(_defang(text))]


def mask(address: str) -> str:
    """``e**@evil.example``: names the domain, not the person (decisions are redacted)."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}{'*' * min(len(local) - 1, 6)}@{domain}"
