"""Signed Agent Cards: a JWS over the canonical card, as the A2A spec's card-signing section says.

Signing and verifying go through a2a-sdk (``a2a.utils.signing``), so cards signed here verify
with any implementation that follows the spec, and the other way round. The JWS payload is the
RFC 8785 (JCS) canonical JSON of the card without its ``signatures`` (empty strings, lists and
objects dropped); each signature keeps the JWS's protected header and signature, the payload
detached, in ``card.signatures``. A card may carry several; one that verifies is enough.

Keys are ES256 (ECDSA on P-256) or EdDSA (Ed25519), each named by a key id (``kid``) that the
protected header carries. A verifier trusts a :class:`CardKeySet` of public keys built from data:
a JWK Set (``{"keys": [...]}``) or PEM files. A card's ``jku`` (key URL) is never fetched: what is
trusted is only what was configured. Malformed key data raises :class:`~agentmesh.ConfigError`;
a refused card raises :class:`~agentmesh.CardVerificationError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, cast

from a2a.types import AgentCard
from a2a.utils.signing import (
    InvalidSignaturesError,
    NoSignatureError,
    ProtectedHeader,
    create_agent_card_signer,
    create_signature_verifier,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from google.protobuf import json_format
from jwt import PyJWK
from jwt.algorithms import ECAlgorithm, OKPAlgorithm
from jwt.exceptions import InvalidKeyError

from agentmesh import errors

__all__ = [
    "ALGORITHMS",
    "CardKey",
    "CardKeySet",
    "CardPublicKey",
    "SigningAlgorithm",
    "generate_card_key",
    "public_jwk",
    "sign_card",
    "verify_card",
]

SigningAlgorithm = Literal["ES256", "EdDSA"]
#: The JWS algorithms cards are signed and verified with; no other is ever accepted.
ALGORITHMS: tuple[SigningAlgorithm, ...] = ("ES256", "EdDSA")
_CURVES: dict[tuple[str, str], SigningAlgorithm] = {
    ("EC", "P-256"): "ES256",
    ("OKP", "Ed25519"): "EdDSA",
}

_PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
_PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def _algorithm(key: object) -> SigningAlgorithm:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return "ES256"
        raise errors.ConfigError(f"EC card keys must be on P-256 (ES256), not {key.curve.name}")
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise errors.ConfigError(
        f"card keys are ES256 (P-256) or EdDSA (Ed25519) keys, not {type(key).__name__}"
    )


def _check_kid(kid: object) -> str:
    if not isinstance(kid, str) or not kid:
        raise errors.ConfigError("a card key needs a key id ('kid'): a non-empty string")
    return kid


def _to_jwk(key: _PrivateKey | _PublicKey, kid: str) -> dict[str, str]:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        data = ECAlgorithm.to_jwk(key, as_dict=True)
    else:
        data = OKPAlgorithm.to_jwk(key, as_dict=True)
    return {**data, "kid": kid, "alg": _algorithm(key), "use": "sig"}


def _from_jwk(jwk: Mapping[str, Any], *, private: bool) -> tuple[str, Any]:
    kid = _check_kid(jwk.get("kid"))
    alg = _CURVES.get((str(jwk.get("kty")), str(jwk.get("crv"))))
    if alg is None:
        raise errors.ConfigError(
            f"card key {kid!r}: kty/crv must be EC/P-256 (ES256) or OKP/Ed25519 (EdDSA)"
        )
    if jwk.get("alg", alg) != alg or jwk.get("use", "sig") != "sig":
        raise errors.ConfigError(
            f"card key {kid!r}: must be a signing key ('use': 'sig') for {alg}"
        )
    if private != ("d" in jwk):
        need = "a private key needs 'd'" if private else "a public JWK must not hold 'd'"
        raise errors.ConfigError(f"card key {kid!r}: {need}")
    algo = ECAlgorithm if alg == "ES256" else OKPAlgorithm
    try:
        return kid, algo.from_jwk(dict(jwk))
    except (InvalidKeyError, ValueError, TypeError) as exc:  # never echo key material
        raise errors.ConfigError(f"card key {kid!r}: invalid key ({type(exc).__name__})") from None


@dataclass(frozen=True, slots=True, eq=False)
class _Key:
    kid: str
    key: Any = field(repr=False)
    _kinds: ClassVar[tuple[type, ...]] = ()

    def __post_init__(self) -> None:
        _check_kid(self.kid)
        if not isinstance(self.key, self._kinds):
            raise errors.ConfigError(f"card key {self.kid!r}: not a {type(self).__name__}")
        _algorithm(self.key)

    @property
    def algorithm(self) -> SigningAlgorithm:
        return _algorithm(self.key)

    def to_jwk(self) -> dict[str, str]:
        """The JWK, with ``kid``, ``alg`` and ``use: sig`` (a private key's holds ``d``)."""
        return _to_jwk(self.key, self.kid)


@dataclass(frozen=True, slots=True, eq=False)
class CardPublicKey(_Key):
    """A public key that verifies card signatures made under key id ``kid``."""

    key: _PublicKey = field(repr=False)
    _kinds = (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> CardPublicKey:
        """Load a public JWK; one holding a private part is refused (it does not belong there)."""
        return cls(*_from_jwk(jwk, private=False))

    def to_pem(self) -> str:
        """SubjectPublicKeyInfo PEM (it carries no key id: keep ``kid`` beside it)."""
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    @classmethod
    def from_pem(cls, pem: str | bytes, *, kid: str) -> CardPublicKey:
        try:
            key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
        except ValueError:
            raise errors.ConfigError(f"card key {kid!r}: not a PEM public key") from None
        return cls(kid, cast(_PublicKey, key))


@dataclass(frozen=True, slots=True, eq=False)
class CardKey(_Key):
    """A private key that signs cards under key id ``kid``. Keep it secret; share :attr:`public`."""

    key: _PrivateKey = field(repr=False)
    _kinds = (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)

    @property
    def public(self) -> CardPublicKey:
        return CardPublicKey(self.kid, self.key.public_key())

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> CardKey:
        return cls(*_from_jwk(jwk, private=True))

    def to_pem(self, *, password: bytes | None = None) -> str:
        """PKCS#8 PEM, encrypted when a password is given (it carries no key id)."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        ).decode()

    @classmethod
    def from_pem(cls, pem: str | bytes, *, kid: str, password: bytes | None = None) -> CardKey:
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except (ValueError, TypeError) as exc:
            message = f"card key {kid!r}: not a PEM private key, or wrong password ({exc})"
            raise errors.ConfigError(message) from None
        return cls(kid, cast(_PrivateKey, key))


class CardKeySet:
    """The public keys a verifier trusts, by key id; built from keys or a JWK Set."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[CardPublicKey | CardKey] = ()) -> None:
        self._keys: dict[str, CardPublicKey] = {}
        for key in keys:
            public = key.public if isinstance(key, CardKey) else key
            if not isinstance(public, CardPublicKey):
                raise TypeError(f"CardKeySet holds CardPublicKey objects, not {type(key).__name__}")
            if public.kid in self._keys:
                raise errors.ConfigError(f"card key id {public.kid!r} is listed twice")
            self._keys[public.kid] = public

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> CardKeySet:
        """Load ``{"keys": [public JWK, ...]}`` (a JWK Set, RFC 7517)."""
        keys = jwks.get("keys")
        if not isinstance(keys, list) or not all(isinstance(k, Mapping) for k in keys):
            raise errors.ConfigError("a JWK Set is an object with a 'keys' list of JWK objects")
        return cls(CardPublicKey.from_jwk(jwk) for jwk in keys)

    def to_jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [key.to_jwk() for key in self]}

    def get(self, kid: str) -> CardPublicKey | None:
        return self._keys.get(kid)

    @property
    def kids(self) -> list[str]:
        return sorted(self._keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __iter__(self) -> Iterator[CardPublicKey]:
        return iter(list(self._keys.values()))


def generate_card_key(kid: str, *, algorithm: SigningAlgorithm = "ES256") -> CardKey:
    """A fresh signing key: ES256 (P-256, the A2A spec's example) or EdDSA (Ed25519)."""
    if algorithm == "ES256":
        return CardKey(kid, ec.generate_private_key(ec.SECP256R1()))
    if algorithm == "EdDSA":
        return CardKey(kid, ed25519.Ed25519PrivateKey.generate())
    raise errors.ConfigError(f"card keys sign with one of {list(ALGORITHMS)}, not {algorithm!r}")


def public_jwk(key: CardKey | CardPublicKey) -> dict[str, str]:
    """The public JWK of a key, to hand to verifiers (as JSON)."""
    return (key.public if isinstance(key, CardKey) else key).to_jwk()


def sign_card(card: AgentCard, key: CardKey) -> AgentCard:
    """A copy of ``card`` with one more signature, by ``key``; ``card`` itself is not changed."""
    signed = AgentCard()
    signed.CopyFrom(card)
    header = cast(ProtectedHeader, {"alg": key.algorithm, "kid": key.kid, "typ": "JOSE"})
    signer = create_agent_card_signer(PyJWK.from_dict(key.to_jwk()), header)
    try:
        return signer(signed)
    except (ValueError, json_format.Error) as exc:  # too deep, or numbers JSON lacks (NaN)
        raise errors.UserError(f"agent card {card.name!r} cannot be signed: {exc}") from None


def _shown(kids: list[str]) -> str:
    return repr([kid[:64] for kid in kids[:5]]) + (" ..." if len(kids) > 5 else "")


def verify_card(
    card: AgentCard,
    *,
    trusted: CardKeySet | Iterable[CardPublicKey | CardKey],
    require_signature: bool = True,
) -> str | None:
    """Check ``card``'s signatures against ``trusted`` keys; return the key id that verified.

    One signature by a trusted key that matches the card is enough. An unsigned card raises
    :class:`~agentmesh.CardVerificationError` (``kind="unsigned"``) unless
    ``require_signature=False``, which returns None. A card that is signed is always checked:
    signatures only by unknown keys (``"unknown_key"``) or that do not match (``"bad_signature"``)
    are refused either way.
    """
    keys = trusted if isinstance(trusted, CardKeySet) else CardKeySet(trusted)
    named: list[str] = []
    known: list[str] = []

    def key_provider(kid: str | None, jku: str | None) -> PyJWK:
        del jku  # never fetched: trust is what was configured
        named.append(kid if isinstance(kid, str) else "<no kid>")
        public = keys.get(kid) if isinstance(kid, str) else None
        if public is None:
            raise InvalidKeyError("unknown key id")  # a2a-sdk skips to the next signature
        known.append(public.kid)
        return PyJWK.from_dict(public.to_jwk())  # binds the algorithm to the key's

    try:
        create_signature_verifier(key_provider, list(ALGORITHMS))(card)
        return known[-1]  # a2a-sdk stops at the first signature that verifies
    except json_format.Error:  # a2a-sdk lets this through: NaN or infinity in a Struct
        kind, reason = "malformed", "the card has no canonical JSON form (NaN or infinity in it)"
    except NoSignatureError:
        if not require_signature:
            return None
        kind, reason = "unsigned", "it carries no signature and signatures are required"
    except InvalidSignaturesError:
        if known:
            kind = "bad_signature"
            reason = (
                f"the signature by trusted key {_shown(sorted(set(known)))} does not match the "
                "card: it was changed after signing, or signed by another key or algorithm"
            )
        elif named:
            kind, shown = "unknown_key", _shown(sorted(set(named)))
            reason = f"signed only by key ids {shown}; this verifier trusts {_shown(keys.kids)}"
        else:
            kind, reason = "malformed", "no signature header could be read, or no canonical form"
    kids = sorted(set(named))
    raise errors.CardVerificationError(card.name, kind=kind, reason=reason, kids=kids) from None
