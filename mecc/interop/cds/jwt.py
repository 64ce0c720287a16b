"""The CDS JWT checks: client JWK Sets (public keys only) and the JWTs signed with them.

A client authenticates with a JWT signed by a key from the JWK Set registered for its `iss`
(`mecc cds-clients add`; nothing is ever fetched, `jku` is ignored). Symmetric and unsigned
algorithms are refused; `exp`, `iat` (at most MAX_TOKEN_AGE old), `nbf`, `aud`, `iss` and
`jti` are checked here. Replays of a `jti` are refused in mecc.interop.cds.clients.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from mecc.platform.errors import Unauthorized

ALGORITHMS = ("ES384", "RS384", "ES256", "RS256", "ES512", "RS512")
EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
MAX_TOKEN_AGE = 300  # seconds: `iat` older than this (plus leeway) is refused
LEEWAY = 30  # seconds of clock skew tolerated on exp / iat / nbf


class JwksError(ValueError):
    """A JWK Set that cannot be registered (the message says why)."""


@dataclass(frozen=True)
class ClientKey:
    jwk: jwt.PyJWK
    raw: Mapping[str, Any]


def parse_jwks(data: Any) -> dict[str | None, ClientKey]:
    """The public signing keys of a JWK Set, by kid (None: the only key, without a kid)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list) \
            or not data["keys"]:
        raise JwksError("a JWK Set is {\"keys\": [<JWK>, ...]} with at least one key")
    found: dict[str | None, ClientKey] = {}
    for index, raw in enumerate(data["keys"]):
        where = f"keys[{index}]"
        if not isinstance(raw, Mapping):
            raise JwksError(f"{where}: not a JSON object")
        if raw.get("kty") not in ("EC", "RSA"):
            raise JwksError(f"{where}: kty must be EC or RSA (symmetric keys are refused)")
        if any(k in raw for k in ("d", "p", "q", "dp", "dq", "qi")):
            raise JwksError(f"{where}: holds private key material; register the public "
                            "JWK Set only")
        if raw.get("use", "sig") != "sig":
            raise JwksError(f"{where}: use must be 'sig'")
        alg = raw.get("alg")
        if alg is not None and alg not in ALGORITHMS:
            raise JwksError(f"{where}: alg {alg!r} is not one of {', '.join(ALGORITHMS)}")
        kid = raw.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise JwksError(f"{where}: kid must be a string")
        if len(data["keys"]) > 1 and not kid:
            raise JwksError(f"{where}: every key needs a kid when the set holds several")
        if kid in found:
            raise JwksError(f"{where}: kid {kid!r} appears twice")
        try:
            found[kid] = ClientKey(jwt.PyJWK(dict(raw)), dict(raw))
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            raise JwksError(f"{where}: not a usable public key ({exc})") from None
    return found


def _key_for(keys: Mapping[str | None, ClientKey], header: Mapping[str, Any]) -> ClientKey:
    kid = header.get("kid")
    if kid is not None:
        key = keys.get(kid)
        if key is None:
            raise Unauthorized(f"No key with kid {kid!r} is registered for this issuer.")
        return key
    if len(keys) == 1:
        return next(iter(keys.values()))
    raise Unauthorized("The JWT header has no kid, and this issuer has several keys.")


def _check_algorithm(alg: Any, key: ClientKey) -> str:
    if alg == "none" or not isinstance(alg, str):
        raise Unauthorized("Unsigned JWTs (alg 'none') are refused.")
    if alg.startswith("HS"):
        raise Unauthorized(f"Symmetric JWT algorithms ({alg}) are refused; sign with ES384 "
                           "or RS384.")
    if alg not in ALGORITHMS:
        raise Unauthorized(f"JWT algorithm {alg} is not accepted ({', '.join(ALGORITHMS)}).")
    raw = key.raw
    if raw.get("alg") not in (None, alg):
        raise Unauthorized(f"The key {raw.get('kid')!r} is registered for {raw.get('alg')}, "
                           f"not {alg}.")
    kty = raw.get("kty")
    if (alg.startswith("ES") and kty != "EC") or (alg.startswith("RS") and kty != "RSA"):
        raise Unauthorized(f"The key {raw.get('kid')!r} ({kty}) cannot verify {alg}.")
    if alg.startswith("ES") and raw.get("crv") != EC_CURVES[alg]:
        raise Unauthorized(f"{alg} needs a {EC_CURVES[alg]} key.")
    return alg


def unverified_claims(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, unverified: only to find which client's keys to verify with."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise Unauthorized("The bearer token is neither an API key nor a readable JWT.") \
            from None
    return header, claims


def verify_jwt(token: str, keys: Mapping[str | None, ClientKey], *, issuer: str,
               audience: str, now: float | None = None, max_age: int | None = MAX_TOKEN_AGE,
               leeway: int = LEEWAY) -> dict[str, Any]:
    """Verify a CDS client's JWT; the claims, or Unauthorized saying what is wrong.

    `now` (seconds since the epoch) is injectable so that fixed examples can be checked.
    """
    header, _ = unverified_claims(token)
    key = _key_for(keys, header)
    alg = _check_algorithm(header.get("alg"), key)
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key.jwk.key, algorithms=[alg], audience=audience, issuer=issuer,
            options={"require": ["iss", "aud", "exp", "iat", "jti"], "verify_exp": False,
                     "verify_iat": False, "verify_nbf": False})
    except jwt.InvalidAudienceError:
        raise Unauthorized(f"The JWT's aud is not this endpoint ({audience}).") from None
    except jwt.InvalidIssuerError:
        raise Unauthorized("The JWT's iss is not the registered issuer.") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"The JWT lacks the '{exc.claim}' claim.") from None
    except jwt.InvalidSignatureError:
        raise Unauthorized("The JWT signature does not verify.") from None
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"The JWT is not valid ({type(exc).__name__}).") from None
    now = time.time() if now is None else now
    for claim in ("exp", "iat"):
        if isinstance(claims[claim], bool) or not isinstance(claims[claim], int | float):
            raise Unauthorized(f"The JWT's {claim} is not a number.")
    if claims["exp"] + leeway < now:
        raise Unauthorized("The JWT has expired.")
    if claims["iat"] > now + leeway:
        raise Unauthorized("The JWT is issued in the future.")
    if max_age is not None and now - claims["iat"] > max_age + leeway:
        raise Unauthorized(f"The JWT was issued more than {max_age} seconds ago.")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and not isinstance(nbf, bool) and nbf > now + leeway:
        raise Unauthorized("The JWT is not valid yet (nbf).")
    if not isinstance(claims["jti"], str) or not claims["jti"] or len(claims["jti"]) > 255:
        raise Unauthorized("The JWT's jti must be a string of 1-255 characters.")
    return claims
