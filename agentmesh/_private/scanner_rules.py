"""The content scanner's rule table, as data; the engine that runs it is ``scanner.py``.

A rule is a name, a category, a weight, a regex over the flattened text (and optionally one over
the letters-only text), and plain strings its matches start with or contain, for speed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CATEGORIES", "NORMALISER_RULES", "RULES", "RULE_NAMES", "Rule"]


@dataclass(frozen=True, slots=True)
class Rule:
    """A weighted pattern; ``pattern`` sees the flattened text, ``squashed`` the letters only.

    Two optional claims about every match of ``pattern`` let the engine skip work on large texts
    (``tests/test_security.py`` checks both on strings generated from each pattern):
    ``starts``: the match begins with one of these strings, so it is only tried where one occurs;
    ``requires``: for each group, the match contains one of its strings, so where a group has
    none in the text the pattern is not run at all.
    """

    name: str
    category: str
    weight: float
    pattern: re.Pattern[str] | None
    squashed: re.Pattern[str] | None = None
    starts: tuple[str, ...] = ()
    requires: tuple[tuple[str, ...], ...] = ()


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _sq(pattern: str) -> re.Pattern[str]:
    # The squashed text maps "l" to "i" (leet "1" and "|" are ambiguous), so patterns do too.
    return re.compile(pattern.replace("l", "i"))


# ``starts`` and ``requires`` strings are written space-separated; none holds whitespace, since the
# flattened text may break a line where a pattern says ``\s+``.
def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _req(*groups: str) -> tuple[tuple[str, ...], ...]:
    return tuple(_words(group) for group in groups)


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

# Strings shared by several rules' ``starts`` and ``requires``.
_IGNORE_VERBS = "ignore disregard forget bypass"
_PRIOR = (
    "previous prior above earlier preceding foregoing former original initial system developer"
    " safety"
)
_ORDERS = "instruction rule context directive prompt guideline guardrail constraint command order"
_SECRET_WORDS = (
    "secret key token passw cred ssh id_rsa id_ed25519 env shadow cookies netrc kubeconfig history"
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
        starts=_words(_IGNORE_VERBS),
        requires=_req(_PRIOR, _ORDERS),
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
        starts=_words(_IGNORE_VERBS),
        requires=_req(
            "your",
            "instructions guidelines guardrails rules programming training directives",
        ),
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
        starts=_words(_IGNORE_VERBS),
        requires=_req(
            "instructions guidelines guardrails above before previously far earlier told"
            " instructed given",
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
        starts=_words("new real actual true secret hidden your"),
        requires=_req("instruction task role goal objective purpose mission"),
    ),
    Rule(
        "override.from_now_on",
        "instruction_override",
        0.55,
        _rx(
            r"\bfrom\s+now\s+on,?\s+(?:you|the\s+assistant|assistant|the\s+ai)\s+(?:are|will"
            r"|must|shall|act|respond|answer|reply|obey|only|always|never|have\s+to|no\s+longer)\b"
        ),
        starts=_words("from"),
        requires=_req("now", "you assistant ai"),
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
        starts=_words("if to"),
        requires=_req(
            "ai llm language chatbot",
            "reading processing summari parsing browsing analy reads",
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
        starts=_words("ignore disregard"),
        requires=_req("user"),
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
        starts=_words("do never without"),
        requires=_req("tell inform notify alert mention reveal show", "user human operator"),
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
        starts=_words("reveal print show repeat output display leak dump recite tell"),
        requires=_req("system instructions prompt"),
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
        requires=_req("<| inst] sys>> _of_turn>"),
    ),
    Rule(
        "role.fake_header",
        "role_hijack",
        0.7,
        _rx(
            r"(?<!#)#{2,}[ \t]*(?:new\s+)?(?:system|developer|admin)"
            r"(?:\s+(?:prompt|message|instructions?|override|note))?\s*:"
        ),
        starts=_words("##"),
        requires=_req("system developer admin"),
    ),
    Rule(
        "role.bracket_tag",
        "role_hijack",
        0.55,
        _rx(
            r"(?<![\w\])])\[(?:system|sys|admin|administrator|developer)(?:\s+(?:message|prompt|note"
            r"|override|instructions?))?\]|</?(?:system|system_prompt|sys|instructions?)>"
        ),
        starts=_words("[sys [admin [developer <sys </sys <instruction </instruction"),
    ),
    Rule(
        "role.turn_marker",
        "role_hijack",
        0.35,
        _rx(r"(?m)^[ \t]*(?:system|developer|assistant)[ \t]*(?:message|prompt)?[ \t]*:[ \t]*\S"),
        requires=_req("system developer assistant", ":"),
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
        starts=_words("you enter enabl activat switch"),
        requires=_req("mode", "now god jailbreak dan unrestricted unfiltered uncensored evil"),
    ),
    Rule(
        "role.jailbreak_mode",
        "role_hijack",
        0.7,
        _rx(r"\b(?:god|jailbreak|jailbroken|dan|unrestricted|unfiltered|uncensored|evil)\s+mode\b"),
        starts=_words("god jailbr dan unrestricted unfiltered uncensored evil"),
        requires=_req("mode"),
    ),
    Rule(
        "role.developer_mode",
        "role_hijack",
        0.45,
        _rx(r"\bdeveloper\s+mode\b"),
        starts=_words("developer"),
        requires=_req("mode"),
    ),
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
        starts=_words("you pretend act do"),
        requires=_req(
            "ai assistant language chatbot bound restricted limited unfiltered uncensored"
            " jailbroken evil rogue now",
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
        starts=_words("without free no ignore bypass"),
        requires=_req("restrictions filters limitations guardrails safety content ethical"),
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
        starts=_words(
            "send upload post forward transmit exfiltrate leak e-mail email mail"
            " share copy paste submit push pipe dump write"
        ),
        requires=_req(
            _SECRET_WORDS,
            ":// www. @ webhook pastebin ngrok requestbin pipedream interactsh",
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
        starts=_words("curl wget nc netcat scp rsync invoke-webrequest iwr env printenv cat"),
        requires=_req("ssh id_rsa id_ed25519 .env /etc/ credentials $( ` |"),
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
        starts=_words("![ <img"),
        requires=_req("://"),
    ),
    Rule(
        "exfil.markdown_image_query",
        "exfiltration",
        0.2,
        _rx(rf"!\[[^\]\n]{{0,200}}\]\(\s*<?https?://{_URL_PATH}+\?{_URL_QUERY}{{1,2000}}\)"),
        requires=_req("![", "://"),
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
        starts=_words("include append add put embed insert encode"),
        requires=_req(
            "secret key token password credential conversation history data",
            "image markdown img link",
        ),
    ),
    # --- secret material (leaving through a tool call or a reply) --------------------------
    Rule(
        "secret.private_key",
        "secret",
        0.6,
        _rx(r"-----begin\s+(?:[a-z]+\s+){0,2}private\s+key-----"),
        requires=_req("-----begin"),
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
        starts=_words("akia asia ghp_ gho_ ghu_ ghs_ ghr_ github_pat_ sk- xox glpat- aiza"),
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
        starts=_words("display visibility font-size opacity color"),
    ),
    Rule(
        "hidden.html_comment",
        "hidden_text",
        0.4,
        _rx(r"<!--[^>]{0,300}?\b(?:ai|assistant|llm|chatbot|language\s+model)\b"),
        requires=_req("<!--", "ai assistant llm chatbot language"),
    ),
)

# Findings the normaliser itself reports (the obfuscation is the evidence).
ZERO_WIDTH_SPLIT = ("hidden.zero_width_split", "hidden_text", 0.45)
BIDI_CONTROL = ("hidden.bidi_control", "hidden_text", 0.3)
TAG_CHARACTERS = ("hidden.tag_characters", "hidden_text", 0.7)
HOMOGLYPH = ("obfuscation.homoglyph", "obfuscation", 0.35)
NORMALISER_RULES = (ZERO_WIDTH_SPLIT, BIDI_CONTROL, TAG_CHARACTERS, HOMOGLYPH)

#: Every rule name the scanner can report (base64-decoded findings add a "base64:" prefix).
RULE_NAMES: frozenset[str] = frozenset(
    [r.name for r in RULES] + [name for name, _, _ in NORMALISER_RULES]
)
#: Every category the scanner can report.
CATEGORIES: frozenset[str] = frozenset(
    [r.category for r in RULES] + [cat for _, cat, _ in NORMALISER_RULES]
)
