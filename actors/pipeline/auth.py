"""Stage 1, auth: a credential becomes a `Principal`, or a 401/403.

A JWT goes by its header's `alg` (docs/configuration.md#jwts): HS256 to the shared
secret (when `AUTH_COOKIE_SECRET` is set), RS256 to the JWKS keyring (when
`AUTH0_DOMAIN` or `JWKS_URL` is set), anything else refused. An RS256 token whose `kid`
is unknown asks the JWKS refresher for one (rate-limited) fetch and is checked again.
"""

from __future__ import annotations

import hmac
from typing import Callable

from actors.services.jwks_refresher import JwksKeyring
from router.auth.jwks import UnknownSigningKey
from router.auth.jwt import accepted_header, looks_like_jwt, verify_hs256
from router.auth.keys import looks_like_key
from router.auth.principal import Principal
from router.config import Config
from router.errors import BadRequest, Forbidden, JwtRejected, Unauthenticated
from router.ledger.base import AccountBook, KeyStore

KNOWN_SUBJECTS_MAX = 100_000


class Authenticator:
    def __init__(self, config: Config, keys: KeyStore, accounts: AccountBook,
                 clock: Callable[[], float], jwks: JwksKeyring | None = None) -> None:
        self.config = config
        self.jwks = jwks
        self.keys = keys
        self.accounts = accounts
        self.clock = clock
        # JWT subjects whose account is known to exist: a cache, the ledger decides.
        self._known_subjects: set[str] = set()

    async def authenticate(self, credential: str | None,
                           account_header: str | None = None) -> Principal:
        if not credential:
            raise Unauthenticated("missing credential: send 'Authorization: Bearer <key>' "
                                  "or 'x-api-key: <key>'")
        service = self.config.internal_service_token
        if service and hmac.compare_digest(credential.encode(), service.encode()):
            if not account_header:
                raise BadRequest("service calls must name the account in 'x-aura-account'")
            return Principal(account=account_header, via="service")
        if looks_like_key(credential):
            record = await self.keys.find(credential)
            if record is None:
                raise Unauthenticated("invalid API key")
            if record.revoked_at is not None:
                raise Forbidden("this API key has been revoked")
            if not record.usable_at(self.clock()):
                raise Unauthenticated("this API key has expired")
            return Principal(account=record.account, key_id=record.id,
                             allowed_models=frozenset(record.models) if record.models else None,
                             rpm=record.rpm, spend_cap_micros=record.spend_cap_micros)
        if looks_like_jwt(credential) and (self.config.auth_cookie_secret or self.jwks):
            try:
                subject = await self._jwt_subject(credential)
            except JwtRejected as exc:
                raise Unauthenticated(f"invalid token: {exc}") from None
            if subject not in self._known_subjects:
                await self.accounts.open_account(subject, self.config.starting_grant_micros,
                                                 self.clock())
                if len(self._known_subjects) >= KNOWN_SUBJECTS_MAX:
                    self._known_subjects.clear()  # a cache: forgetting costs one write each
                self._known_subjects.add(subject)
            return Principal(account=subject, via="jwt")
        raise Unauthenticated("invalid credential")

    async def _jwt_subject(self, token: str) -> str:
        secret, jwks = self.config.auth_cookie_secret, self.jwks
        # Only the algorithms configured: an HS256 token where only a JWKS is set (its
        # "secret" perhaps the RSA public key) is refused here, unverified.
        accepted = ["HS256"] * bool(secret) + ["RS256"] * bool(jwks)
        alg = accepted_header(token, accepted)["alg"]
        if alg == "HS256" and secret:
            return verify_hs256(token, secret, issuer=self.config.jwt_issuer)
        if alg != "RS256" or jwks is None:
            raise JwtRejected(f"token algorithm {alg!r} is not accepted")  # not reached
        try:
            return jwks.verify(token)
        except UnknownSigningKey:
            if not await jwks.refreshed():
                raise
            return jwks.verify(token)
