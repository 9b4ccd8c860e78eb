"""JWT validation: the algorithm rule, the claims rule, and HS256 with `AUTH_COOKIE_SECRET`.

A token is dispatched by its header's `alg` (docs/configuration.md#jwts): HS256 is
verified here with the shared secret, RS256 against the JWKS (`router.auth.jwks`). Any
other algorithm, `none` included, is refused before any signature check, and every
verification names exactly one algorithm with a key of its own family, so neither an
HS256 token keyed with the RSA public key nor an RS256 token where only HS256 is
configured can pass. Claims: `exp` and `sub` required, 30 s leeway, `nbf` checked when
present, `iss` (and `aud` for RS256) when configured.
"""

from __future__ import annotations

from typing import Any, Collection

import jwt
from jwt.types import Options
from jwt.exceptions import InvalidSubjectError

from router.errors import JwtRejected
from router.redact import quote_input

__all__ = ["JwtRejected", "LEEWAY_S", "accepted_header", "decode_subject", "looks_like_jwt",
           "verify_hs256"]

LEEWAY_S = 30


def looks_like_jwt(credential: str) -> bool:
    return credential.count(".") == 2 and credential.startswith("eyJ")


def accepted_header(token: str, algorithms: Collection[str]) -> dict[str, Any]:
    """The token's (unverified) header, if its `alg` is one of `algorithms`."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise JwtRejected("malformed token") from None
    alg = header.get("alg")
    if alg is None:
        raise JwtRejected("token header lacks 'alg'")
    if not isinstance(alg, str) or alg not in algorithms:
        raise JwtRejected(f"token algorithm {quote_input(alg, 20)} is not accepted")
    return header


def decode_subject(token: str, key: Any, algorithm: str, *, issuer: str | None = None,
                   audience: str | None = None) -> str:
    """The subject of a token verified with `key` under `algorithm` alone, or
    `JwtRejected`; the messages say why, never the token or the key."""
    options: Options = {"require": ["exp", "sub"], "verify_iss": issuer is not None,
                        "verify_aud": audience is not None}
    try:
        claims = jwt.decode(token, key, algorithms=[algorithm], leeway=LEEWAY_S,
                            issuer=issuer, audience=audience, options=options)
    except jwt.ExpiredSignatureError:
        raise JwtRejected("token expired") from None
    except jwt.ImmatureSignatureError:
        raise JwtRejected("token not yet valid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise JwtRejected(f"token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidIssuerError:
        raise JwtRejected("token issuer is not accepted") from None
    except jwt.InvalidAudienceError:
        raise JwtRejected("token audience is not accepted") from None
    except InvalidSubjectError:
        raise JwtRejected("token subject must be a non-empty string") from None
    except jwt.InvalidSignatureError:
        raise JwtRejected("token signature is invalid") from None
    except jwt.DecodeError:
        raise JwtRejected("malformed token") from None
    except jwt.PyJWTError:
        raise JwtRejected("token signature is invalid") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise JwtRejected("token subject must be a non-empty string")
    return subject


def verify_hs256(token: str, secret: str, *, issuer: str | None = None) -> str:
    """The token's subject (the account id), or `JwtRejected`."""
    accepted_header(token, ("HS256",))
    return decode_subject(token, secret, "HS256", issuer=issuer)
