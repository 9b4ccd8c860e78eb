"""Auth0 RS256 tokens through the real router, the official OpenAI SDK as the client, an
Auth0-like JWKS server on loopback (docs/configuration.md#jwts): an RS256 token is billed
to its `sub` (a new subject opened with the starting grant), HS256 and RS256 work side by
side, a rotated key is picked up with one refresh, a flood of unknown kids costs at most
one JWKS fetch per JWKS_MIN_REFRESH_S, a JWKS outage keeps the last good keys, and a
router started against a JWKS serving garbage says why on /ready and refuses RS256
tokens without crashing (then recovers when the JWKS does)."""

from __future__ import annotations

import secrets
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import httpx
import jwt
import openai
import pytest
from cryptography.hazmat.primitives import serialization

from tests.fakes import FakeProviderServer
from tests.fakes.jwks_server import FakeJwksServer, forged, sign
from tests.harness import JWT_SECRET, RouterProcess, router_config

DOMAIN = "tenant.eu.auth0.com"
ISSUER = f"https://{DOMAIN}/"
AUDIENCE = "https://llm.aura.example"
MIN_REFRESH_S = 1
GRANT = 1_000_000
MESSAGES = [{"role": "user", "content": "Say hello to the billing router."}]


def env_for(jwks: FakeJwksServer, **extra: str) -> dict[str, str]:
    return {"AUTH0_DOMAIN": DOMAIN, "JWKS_URL": jwks.url, "AUTH0_AUDIENCE": AUDIENCE,
            "JWKS_MIN_REFRESH_S": str(MIN_REFRESH_S), "STARTING_GRANT_MICROS": str(GRANT),
            **extra}


@pytest.fixture(scope="module")
def jwks() -> Iterator[FakeJwksServer]:
    with FakeJwksServer(max_age_s=3600) as server:  # no background refresh during the tests
        yield server


@pytest.fixture(scope="module")
def router(fake: FakeProviderServer, jwks: FakeJwksServer,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    config = router_config(fake.openai_base_url, fake.anthropic_base_url)
    with RouterProcess(tmp_path_factory.mktemp("auth0"), config,
                       env=env_for(jwks, AUTH_COOKIE_SECRET=JWT_SECRET)) as proc:
        yield proc


@pytest.fixture(autouse=True)
def jwks_back_up(jwks: FakeJwksServer) -> Iterator[None]:
    jwks.mode = "ok"
    yield
    jwks.mode = "ok"


def subject() -> str:
    return "auth0|" + uuid.uuid4().hex[:16]


def rs256(jwks: FakeJwksServer, sub: str, **kwargs: object) -> str:
    return sign(jwks.current, sub, **{"audience": AUDIENCE, "issuer": ISSUER, **kwargs})


def call(router: RouterProcess, token: str) -> int:
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=token, max_retries=0)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                            max_tokens=4)
    assert answer.usage is not None
    return answer.usage.completion_tokens


def refused(router: RouterProcess, token: str) -> str:
    with pytest.raises(openai.AuthenticationError) as info:
        call(router, token)
    return str(info.value)


def assert_billed(router: RouterProcess, account: str, token: str) -> None:
    state = router.account(account)
    spent = sum(r["cost_micros"] for r in router.usage(token)["recent"])
    assert spent > 0
    assert state["held_micros"] == 0 and state["balance_micros"] == GRANT - spent


def test_an_rs256_token_is_billed_to_its_subject(router: RouterProcess,
                                                 jwks: FakeJwksServer,
                                                 clean_fake: FakeProviderServer) -> None:
    sub = subject()
    token = rs256(jwks, sub)
    assert call(router, token) == 4
    assert call(router, token) == 4
    grants = [e for e in router.ledger(sub) if e["kind"] == "grant"]
    assert [g["amount_micros"] for g in grants] == [GRANT], "opened once, with the grant"
    assert_billed(router, sub, token)
    assert token not in "".join(router.output), "a token is never logged"
    ready = httpx.get(router.base_url + "/ready", timeout=10)
    assert ready.status_code == 200, ready.text


def test_hs256_and_rs256_side_by_side_and_confusions_refused(
        router: RouterProcess, jwks: FakeJwksServer, clean_fake: FakeProviderServer) -> None:
    rs_sub, hs_sub = subject(), "user_" + uuid.uuid4().hex[:10]
    now = int(time.time())
    hs = jwt.encode({"sub": hs_sub, "exp": now + 60}, JWT_SECRET, algorithm="HS256")
    rs = rs256(jwks, rs_sub)
    assert call(router, hs) == 4 and call(router, rs) == 4
    assert_billed(router, hs_sub, hs)
    assert_billed(router, rs_sub, rs)

    pem = jwks.current.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = {"sub": rs_sub, "exp": now + 60, "aud": AUDIENCE, "iss": ISSUER}
    header = {"typ": "JWT", "kid": jwks.current.kid}
    attacks = {
        "HS256 keyed with the RSA public key": (forged({**header, "alg": "HS256"}, claims, pem),
                                                "token signature is invalid"),
        "alg none": (forged({**header, "alg": "none"}, claims, None), "is not accepted"),
        "RS512": (jwt.encode(claims, jwks.current.private, algorithm="RS512", headers=header),
                  "token algorithm 'RS512' is not accepted"),
        "wrong audience": (rs256(jwks, rs_sub, audience="https://other.example"),
                           "token audience is not accepted"),
        "wrong issuer": (rs256(jwks, rs_sub, issuer="https://evil.eu.auth0.com/"),
                         "token issuer is not accepted"),
        "expired": (rs256(jwks, rs_sub, ttl_s=-120), "token expired"),
    }
    fetches = jwks.fetches
    for name, (token, why) in attacks.items():
        assert why in refused(router, token), name
    assert jwks.fetches == fetches, "known kids never cost a fetch"
    assert_billed(router, rs_sub, rs)  # nothing more was spent


def test_a_rotated_key_is_picked_up_with_one_refresh(router: RouterProcess,
                                                     jwks: FakeJwksServer,
                                                     clean_fake: FakeProviderServer) -> None:
    assert call(router, rs256(jwks, subject())) == 4
    before = jwks.fetches
    jwks.rotate()
    assert call(router, rs256(jwks, subject())) == 4  # waits for the refresh, then passes
    assert jwks.fetches == before + 1
    assert call(router, rs256(jwks, subject())) == 4
    assert jwks.fetches == before + 1


def test_a_flood_of_unknown_kids_costs_one_fetch_per_window(router: RouterProcess,
                                                            jwks: FakeJwksServer) -> None:
    tokens = [rs256(jwks, subject(), kid="kid-" + secrets.token_hex(8)) for _ in range(20)]
    before = jwks.fetches
    started = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda t: refused(router, t), tokens))
    elapsed = time.monotonic() - started
    assert all("unknown signing key" in a for a in answers), answers[0]
    fetched = jwks.fetches - before
    assert 1 <= fetched <= 1 + int(elapsed // MIN_REFRESH_S), (fetched, elapsed)
    assert "'kid' is not" not in "".join(answers)


def test_a_jwks_outage_keeps_the_last_good_keys(router: RouterProcess, jwks: FakeJwksServer,
                                                clean_fake: FakeProviderServer) -> None:
    known = rs256(jwks, subject())
    assert call(router, known) == 4
    jwks.mode = "down"
    before = jwks.fetches
    unknown = rs256(jwks, subject(), kid="kid-not-published")
    assert "unknown signing key" in refused(router, unknown)
    assert jwks.fetches == before + 1, "the unknown kid asked, the JWKS answered 503"
    assert call(router, known) == 4, "the last good keys are kept"
    assert call(router, rs256(jwks, subject())) == 4
    assert httpx.get(router.base_url + "/ready", timeout=10).status_code == 200
    assert any("the server answered HTTP 503" in line and "keeping the last good" in line
               for line in router.output)


def test_a_router_started_on_a_garbage_jwks_says_why_and_recovers(
        fake: FakeProviderServer, clean_fake: FakeProviderServer, tmp_path: Path) -> None:
    config = router_config(fake.openai_base_url, fake.anthropic_base_url)
    with FakeJwksServer() as garbage:
        garbage.mode = "garbage"
        with RouterProcess(tmp_path, config,
                           env=env_for(garbage, JWKS_MIN_REFRESH_S="0.5")) as proc:
            ready = httpx.get(proc.base_url + "/ready", timeout=10)
            assert ready.status_code == 503
            assert ready.json()["reasons"] == [
                f"JWKS has no usable key ({garbage.url}): the JWKS is not JSON"]
            assert any("the JWKS is not JSON" in line and "RS256 tokens are refused" in line
                       for line in proc.output)
            sub = subject()
            token = rs256(garbage, sub)
            assert "unknown signing key" in refused(proc, token)
            # only RS256 is configured here: an HS256 token is refused unverified
            hs = jwt.encode({"sub": sub, "exp": int(time.time()) + 60}, JWT_SECRET,
                            algorithm="HS256")
            assert "token algorithm 'HS256' is not accepted" in refused(proc, hs)
            assert proc.proc is not None and proc.proc.poll() is None, "no crash"

            garbage.mode = "ok"  # the IdP is fixed: the next unknown kid loads the keys
            assert call(proc, token) == 4
            assert httpx.get(proc.base_url + "/ready", timeout=10).status_code == 200
            assert_billed(proc, sub, token)
