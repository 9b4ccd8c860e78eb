"""RS256 JWTs against a JWKS (docs/configuration.md#jwts): which keys of a JWKS are used,
what a bad JWKS says, when it is fetched again, every way a token is refused (algorithm
confusion in both directions included), and the refresher against an Auth0-like server:
first fetch before it reports started, rotation picked up, unknown kids rate-limited,
an outage survived with the last good keys."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import jwt
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from actors.pipeline.auth import Authenticator
from actors.services.jwks_refresher import JwksKeyring, JwksRefresher, _pool_and_path
from actors.supervisor import Supervisor
from router.auth.jwks import (JwksError, JwksKeys, JwksSettings, UnknownSigningKey,
                              jwks_settings, parse_jwks, refresh_delay, verify_rs256)
from router.config import load_config
from router.errors import ConfigError, JwtRejected, Unauthenticated
from tests.fakes.jwks_server import FakeJwksServer, SigningKey, b64url, forged, new_key, sign

AUDIENCE = "https://api.aura.example"
ISSUER = "https://tenant.eu.auth0.com/"
SECRET = "hs-secret-" + "0123456789abcdef" * 3


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return new_key("kid-main")


@pytest.fixture(scope="module")
def other() -> SigningKey:
    return new_key("kid-other")


@pytest.fixture(scope="module")
def keys(key: SigningKey) -> JwksKeys:
    return parse_jwks(json.dumps({"keys": [key.jwk()]}).encode())


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "auth0|alice", "aud": AUDIENCE, "iss": ISSUER, "iat": now,
            "exp": now + 300, **extra}


def public_pem(key: SigningKey) -> bytes:
    return key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def rs256(key: SigningKey, body: dict[str, Any] | None = None, **header: Any) -> str:
    return jwt.encode(body if body is not None else claims(), key.private, algorithm="RS256",
                      headers={"kid": key.kid, **header})


def verify(token: str, keys: JwksKeys | None, **kwargs: Any) -> str:
    return verify_rs256(token, keys, **{"audience": AUDIENCE, "issuer": ISSUER, **kwargs})


# --- what of a JWKS is kept -------------------------------------------------------------


def test_an_auth0_jwks_gives_its_rsa_keys_by_kid(key: SigningKey, other: SigningKey) -> None:
    parsed = parse_jwks(json.dumps({"keys": [key.jwk(), other.jwk()]}).encode())
    assert set(parsed.keys) == {"kid-main", "kid-other"}
    main = parsed.get("kid-main")
    assert isinstance(main, RSAPublicKey)
    assert main.public_numbers() == key.private.public_key().public_numbers()
    assert parsed.skipped == ()
    assert "2 keys" in parsed.describe() and "kid-main" in parsed.describe()


def test_keys_without_use_or_alg_are_kept(key: SigningKey) -> None:
    bare = {k: v for k, v in key.jwk().items() if k not in ("use", "alg")}
    assert set(parse_jwks(json.dumps({"keys": [bare]}).encode()).keys) == {"kid-main"}


def test_unusable_entries_are_skipped_with_their_reason(key: SigningKey) -> None:
    jwk = key.jwk()
    small = new_key("kid-small", bits=1024).jwk()
    private = jwt.algorithms.RSAAlgorithm.to_jwk(rsa.generate_private_key(65537, 2048),
                                                 as_dict=True)
    ec_key = jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1())
                                               .public_key(), as_dict=True)
    entries = [
        {**ec_key, "kid": "ec", "alg": "ES256"},
        {**jwk, "kid": "enc", "use": "enc"},
        {**jwk, "kid": "rs512", "alg": "RS512"},
        {"kty": "oct", "kid": "hmac", "k": b64url(b"shared-secret")},
        {**private, "kid": "private"},
        small,
        {**jwk, "kid": "broken", "n": "not base64 !"},
        {k: v for k, v in jwk.items() if k != "kid"},
        "not an object",
        jwk,
        {**jwk, "n": small["n"]},  # a second "kid-main": the first one stays
    ]
    parsed = parse_jwks(json.dumps({"keys": entries}).encode())
    assert set(parsed.keys) == {"kid-main"}
    assert parsed.get("kid-main").public_numbers() == key.private.public_key().public_numbers()
    reasons = " | ".join(parsed.skipped)
    for expected in ("'ec': kty 'EC' is not RSA", "'enc': use 'enc' is not 'sig'",
                     "'rs512': alg 'RS512' is not RS256", "'hmac': kty 'oct' is not RSA",
                     "'private': it holds private key material",
                     "'kid-small': 1024-bit RSA is shorter than 2048 bits",
                     "'broken': not a valid RSA public key", "key #7: no 'kid'",
                     "key #8: not an object", "a second key with this kid"):
        assert expected in reasons


@pytest.mark.parametrize("body, why", [
    (b"<html>Tenant is being migrated</html>", "the JWKS is not JSON"),
    (b"\xff\xfe\x00", "the JWKS is not JSON"),
    (b"", "the JWKS is not JSON"),
    (b"[1, 2]", "the JWKS has no 'keys' list"),
    (b'{"keys": {"kid": "a"}}', "the JWKS has no 'keys' list"),
    (b'{"keys": []}', "the JWKS has no RSA signing key for RS256 (its 'keys' list is empty)"),
    (b'{"keys": [{"kty": "EC", "kid": "e"}]}',
     "the JWKS has no RSA signing key for RS256 (kid 'e': kty 'EC' is not RSA)"),
    (b'{"keys": [' + b'{"kty": "oct"},' * 40_000 + b'{}]}', "larger than"),
])
def test_a_jwks_without_a_usable_key_says_why(body: bytes, why: str) -> None:
    with pytest.raises(JwksError) as info:
        parse_jwks(body)
    assert why in str(info.value)


# --- when it is fetched again -----------------------------------------------------------


@pytest.mark.parametrize("cache_control, expected", [
    (None, 600.0),
    ("", 600.0),
    ("public", 600.0),
    ("public, max-age=3600", 3600.0),
    ("max-age=86400, must-revalidate", 86400.0),
    ('max-age="120"', 120.0),
    ("public, max-age=15, stale-while-revalidate=15, stale-if-error=86400", 30.0),  # Auth0's
    ("max-age=0", 30.0),
    ("no-cache", 30.0),
    ("private, no-store, max-age=900", 30.0),
    ("s-maxage=900", 600.0),
    ("max-age=99999999", 86400.0),  # a removed key goes within a day whatever it says
])
def test_refresh_delay_follows_max_age_within_bounds(cache_control: str | None,
                                                     expected: float) -> None:
    assert refresh_delay(cache_control, default_s=600.0, min_s=30.0) == expected


def test_refresh_delay_never_goes_below_the_minimum() -> None:
    assert refresh_delay(None, default_s=10.0, min_s=30.0) == 30.0
    assert refresh_delay("max-age=5", default_s=600.0, min_s=2.0) == 5.0


# --- where the keys come from -----------------------------------------------------------


def settings(tmp_path: Path, **env: str) -> JwksSettings | None:
    return jwks_settings(load_config({}, env, tmp_path))


def test_auth0_domain_gives_url_issuer_and_audience(tmp_path: Path) -> None:
    for domain in ("tenant.eu.auth0.com", "https://tenant.eu.auth0.com/"):
        got = settings(tmp_path, AUTH0_DOMAIN=domain, AUTH0_AUDIENCE=AUDIENCE,
                       JWT_ISSUER="https://ignored.example/")
        assert got == JwksSettings("https://tenant.eu.auth0.com/.well-known/jwks.json",
                                   AUDIENCE, ISSUER)


def test_jwks_url_wins_for_the_keys_and_jwt_issuer_without_a_domain(tmp_path: Path) -> None:
    got = settings(tmp_path, AUTH0_DOMAIN="tenant.eu.auth0.com",
                   JWKS_URL="http://127.0.0.1:9/keys?token=abc")
    assert got is not None and got.url == "http://127.0.0.1:9/keys?token=abc"
    assert got.issuer == ISSUER and got.audience is None
    assert got.shown_url == "http://127.0.0.1:9/keys"  # never the query
    plain = settings(tmp_path, JWKS_URL="https://idp.example/jwks", JWT_ISSUER="https://idp/")
    assert plain == JwksSettings("https://idp.example/jwks", None, "https://idp/")
    assert settings(tmp_path) is None
    assert settings(tmp_path, AUTH_COOKIE_SECRET=SECRET) is None


@pytest.mark.parametrize("env", [{"AUTH0_DOMAIN": "tenant.auth0.com/path"},
                                 {"AUTH0_DOMAIN": "ten ant.auth0.com"},
                                 {"JWKS_URL": "ftp://idp.example/jwks"},
                                 {"JWKS_URL": "not a url"},
                                 {"JWKS_URL": "https://idp.example:99999/jwks"}])
def test_a_malformed_domain_or_url_is_a_config_error(tmp_path: Path, env: dict[str, str]
                                                     ) -> None:
    with pytest.raises(ConfigError):
        settings(tmp_path, **env)


# --- verify_rs256 -------------------------------------------------------------------------


def test_a_valid_rs256_token_gives_its_subject(key: SigningKey, keys: JwksKeys) -> None:
    assert verify(rs256(key), keys) == "auth0|alice"
    # Auth0 access tokens often carry two audiences
    assert verify(rs256(key, claims(aud=[AUDIENCE, ISSUER + "userinfo"])), keys) == "auth0|alice"
    # with no audience or issuer configured, neither is checked
    assert verify_rs256(rs256(key, claims(aud="x", iss="y")), keys) == "auth0|alice"


# Built when the test runs, not when it is collected: a token made at collection time
# would expire before a long run reaches it.
@pytest.mark.parametrize("body, why", [
    (lambda: claims(aud="https://other-api.example"), "token audience is not accepted"),
    (lambda: {k: v for k, v in claims().items() if k != "aud"}, "token lacks the 'aud' claim"),
    (lambda: claims(iss="https://evil.eu.auth0.com/"), "token issuer is not accepted"),
    (lambda: {k: v for k, v in claims().items() if k != "iss"}, "token lacks the 'iss' claim"),
    (lambda: claims(exp=int(time.time()) - 120), "token expired"),
    (lambda: {k: v for k, v in claims().items() if k != "exp"}, "token lacks the 'exp' claim"),
    (lambda: {k: v for k, v in claims().items() if k != "sub"}, "token lacks the 'sub' claim"),
    (lambda: claims(sub=""), "token subject must be a non-empty string"),
    (lambda: claims(sub=42), "token subject must be a non-empty string"),
    (lambda: claims(nbf=int(time.time()) + 600), "token not yet valid"),
])
def test_bad_claims_are_refused(key: SigningKey, keys: JwksKeys,
                                body: Callable[[], dict[str, Any]], why: str) -> None:
    with pytest.raises(JwtRejected) as info:
        verify(rs256(key, body()), keys)
    assert str(info.value) == why


def test_leeway_is_30_seconds(key: SigningKey, keys: JwksKeys) -> None:
    assert verify(rs256(key, claims(exp=int(time.time()) - 10)), keys) == "auth0|alice"


def test_an_unknown_kid_is_told_apart(key: SigningKey, other: SigningKey, keys: JwksKeys
                                      ) -> None:
    with pytest.raises(UnknownSigningKey):
        verify(rs256(other), keys)
    with pytest.raises(UnknownSigningKey):
        verify(rs256(key), None)  # nothing loaded yet
    with pytest.raises(JwtRejected) as info:
        verify(jwt.encode(claims(), key.private, algorithm="RS256"), keys)
    assert str(info.value) == "token header lacks 'kid'"
    assert not isinstance(info.value, UnknownSigningKey)


def test_a_known_kid_with_another_keys_signature_is_refused(key: SigningKey,
                                                            other: SigningKey,
                                                            keys: JwksKeys) -> None:
    impostor = jwt.encode(claims(), other.private, algorithm="RS256", headers={"kid": key.kid})
    with pytest.raises(JwtRejected) as info:
        verify(impostor, keys)
    assert str(info.value) == "token signature is invalid"
    header, _, signature = rs256(key).split(".")
    tampered = b64url(json.dumps(claims(sub="auth0|admin")).encode())
    with pytest.raises(JwtRejected):
        verify(f"{header}.{tampered}.{signature}", keys)


# --- algorithm confusion ------------------------------------------------------------------


# How a token is refused before any signature check.
UNVERIFIED = ("is not accepted", "token header lacks 'alg'")


def confusion_tokens(key: SigningKey) -> dict[str, str]:
    header = {"typ": "JWT", "kid": key.kid}
    ec_key = ec.generate_private_key(ec.SECP256R1())
    return {
        "none": forged({**header, "alg": "none"}, claims(), None),
        "None": forged({**header, "alg": "None"}, claims(), None),
        "none+rs256 signature": forged({**header, "alg": "none"}, claims(), None)
        + rs256(key).rsplit(".", 1)[1],
        "HS256 keyed with the RSA public key PEM":
            forged({**header, "alg": "HS256"}, claims(), public_pem(key)),
        "HS256 keyed with the JWK modulus":
            forged({**header, "alg": "HS256"}, claims(), key.jwk()["n"].encode()),
        "RS512": jwt.encode(claims(), key.private, algorithm="RS512", headers=header),
        "PS256": jwt.encode(claims(), key.private, algorithm="PS256", headers=header),
        "ES256": jwt.encode(claims(), ec_key, algorithm="ES256", headers=header),
        "alg missing": forged({"typ": "JWT", "kid": key.kid}, claims(), public_pem(key)),
        "alg list": forged({**header, "alg": ["RS256", "HS256"]}, claims(), public_pem(key)),
    }


@pytest.mark.parametrize("attack", list(confusion_tokens(new_key("kid-x"))))
def test_every_confusion_attack_is_refused_by_verify_rs256(key: SigningKey, keys: JwksKeys,
                                                           attack: str) -> None:
    token = confusion_tokens(key)[attack]
    with pytest.raises(JwtRejected) as info:
        verify(token, keys)
    assert str(info.value).endswith(UNVERIFIED), str(info.value)
    assert not isinstance(info.value, UnknownSigningKey)


class Accounts:
    def __init__(self) -> None:
        self.opened: list[tuple[str, int]] = []

    async def open_account(self, account: str, starting_grant: int, at: float) -> bool:
        self.opened.append((account, starting_grant))
        return True


class Keyring(JwksKeyring):
    """The keyring with a refresh that only counts (the actor is tested below)."""

    def __init__(self, keys: JwksKeys, then: JwksKeys | None = None) -> None:
        super().__init__(JwksSettings("https://tenant.eu.auth0.com/.well-known/jwks.json",
                                      AUDIENCE, ISSUER), refresh_s=600, min_refresh_s=30)
        self.keys, self.then, self.asked = keys, then, 0

    async def refreshed(self) -> bool:
        self.asked += 1
        if self.then is None:
            return False
        self.keys = self.then
        return True


def authenticator(tmp_path: Path, ring: JwksKeyring | None, **env: str) -> Authenticator:
    config = load_config({}, {"STARTING_GRANT_MICROS": "7", **env}, tmp_path)
    return Authenticator(config, None, Accounts(), time.time, ring)  # type: ignore[arg-type]


async def refused(auth: Authenticator, token: str) -> str:
    with pytest.raises(Unauthenticated) as info:
        await auth.authenticate(token)
    return info.value.message if hasattr(info.value, "message") else str(info.value)


async def test_rs256_and_hs256_side_by_side_and_each_confusion_refused(
        tmp_path: Path, key: SigningKey, keys: JwksKeys) -> None:
    auth = authenticator(tmp_path, Keyring(keys), AUTH_COOKIE_SECRET=SECRET)
    assert (await auth.authenticate(rs256(key))).account == "auth0|alice"
    hs = jwt.encode({"sub": "bob", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    who = await auth.authenticate(hs)
    assert who.account == "bob" and who.via == "jwt"
    assert auth.accounts.opened == [("auth0|alice", 7), ("bob", 7)]  # type: ignore[attr-defined]
    for attack, token in confusion_tokens(key).items():
        why = await refused(auth, token)
        assert why.startswith("invalid token: "), attack
        if attack.startswith("HS256"):  # HS256 is configured: checked with its own secret
            assert why == "invalid token: token signature is invalid", attack
        else:
            assert why.endswith(UNVERIFIED), (attack, why)
    assert len(auth.accounts.opened) == 2  # type: ignore[attr-defined]


async def test_hs256_is_refused_where_only_rs256_is_configured(
        tmp_path: Path, key: SigningKey, keys: JwksKeys) -> None:
    auth = authenticator(tmp_path, Keyring(keys))
    pem_keyed = confusion_tokens(key)["HS256 keyed with the RSA public key PEM"]
    assert await refused(auth, pem_keyed) == "invalid token: token algorithm 'HS256' is not " \
                                             "accepted"
    hs = jwt.encode({"sub": "bob", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    assert await refused(auth, hs) == "invalid token: token algorithm 'HS256' is not accepted"
    assert (await auth.authenticate(rs256(key))).account == "auth0|alice"


async def test_rs256_is_refused_where_only_hs256_is_configured(
        tmp_path: Path, key: SigningKey) -> None:
    auth = authenticator(tmp_path, None, AUTH_COOKIE_SECRET=SECRET)
    assert await refused(auth, rs256(key)) == "invalid token: token algorithm 'RS256' is not " \
                                              "accepted"


async def test_without_any_jwt_setting_a_jwt_is_an_invalid_credential(
        tmp_path: Path, key: SigningKey) -> None:
    assert await refused(authenticator(tmp_path, None), rs256(key)) == "invalid credential"


async def test_an_unknown_kid_asks_for_one_refresh_then_verifies_again(
        tmp_path: Path, key: SigningKey, other: SigningKey, keys: JwksKeys) -> None:
    rotated = parse_jwks(json.dumps({"keys": [other.jwk()]}).encode())
    ring = Keyring(keys, then=rotated)
    auth = authenticator(tmp_path, ring)
    assert (await auth.authenticate(rs256(other))).account == "auth0|alice"
    assert ring.asked == 1
    stuck = Keyring(keys)  # the refresh did not happen (rate limit) or did not help
    assert await refused(authenticator(tmp_path, stuck), rs256(other)) == \
        "invalid token: unknown signing key"
    assert stuck.asked == 1
    assert (await authenticator(tmp_path, stuck).authenticate(rs256(key))).account
    assert stuck.asked == 1, "a known kid never asks"


# --- the refresher against an Auth0-like server -------------------------------------------


@pytest.fixture
def server() -> Any:
    with FakeJwksServer(max_age_s=3600) as jwks:
        yield jwks


def ring_for(server: FakeJwksServer, *, min_refresh_s: float = 0.3, wait_s: float = 5.0,
             refresh_s: float = 600.0) -> JwksKeyring:
    return JwksKeyring(JwksSettings(server.url, AUDIENCE, ISSUER), refresh_s=refresh_s,
                       min_refresh_s=min_refresh_s, wait_s=wait_s)


def token(server: FakeJwksServer, key: SigningKey | None = None, **kwargs: Any) -> str:
    return sign(key or server.current, "auth0|carol", audience=AUDIENCE, issuer=ISSUER,
                **kwargs)


async def test_first_fetch_is_done_before_the_refresher_reports_started(
        server: FakeJwksServer) -> None:
    ring = ring_for(server)
    assert ring.unready_reason() is not None
    async with trio.open_nursery() as nursery:
        await nursery.start(Supervisor("jwks", lambda: JwksRefresher(ring)).run)
        assert server.fetches == 1 and ring.fetches == 1
        assert ring.unready_reason() is None and ring.problem is None
        assert ring.verify(token(server)) == "auth0|carol"
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("mode, why", [("garbage", "the JWKS is not JSON"),
                                       ("no_usable_key", "no RSA signing key for RS256"),
                                       ("down", "the server answered HTTP 503"),
                                       ("truncated", "the server could not be reached")])
async def test_a_bad_jwks_at_start_is_a_reason_not_a_crash(
        server: FakeJwksServer, mode: str, why: str, caplog: pytest.LogCaptureFixture
        ) -> None:
    server.mode = mode
    ring = ring_for(server)
    async with trio.open_nursery() as nursery:
        await nursery.start(Supervisor("jwks", lambda: JwksRefresher(ring)).run)
        reason = ring.unready_reason()
        assert reason is not None and reason.startswith(f"JWKS has no usable key ({server.url})")
        assert why in reason
        with pytest.raises(UnknownSigningKey):
            ring.verify(token(server))
        server.mode = "ok"  # the IdP is back: the next request's refresh loads the keys
        assert await ring.refreshed()
        assert ring.unready_reason() is None
        assert ring.verify(token(server)) == "auth0|carol"
        nursery.cancel_scope.cancel()
    logged = [r.getMessage() for r in caplog.records if r.name == "aura.jwks"]
    assert any(why in line and "RS256 tokens are refused" in line for line in logged), logged


async def test_an_outage_keeps_the_last_good_keys(server: FakeJwksServer) -> None:
    ring = ring_for(server)
    async with trio.open_nursery() as nursery:
        await nursery.start(Supervisor("jwks", lambda: JwksRefresher(ring)).run)
        good = token(server)
        for mode in ("down", "garbage", "no_usable_key", "truncated"):
            server.mode = mode
            before = server.fetches
            assert await ring.refreshed()
            assert server.fetches == before + 1
            assert ring.problem is not None and ring.unready_reason() is None
            assert ring.verify(good) == "auth0|carol"
        nursery.cancel_scope.cancel()


async def test_rotation_is_picked_up_and_a_removed_key_stops_verifying(
        server: FakeJwksServer) -> None:
    ring = ring_for(server)
    async with trio.open_nursery() as nursery:
        await nursery.start(Supervisor("jwks", lambda: JwksRefresher(ring)).run)
        old = server.current
        new = server.rotate()
        with pytest.raises(UnknownSigningKey):
            ring.verify(token(server, new))
        assert await ring.refreshed()
        assert ring.verify(token(server, new)) == "auth0|carol"
        with pytest.raises(UnknownSigningKey):
            ring.verify(token(server, old))  # rotated out: revoked
        nursery.cancel_scope.cancel()


async def test_unknown_kids_are_rate_limited_to_one_fetch_per_window(
        server: FakeJwksServer) -> None:
    ring = ring_for(server, min_refresh_s=0.5)
    async with trio.open_nursery() as nursery:
        await nursery.start(Supervisor("jwks", lambda: JwksRefresher(ring)).run)
        fetched_at = [ring.last_fetch_at]
        for round_ in (1, 2, 3):
            answers: list[bool] = []

            async def ask() -> None:
                answers.append(await ring.refreshed())

            async with trio.open_nursery() as flood:
                for _ in range(20):
                    flood.start_soon(ask)
            assert answers == [True] * 20
            assert server.fetches == 1 + round_, "twenty unknown kids, one fetch"
            fetched_at.append(ring.last_fetch_at)
        nursery.cancel_scope.cancel()
    gaps = [b - a for a, b in zip(fetched_at, fetched_at[1:])]
    assert all(gap >= 0.5 for gap in gaps), f"fetches closer than JWKS_MIN_REFRESH_S: {gaps}"


async def test_an_unknown_kid_past_the_wait_bound_is_refused_at_once(
        server: FakeJwksServer) -> None:
    ring = ring_for(server, min_refresh_s=60.0, wait_s=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(Supervisor("jwks", lambda: JwksRefresher(ring)).run)
        started = trio.current_time()
        assert not await ring.refreshed()
        assert trio.current_time() - started < 1.0, "no point waiting for a refresh 60 s away"
        assert server.fetches == 1
        nursery.cancel_scope.cancel()


async def test_the_next_fetch_follows_cache_control_and_failures_back_off(
        server: FakeJwksServer) -> None:
    ring = ring_for(server, min_refresh_s=2.0, refresh_s=20.0)
    refresher = JwksRefresher(ring)
    pool, path = _pool_and_path(ring.settings.url)
    try:
        assert await refresher._fetch(pool, path) == 3600.0  # the server's max-age
        server.max_age_s = 1
        assert await refresher._fetch(pool, path) == 2.0  # never below JWKS_MIN_REFRESH_S
        server.mode = "down"
        assert [await refresher._fetch(pool, path) for _ in range(5)] == [2, 4, 8, 16, 20]
        server.mode = "ok"
        assert await refresher._fetch(pool, path) == 2.0
        assert refresher.failures == 0
    finally:
        await pool.aclose()
