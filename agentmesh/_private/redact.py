"""Redaction of secrets and personal data in text that is recorded (audit log, flight recorder).

Why: decision reasons and scanner excerpts quote the content they judged, and that content is
exactly where secrets travel (a key leaving through a tool call *is* the finding). Logs outlive
the run and are read by more people than the mesh's agents, so they keep the evidence's shape
(``[REDACTED:aws_key]``) but never the secret itself.

Rules run specific before generic. Numbers must pass their checksums (Luhn and a card prefix
for cards, ISO 13616 mod 97 for IBANs) so order ids and timestamps stay readable; a ``key=`` or
``token=`` value must look random (long, letters and digits, high entropy), while a
``password=`` value is redacted whatever it looks like. Matching ignores case because scanner
excerpts are lower-cased. Known blind spots: secrets with no recognisable shape or name (a bare
password in prose), phone numbers written without separators or country code, names and postal
addresses, and a secret cut short at the edge of an excerpt below its pattern's minimum length.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any, NamedTuple

__all__ = ["CREDENTIALS", "KINDS", "find", "redact"]


class _Rule(NamedTuple):
    kind: str
    pattern: re.Pattern[str]
    #: A cheap regex the lower-cased text must contain before the rule runs at all.
    gate: re.Pattern[str]
    group: int = 0  # the part replaced; the rest of the match stays (a URL's user, a key's name)
    check: Callable[[str], bool] | None = None


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _card(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return (
        13 <= len(digits) <= 19
        and re.match(r"4|5[1-5]|2[2-7]|3[0-9]|6", digits) is not None
        and digits.strip("0") != ""
        and _luhn(digits)
    )


def _iban(text: str) -> bool:
    iban = re.sub(r"\s", "", text).upper()
    if not 15 <= len(iban) <= 34:
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _phone(text: str) -> bool:
    return 8 <= sum(c.isdigit() for c in text) <= 15


def _entropy(text: str) -> float:
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


_PLACEHOLDER_WORDS = frozenset({"none", "null", "nil", "true", "false", "empty", "redacted"})


def _password(value: str) -> bool:
    return len(value) >= 4 and value.lower() not in _PLACEHOLDER_WORDS and set(value) != {"*"}


def _random(value: str) -> bool:
    return (
        len(value) >= 12
        and any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
        and _entropy(value) >= 3.0
    )


_ASSIGN = r"""[\w.-]*["']?\s*[:=]\s*["']?"""
_VALUE = r"""(?!\[REDACTED:)([^\s"'<>,;&)\]}]+)"""
_DIGITS = re.compile(r"\d\d")


def _rule(kind: str, regex: str, needs: str | re.Pattern[str], *rest: Any) -> _Rule:
    """``needs``: words (one must be in the text), or a gate regex."""
    gate = (
        needs
        if isinstance(needs, re.Pattern)
        else re.compile("|".join(map(re.escape, needs.split())))
    )
    return _Rule(kind, re.compile(regex, re.IGNORECASE | re.DOTALL), gate, *rest)


_RULES: tuple[_Rule, ...] = (
    _rule(
        "private_key",
        r"-----begin [a-z0-9 ]*private key[a-z ]*-----"
        r"(?:.*?-----end [a-z0-9 ]*private key[a-z ]*-----|.*\Z)",
        "-----begin",
    ),
    _rule("jwt", r"\beyj[\w-]{5,}\.eyj[\w-]{5,}\.[\w-]*", "eyj"),
    _rule(
        "aws_key",
        r"\b(?:akia|asia|abia|acca|agpa|aida|aroa|anpa|anva|aipa)[a-z0-9]{16}\b",
        "akia asia abia acca agpa aida aroa anpa anva aipa",
    ),
    _rule("github_token", r"\b(?:gh[pousr]_[a-z0-9]{36,}|github_pat_\w{22,})", "gh"),
    _rule("gitlab_token", r"\bglpat-[\w-]{20,}", "glpat-"),
    _rule("slack_token", r"\bxox[abposr]-[a-z0-9-]{10,}", "xox"),
    _rule("slack_webhook", r"https://hooks\.slack\.com/services/[\w/]+", "hooks.slack"),
    _rule("anthropic_key", r"\bsk-ant-[\w-]{20,}", "sk-ant-"),
    _rule("openai_key", r"\bsk-(?:proj-|svcacct-|admin-)?[\w-]{20,}", "sk-"),
    _rule("stripe_key", r"\b[rs]k_(?:live|test)_[a-z0-9]{16,}", "k_live_ k_test_"),
    _rule("google_key", r"\baiza[\w-]{35}", "aiza"),
    _rule("token", r"\b(?:bearer|token)\s+([\w.~+/=-]{16,})", "bearer token", 1, _random),
    # scheme://user:PASSWORD@host
    _rule("password", r"\b[a-z][a-z0-9+.-]*://[^\s/:@]*:([^\s/@]+)@", "://", 1),
    # password=..., "secret": "...": redacted whatever the value; the name before stays
    _rule("password", rf"(?:passw|passphrase|pwd){_ASSIGN}{_VALUE}", "pass pwd", 1, _password),
    _rule("secret", rf"secret{_ASSIGN}{_VALUE}", "secret", 1, _password),
    # api_key=..., token: ..., credential=...: redacted when the value looks random
    _rule(
        "secret",
        rf"(?:key|token|credential|auth){_ASSIGN}{_VALUE}",
        "key token cred auth",
        1,
        _random,
    ),
    _rule("email", r"(?<![\w.%+-])[\w.%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b", "@"),
    _rule(
        "iban", r"\b[a-z]{2}\d{2}(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,4})?\b", _DIGITS, 0, _iban
    ),
    _rule("card", r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])", _DIGITS, 0, _card),
    _rule("phone", r"(?<![\w+])\+[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\w)", "+", 0, _phone),
    _rule("phone", r"(?<![\w.])(?:\(\d{3}\) ?|\d{3}[-. ])\d{3}[-. ]\d{4}(?![\w.])", _DIGITS),
)

#: Every placeholder kind ``redact`` can write, as in ``[REDACTED:<kind>]``.
KINDS: frozenset[str] = frozenset(r.kind for r in _RULES)
#: The kinds that are credentials (keys, tokens, passwords), not personal data.
CREDENTIALS: frozenset[str] = KINDS - {"email", "iban", "card", "phone"}


def _replacer(rule: _Rule) -> Callable[[re.Match[str]], str]:
    placeholder = f"[REDACTED:{rule.kind}]"

    def replace(match: re.Match[str]) -> str:
        value = match.group(rule.group)
        if rule.check is not None and not rule.check(value):
            return match.group(0)
        start, end = match.span(rule.group)
        whole = match.group(0)
        offset = match.start()
        return whole[: start - offset] + placeholder + whole[end - offset :]

    return replace


_REPLACERS = tuple((rule.pattern, rule.gate, _replacer(rule)) for rule in _RULES)


def find(text: str, kinds: Collection[str] = KINDS) -> list[tuple[str, int, int]]:
    """``(kind, start, end)`` of everything of ``kinds`` that :func:`redact` would replace in
    ``text`` (the exfiltration checks look for secrets with the same rules)."""
    low = text.lower()
    found: list[tuple[str, int, int]] = []
    for rule in _RULES:
        if rule.kind in kinds and rule.gate.search(low):
            for match in rule.pattern.finditer(text):
                value = match.group(rule.group)
                if value.startswith("[REDACTED:"):
                    continue
                if rule.check is None or rule.check(value):
                    found.append((rule.kind, *match.span(rule.group)))
    return sorted(found, key=lambda f: f[1])


def redact(text: str) -> str:
    """``text`` with secrets, keys and personal data replaced by ``[REDACTED:<kind>]``.

    Kinds: private keys, JWTs, AWS / GitHub / GitLab / Slack / OpenAI / Anthropic / Stripe /
    Google keys and tokens, bearer tokens, passwords in URLs and in ``password=`` settings,
    random-looking values of ``key=`` / ``token=`` settings, e-mail addresses, IBANs,
    Luhn-valid card numbers and phone numbers. Idempotent: redacting twice changes nothing more.
    """
    if not isinstance(text, str):
        raise TypeError(f"redact takes str, not {type(text).__name__}")
    low = text.lower()  # gates only: a placeholder never creates a later rule's match
    for pattern, gate, replace in _REPLACERS:
        if gate.search(low):
            text = pattern.sub(replace, text)
    return text
