"""How corpus texts are dressed: carriers (where content arrives) and obfuscations.

A carrier wrapper puts a benign filler paragraph and one more snippet (the injection payload, or
for benign samples another benign snippet in the same place) into a tool's JSON output, an
e-mail, a web page, a markdown document, source code, YAML or a plain message. Benign and
injected samples share the wrappers, so the classifier cannot learn the carrier as the label.
Wrappers are split like templates: the names in ``HELD_OUT_WRAPPERS`` build only held-out texts.
"""

from __future__ import annotations

import base64
import codecs
import json
import random
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

__all__ = ["HELD_OUT_WRAPPERS", "OBFUSCATIONS", "WRAPPERS", "obfuscate"]

Wrapper = Callable[[random.Random, str, str, str], str]

_PEOPLE = ("Ana Lopez", "Ben Okafor", "Chen Wei", "Dana Kim", "Erik Berg", "Fatima Noor")
_SITES = ("docs.example.org", "blog.example.net", "shop.example.com", "wiki.example.io")


def _addr(rng: random.Random) -> str:
    name = rng.choice(_PEOPLE)
    return f"{name} <{name.split()[0].lower()}@{rng.choice(_SITES)}>"


def _lines(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line else prefix.rstrip() for line in text.split("\n"))


def _indent(text: str, pad: str) -> str:
    return "\n".join(pad + line for line in text.split("\n"))


# --- tool output (JSON) ---------------------------------------------------------------------
def _tool_search(rng: random.Random, filler: str, extra: str, title: str) -> str:
    hits = [
        {
            "title": title,
            "url": f"https://{rng.choice(_SITES)}/a/{rng.randint(1, 999)}",
            "snippet": filler,
        },
        {"title": "Related", "url": f"https://{rng.choice(_SITES)}/b", "snippet": extra},
    ]
    rng.shuffle(hits)
    return json.dumps({"query": title.lower(), "results": hits}, indent=rng.choice([None, 2]))


def _tool_file(rng: random.Random, filler: str, extra: str, title: str) -> str:
    body = f"{filler}\n\n{extra}" if rng.random() < 0.7 else f"{extra}\n\n{filler}"
    return json.dumps({"path": f"docs/{title.lower().replace(' ', '_')}.md", "content": body})


def _tool_api(rng: random.Random, filler: str, extra: str, title: str) -> str:
    data = {"id": rng.randint(100, 99999), "name": title, "description": filler, "notes": extra}
    return json.dumps({"status": 200, "data": data, "cached": rng.random() < 0.5})


def _tool_comments(rng: random.Random, filler: str, extra: str, title: str) -> str:
    comments = [
        {"author": p.split()[0].lower(), "body": b}
        for p, b in ((rng.choice(_PEOPLE), filler), (rng.choice(_PEOPLE), extra))
    ]
    return json.dumps({"issue": rng.randint(1, 5000), "title": title, "comments": comments})


# --- e-mail (the standard library's email package) --------------------------------------------
def _email(rng: random.Random, subject: str, body: str, *, html: bool = False) -> str:
    msg = EmailMessage()
    msg["From"], msg["To"] = _addr(rng), _addr(rng)
    msg["Subject"] = subject
    day = datetime(2026, rng.randint(1, 12), rng.randint(1, 28), rng.randint(7, 19), tzinfo=UTC)
    msg["Date"] = format_datetime(day)
    msg.set_content(body)
    if html:
        paras = "".join(f"<p>{p}</p>" for p in body.split("\n\n"))
        msg.add_alternative(f"<html><body>{paras}</body></html>", subtype="html")
        msg.set_boundary(f"===={rng.getrandbits(64):016x}==")  # the default one is random
    return msg.as_string()


def _mail_news(rng: random.Random, filler: str, extra: str, title: str) -> str:
    body = f"Hello,\n\nThis week: {title}.\n\n{filler}\n\n{extra}\n\nUnsubscribe any time."
    return _email(rng, f"Newsletter: {title}", body, html=rng.random() < 0.4)


def _mail_support(rng: random.Random, filler: str, extra: str, title: str) -> str:
    body = (
        f"Hi,\n\nThanks for your question about {title}.\n\n{filler}\n\n{extra}\n\nBest,\nSupport"
    )
    return _email(rng, f"Re: {title}", body)


def _mail_invoice(rng: random.Random, filler: str, extra: str, title: str) -> str:
    body = (
        f"Dear customer,\n\nplease find invoice {rng.randint(1000, 9999)} attached.\n\n"
        f"{extra}\n\n{filler}\n\nRegards,\nAccounts"
    )
    return _email(rng, f"Invoice for {title}", body)


def _mail_forward(rng: random.Random, filler: str, extra: str, title: str) -> str:
    quoted = _lines(f"{filler}\n\n{extra}", "> ")
    body = f"FYI, see below.\n\n---------- Forwarded message ----------\n{quoted}\n"
    return _email(rng, f"Fwd: {title}", body, html=rng.random() < 0.3)


# --- web pages ----------------------------------------------------------------------------------
def _page(title: str, body: str) -> str:
    return (
        f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n<body>\n<h1>{title}"
        f"</h1>\n{body}\n<footer>&copy; 2026</footer>\n</body></html>"
    )


def _web_article(rng: random.Random, filler: str, extra: str, title: str) -> str:
    paras = [f"<p>{filler}</p>", f"<p>{extra}</p>"]
    rng.shuffle(paras)
    return _page(title, "\n".join(paras))


def _web_hidden(rng: random.Random, filler: str, extra: str, title: str) -> str:
    style = rng.choice(["display:none", "font-size:0", "color:#fff;background:#fff"])
    return _page(title, f'<p>{filler}</p>\n<div style="{style}">{extra}</div>')


def _web_comment(rng: random.Random, filler: str, extra: str, title: str) -> str:
    return _page(title, f"<article>\n<p>{filler}</p>\n<!-- {extra} -->\n</article>")


def _web_reviews(rng: random.Random, filler: str, extra: str, title: str) -> str:
    stars = rng.randint(3, 5)
    return _page(
        title,
        f'<p>{filler}</p>\n<ul class="reviews">\n<li>{stars}/5: Works well.'
        f"</li>\n<li>{stars}/5: {extra}</li>\n</ul>",
    )


# --- markdown documents --------------------------------------------------------------------------
def _md_readme(rng: random.Random, filler: str, extra: str, title: str) -> str:
    return f"# {title}\n\n{filler}\n\n## Notes\n\n{extra}\n"


def _md_quote(rng: random.Random, filler: str, extra: str, title: str) -> str:
    return f"## {title}\n\n{filler}\n\n{_lines(extra, '> ')}\n\n- item one\n- item two\n"


def _md_footnote(rng: random.Random, filler: str, extra: str, title: str) -> str:
    return f"# {title}\n\n{filler}[^1]\n\n[^1]: {extra}\n"


def _md_table(rng: random.Random, filler: str, extra: str, title: str) -> str:
    cell = extra.replace("\n", " ").replace("|", "/")
    return (
        f"### {title}\n\n{filler}\n\n| Field | Value |\n|---|---|\n| owner | "
        f"{rng.choice(_PEOPLE)} |\n| remark | {cell} |\n"
    )


# --- source code ---------------------------------------------------------------------------------
def _code_docstring(rng: random.Random, filler: str, extra: str, title: str) -> str:
    name = title.lower().replace(" ", "_")
    return (
        f'def {name}(data):\n    """{filler}\n\n{_indent(extra, "    ")}\n    """\n'
        f"    return process(data)\n"
    )


def _code_hash(rng: random.Random, filler: str, extra: str, title: str) -> str:
    return f"{_lines(filler, '# ')}\n#\n{_lines(extra, '# ')}\nimport os\n\nCONFIG = {{}}\n"


def _code_js(rng: random.Random, filler: str, extra: str, title: str) -> str:
    return f"/*\n{_lines(filler, ' * ')}\n */\n{_lines(extra, '// ')}\nexport const x = 1;\n"


def _code_sql(rng: random.Random, filler: str, extra: str, title: str) -> str:
    return f"{_lines(filler, '-- ')}\n{_lines(extra, '-- ')}\nSELECT id, name FROM items;\n"


# --- YAML ----------------------------------------------------------------------------------------
def _yaml_config(rng: random.Random, filler: str, extra: str, title: str) -> str:
    return (
        f"name: {title.lower().replace(' ', '-')}\ndescription: >\n{_indent(filler, '  ')}\n"
        f"notes: |\n{_indent(extra, '  ')}\nreplicas: {rng.randint(1, 5)}\n"
    )


def _yaml_k8s(rng: random.Random, filler: str, extra: str, title: str) -> str:
    return (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  annotations:\n"
        f"    summary: {json.dumps(filler)}\n    note: {json.dumps(extra)}\n"
    )


def _yaml_ci(rng: random.Random, filler: str, extra: str, title: str) -> str:
    return (
        f"{_lines(filler, '# ')}\njobs:\n  build:\n    steps:\n      - run: make test\n"
        f"      - name: {json.dumps(extra)}\n"
    )


def _yaml_openapi(rng: random.Random, filler: str, extra: str, title: str) -> str:
    return (
        f"openapi: 3.1.0\ninfo:\n  title: {title}\n  description: |\n{_indent(filler, '    ')}"
        f"\npaths:\n  /items:\n    get:\n      summary: >-\n{_indent(extra, '        ')}\n"
    )


# --- plain messages ------------------------------------------------------------------------------
def _plain_two(rng: random.Random, filler: str, extra: str, title: str) -> str:
    return f"{filler}\n\n{extra}" if rng.random() < 0.6 else f"{extra}\n\n{filler}"


def _plain_inline(rng: random.Random, filler: str, extra: str, title: str) -> str:
    return f"{filler} {extra}"


def _plain_bullets(rng: random.Random, filler: str, extra: str, title: str) -> str:
    return f"{title}:\n- {filler}\n- {extra}"


def _plain_chat(rng: random.Random, filler: str, extra: str, title: str) -> str:
    a, b = rng.sample(_PEOPLE, 2)
    return f"[{a}] {filler}\n[{b}] {extra}"


#: carrier -> wrapper name -> wrapper.
WRAPPERS: dict[str, dict[str, Wrapper]] = {
    "tool_output": {
        "tool.search": _tool_search,
        "tool.file": _tool_file,
        "tool.api": _tool_api,
        "tool.comments": _tool_comments,
    },
    "email": {
        "mail.news": _mail_news,
        "mail.support": _mail_support,
        "mail.invoice": _mail_invoice,
        "mail.forward": _mail_forward,
    },
    "web_page": {
        "web.article": _web_article,
        "web.hidden": _web_hidden,
        "web.comment": _web_comment,
        "web.reviews": _web_reviews,
    },
    "markdown": {
        "md.readme": _md_readme,
        "md.quote": _md_quote,
        "md.footnote": _md_footnote,
        "md.table": _md_table,
    },
    "code": {
        "code.docstring": _code_docstring,
        "code.hash": _code_hash,
        "code.js": _code_js,
        "code.sql": _code_sql,
    },
    "yaml": {
        "yaml.config": _yaml_config,
        "yaml.k8s": _yaml_k8s,
        "yaml.ci": _yaml_ci,
        "yaml.openapi": _yaml_openapi,
    },
    "plain": {
        "plain.two": _plain_two,
        "plain.inline": _plain_inline,
        "plain.bullets": _plain_bullets,
        "plain.chat": _plain_chat,
    },
}
#: The last wrapper of each carrier builds held-out texts only.
HELD_OUT_WRAPPERS = frozenset(list(w)[-1] for w in WRAPPERS.values())


# --- obfuscations ----------------------------------------------------------------------------
_HOMOGLYPHS = {
    "a": "\u0430",
    "e": "\u0435",
    "o": "\u043e",
    "p": "\u0440",
    "c": "\u0441",
    "i": "\u0456",
    "x": "\u0445",
    "y": "\u0443",
    "s": "\u0455",
}
_ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")
_LEET = str.maketrans("aeiost", "431057")
_LEAD_INS = {
    "base64": ("Decode this base64 and follow it: ", "Payload (base64): ", "", "config="),
    "hex": ("Hex-encoded task: ", "bytes: ", "", "0x"),
    "url": ("Decode and do: ", "https://example.net/r?next=", "", "q="),
    "rot13": ("rot13: ", "Decode with ROT13 and obey: ", "", "Secret message: "),
}


def _words(rng: random.Random, text: str, share: float, change: Callable[[str], str]) -> str:
    return " ".join(
        change(w) if len(w) > 3 and rng.random() < share else w for w in text.split(" ")
    )


def _zero_width(rng: random.Random, word: str) -> str:
    cut = rng.randint(1, len(word) - 1)
    return word[:cut] + rng.choice(_ZERO_WIDTH) + word[cut:]


# Benign text carries encodings too (attachments, digests, links), introduced as such.
_BENIGN_LEAD_INS = {
    "base64": ("Attachment preview (base64): ", "data:text/plain;base64,", "", "blob="),
    "hex": ("Payload bytes: ", "dump: ", "", "0x"),
    "url": ("https://example.org/search?q=", "Link: https://docs.example.org/r?to=", "", "q="),
    "rot13": ("Puzzle answer (rot13): ", "", "Spoiler: ", "rot13: "),
}


def _encode(rng: random.Random, kind: str, text: str, *, benign: bool) -> str:
    if kind == "base64":
        body = base64.b64encode(text.encode()).decode()
    elif kind == "hex":
        raw = text.encode()
        body = rng.choice(
            [raw.hex(), " ".join(f"{b:02x}" for b in raw), "".join(f"\\x{b:02x}" for b in raw)]
        )
    elif kind == "url":
        body = urllib.parse.quote(text, safe="")
    else:
        body = codecs.encode(text, "rot13")
    return rng.choice((_BENIGN_LEAD_INS if benign else _LEAD_INS)[kind]) + body


def obfuscate(
    rng: random.Random, kind: str, text: str, *, carrier: str, benign: bool = False
) -> str:
    """``text`` hidden by one trick (``OBFUSCATIONS``); "none" returns it unchanged. Benign
    encoded text gets a benign introduction ("Attachment preview (base64): ...")."""
    if kind in ("base64", "hex", "url", "rot13"):
        return _encode(rng, kind, text, benign=benign)
    if kind == "zero_width":
        return _words(rng, text, 0.5, lambda w: _zero_width(rng, w))
    if kind == "tag_chars":
        hidden = "".join(chr(0xE0000 + ord(c)) for c in text if " " <= c <= "~")
        return rng.choice(["Thanks for reading.", "See you soon!", "Have a nice day."]) + hidden
    if kind == "homoglyph":
        return "".join(_HOMOGLYPHS.get(c, c) if rng.random() < 0.4 else c for c in text)
    if kind == "spacing":
        sep = rng.choice([" ", ".", "-", "  "])
        return _words(rng, text, 0.6, lambda w: sep.join(w))
    if kind == "case":
        return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)
    if kind == "leet":
        return _words(rng, text, 0.6, lambda w: w.lower().translate(_LEET))
    if kind == "markup":
        if carrier in ("web_page", "email"):
            return _words(rng, text, 0.4, lambda w: f"<b>{w[:2]}</b>{w[2:]}")
        return _words(rng, text, 0.4, lambda w: f"**{w[:2]}**{w[2:]}")
    return text


#: Obfuscations and their weights (half the injections plain).
OBFUSCATIONS: dict[str, float] = {
    "none": 10.0,
    "zero_width": 1.0,
    "tag_chars": 1.0,
    "homoglyph": 1.0,
    "base64": 1.0,
    "hex": 1.0,
    "url": 1.0,
    "rot13": 1.0,
    "spacing": 1.0,
    "case": 1.0,
    "leet": 0.5,
    "markup": 1.0,
}
