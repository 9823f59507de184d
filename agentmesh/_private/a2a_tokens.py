"""Signed, expiring bearer tokens (JWT) for the A2A gateway, with replay protection.

The gateway trusts only the public keys it was configured with (a JWK Set; a token's ``jku`` or
``x5u`` is never fetched), each bound to one algorithm by its key type: ES256 (EC P-256), EdDSA
(Ed25519) or RS256 (RSA, 2048+ bits). A token must name its key (``kid``) and be signed with that
key's algorithm, so ``none``, HMAC with a public key as the secret and any other algorithm
confusion are refused before a signature is checked. Issuer, audience, ``exp``, ``iat`` and
``sub`` are required (``jti`` too for one-time tokens); lifetimes over ``max_lifetime_s`` are
refused, so a stolen token is worth little for long.

One-time tokens: each ``jti`` is accepted once. Seen ids are kept until their token expires
(plus the leeway), and at most ``max_remembered`` of them: when that memory is full a new token
is refused rather than an unexpired id forgotten, since forgetting would let that token be
replayed. Every entry leaves by itself once its token expires, so the bound caps the accepted
rate (``max_remembered`` tokens per ``max_lifetime_s``), never the gateway's memory.

Every refusal is one answer for the caller (the guard's 401); the reason is logged at INFO,
never the token.
"""

from __future__ import annotations

import heapq
import logging
import math
import re
import time
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt import exceptions as jwt_errors
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

__all__ = ["TOKEN_ALGORITHMS", "TokenKey", "TokenVerifier", "load_token_keys", "looks_like_jwt"]

logger = logging.getLogger("agentmesh.a2a_gateway")

#: Key type (and curve) -> the one algorithm a key of that type verifies.
_ALGORITHM_OF: dict[tuple[str, str | None], str] = {
    ("EC", "P-256"): "ES256",
    ("OKP", "Ed25519"): "EdDSA",
    ("RSA", None): "RS256",
}
TOKEN_ALGORITHMS = frozenset(_ALGORITHM_OF.values())
_FROM_JWK: dict[str, Callable[[dict[str, Any]], Any]] = {
    "ES256": ECAlgorithm.from_jwk,
    "EdDSA": OKPAlgorithm.from_jwk,
    "RS256": RSAAlgorithm.from_jwk,
}
_MIN_RSA_BITS = 2048
_MAX_TOKEN_CHARS = 8192
_MAX_JTI_CHARS = 256
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def looks_like_jwt(token: str) -> bool:
    """Three base64url segments (the last may be empty: an unsigned ``alg: none`` token)."""
    return len(token) <= _MAX_TOKEN_CHARS and _JWT_SHAPE.fullmatch(token) is not None


@dataclass(frozen=True, slots=True)
class TokenKey:
    """One trusted public key and the only algorithm it verifies."""

    kid: str
    algorithm: str
    key: Any = field(repr=False)


def load_token_keys(jwks: Mapping[str, Any]) -> dict[str, TokenKey]:
    """The keys of a JWK Set of public signing keys, by ``kid``.

    Raises ValueError (never echoing key material) for anything else: private or symmetric
    keys, other curves, RSA under 2048 bits, an ``alg`` that is not the key type's, a missing
    or repeated ``kid``.
    """
    entries = jwks.get("keys")
    if not isinstance(entries, list) or not entries:
        raise ValueError("tokens.keys is a JWK Set: an object with a non-empty 'keys' list")
    keys: dict[str, TokenKey] = {}
    for jwk in entries:
        if not isinstance(jwk, Mapping):
            raise ValueError("every entry of tokens.keys.keys is a JWK object")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ValueError("every token key needs a key id ('kid'): tokens must name it")
        if kid in keys:
            raise ValueError(f"token key id {kid[:64]!r} is listed twice")
        keys[kid] = _load_key(kid, jwk)
    return keys


def _load_key(kid: str, jwk: Mapping[str, Any]) -> TokenKey:
    name, kty = repr(kid[:64]), jwk.get("kty")
    algorithm = _ALGORITHM_OF.get((str(kty), None if kty == "RSA" else str(jwk.get("crv"))))
    if algorithm is None:
        raise ValueError(
            f"token key {name}: kty/crv must be EC/P-256 (ES256), OKP/Ed25519 (EdDSA) "
            "or RSA (RS256); symmetric keys are never accepted"
        )
    if jwk.get("alg", algorithm) != algorithm or jwk.get("use", "sig") != "sig":
        raise ValueError(f"token key {name}: must be an {algorithm} signing key ('use': 'sig')")
    if "d" in jwk:
        raise ValueError(f"token key {name}: a public JWK must not hold a private part")
    try:
        key = _FROM_JWK[algorithm](dict(jwk))
    except (jwt.InvalidKeyError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"token key {name}: invalid key ({type(exc).__name__})") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
        raise ValueError(f"token key {name}: RSA keys need {_MIN_RSA_BITS}+ bits")
    return TokenKey(kid, algorithm, key)


class TokenRefused(Exception):
    """Why a token is refused: logged, never sent."""


_PYJWT_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.InvalidAlgorithmError, "algorithm not allowed"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt_errors.InvalidSubjectError, "malformed sub"),
    (jwt_errors.InvalidJTIError, "malformed jti"),
)


class TokenVerifier:
    """Checks bearer JWTs against the configured keys and claims; remembers one-time ids.

    Not thread-safe by design: the gateway's guard calls it from its event loop, and a check
    and the recording of its ``jti`` happen with no await in between.
    """

    def __init__(
        self,
        *,
        keys: Mapping[str, TokenKey],
        issuer: str,
        audience: str,
        leeway_s: float = 30.0,
        max_lifetime_s: float = 3600.0,
        one_time: bool = True,
        max_remembered: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = dict(keys)
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self.max_lifetime_s = max_lifetime_s
        self.one_time = one_time
        self.max_remembered = max_remembered
        self.clock = clock
        self._required = ["exp", "iat", "sub", "iss", "aud"] + (["jti"] if one_time else [])
        self._seen: dict[str, float] = {}  # jti -> when it may be forgotten
        self._expiry: list[tuple[float, str]] = []  # the same, as a heap

    @property
    def remembered(self) -> int:
        """How many one-time token ids are held now."""
        return len(self._seen)

    def verify(self, token: str, *, subjects: Container[str]) -> str | None:
        """The token's subject (one of ``subjects``), or None; a refusal is logged at INFO."""
        try:
            return self._verify(token, subjects)
        except TokenRefused as exc:
            logger.info("A2A bearer token refused: %s", exc)
        except Exception as exc:  # fail closed on anything PyJWT or cryptography raise
            logger.info("A2A bearer token refused: unreadable (%s)", type(exc).__name__)
        return None

    def _verify(self, token: str, subjects: Container[str]) -> str:
        if not looks_like_jwt(token):
            raise TokenRefused("malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRefused("malformed header") from None
        kid, algorithm = header.get("kid"), header.get("alg")
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenRefused("unknown key id")
        if algorithm != key.algorithm:  # "none", HS256 with a public key, RS256 for an EC key...
            raise TokenRefused(f"algorithm {str(algorithm)[:16]!r} is not the key's")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                issuer=self.issuer,
                audience=self.audience,
                # times are checked below, against the same clock as the replay memory
                options={
                    "require": self._required,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRefused(f"missing claim {exc.claim!r}") from None
        except jwt.PyJWTError as exc:
            reason = next((r for kind, r in _PYJWT_REASONS if isinstance(exc, kind)), "malformed")
            raise TokenRefused(reason) from None
        expires = self._check_times(claims)
        subject = claims["sub"]
        if not isinstance(subject, str) or subject not in subjects:
            raise TokenRefused("unknown subject")
        if self.one_time:
            self._consume(claims.get("jti"), expires + self.leeway_s)
        return subject

    def _check_times(self, claims: Mapping[str, Any]) -> float:
        """``exp``, once ``exp``, ``iat`` (and ``nbf``) are numbers making the token valid now."""
        expires, issued = _seconds(claims, "exp"), _seconds(claims, "iat")
        not_before = _seconds(claims, "nbf") if "nbf" in claims else issued
        now, leeway = self.clock(), self.leeway_s
        if expires <= now - leeway:
            raise TokenRefused("expired")
        if max(issued, not_before) > now + leeway:
            raise TokenRefused("not yet valid")
        if expires <= issued or expires - issued > self.max_lifetime_s:
            raise TokenRefused("lifetime over the maximum")
        return expires

    def _consume(self, jti: object, forget_at: float) -> None:
        if not isinstance(jti, str) or not 0 < len(jti) <= _MAX_JTI_CHARS:
            raise TokenRefused("malformed jti")
        now = self.clock()
        while self._expiry and self._expiry[0][0] <= now:
            self._seen.pop(heapq.heappop(self._expiry)[1], None)
        if jti in self._seen:
            raise TokenRefused("replayed")
        if len(self._seen) >= self.max_remembered:
            raise TokenRefused("replay memory full: refusing rather than forgetting live ids")
        self._seen[jti] = forget_at
        heapq.heappush(self._expiry, (forget_at, jti))


def _seconds(claims: Mapping[str, Any], name: str) -> float:
    """A NumericDate claim as a finite number (not a bool, a string or an overflowing int)."""
    value = claims.get(name)
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
            if math.isfinite(seconds):
                return seconds
    except OverflowError:  # an int too large for a float
        pass
    raise TokenRefused(f"malformed {name}")
