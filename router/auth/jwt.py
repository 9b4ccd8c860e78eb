"""JWT validation: HS256 with the shared secret (`AUTH_COOKIE_SECRET`).

`exp` is required, 30 s leeway, `nbf` is checked when present and `iss` when configured.
Only the configured algorithm is accepted, so `alg: none` and algorithm-confusion
tokens fail before any signature check. RS256 via JWKS comes with its refresher actor.
"""

from __future__ import annotations

import jwt

from router.errors import JwtRejected

__all__ = ["JwtRejected", "LEEWAY_S", "looks_like_jwt", "verify_hs256"]

LEEWAY_S = 30


def looks_like_jwt(credential: str) -> bool:
    return credential.count(".") == 2 and credential.startswith("eyJ")


def verify_hs256(token: str, secret: str, *, issuer: str | None = None) -> str:
    """The token's subject (the account id), or `JwtRejected`."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise JwtRejected("malformed token") from None
    if header.get("alg") != "HS256":
        raise JwtRejected(f"token algorithm {header.get('alg')!r} is not accepted")
    options = {"require": ["exp", "sub"], "verify_iss": issuer is not None}
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], leeway=LEEWAY_S,
                            issuer=issuer, options=options)
    except jwt.ExpiredSignatureError:
        raise JwtRejected("token expired") from None
    except jwt.ImmatureSignatureError:
        raise JwtRejected("token not yet valid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise JwtRejected(f"token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidIssuerError:
        raise JwtRejected("token issuer is not accepted") from None
    except jwt.PyJWTError:
        raise JwtRejected("token signature is invalid") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise JwtRejected("token subject must be a non-empty string")
    return subject
