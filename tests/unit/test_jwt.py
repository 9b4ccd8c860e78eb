"""HS256 JWTs (docs/api.md, docs/configuration.md#jwts): `sub` is the account; `exp`
required; 30 s leeway; `nbf`/`iss` checked; `alg: none` and any other algorithm refused,
an HS256 token keyed with an RSA public key included. RS256 is in test_jwks.py."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from router.auth.jwt import JwtRejected, accepted_header, looks_like_jwt, verify_hs256
from tests.fakes.jwks_server import forged

SECRET = "test-cookie-secret-" + "0123456789abcdef" * 4


def token(claims: dict[str, Any], *, secret: str = SECRET, alg: str = "HS256",
          headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(claims, secret, algorithm=alg, headers=headers)


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice", "exp": now + 600, "iat": now, **extra}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_valid_token_gives_the_subject() -> None:
    assert verify_hs256(token(claims()), SECRET) == "alice"
    assert verify_hs256(token(claims(sub="user|123")), SECRET) == "user|123"


def test_missing_exp_is_refused() -> None:
    with pytest.raises(JwtRejected):
        verify_hs256(token({"sub": "alice", "iat": int(time.time())}), SECRET)


def test_missing_sub_is_refused() -> None:
    with pytest.raises(JwtRejected):
        verify_hs256(token({"exp": int(time.time()) + 600}), SECRET)


def test_expired_beyond_leeway_is_refused() -> None:
    now = int(time.time())
    with pytest.raises(JwtRejected):
        verify_hs256(token(claims(exp=now - 60)), SECRET)
    with pytest.raises(JwtRejected):
        verify_hs256(token(claims(exp=now - 3600)), SECRET)


def test_expired_within_leeway_is_accepted() -> None:
    assert verify_hs256(token(claims(exp=int(time.time()) - 10)), SECRET) == "alice"


def test_nbf_in_the_future_beyond_leeway_is_refused() -> None:
    with pytest.raises(JwtRejected):
        verify_hs256(token(claims(nbf=int(time.time()) + 120)), SECRET)


def test_nbf_within_leeway_or_past_is_accepted() -> None:
    now = int(time.time())
    assert verify_hs256(token(claims(nbf=now + 10)), SECRET) == "alice"
    assert verify_hs256(token(claims(nbf=now - 100)), SECRET) == "alice"


def test_alg_none_is_refused() -> None:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims()).encode())
    unsigned = f"{header}.{payload}."
    with pytest.raises(JwtRejected):
        verify_hs256(unsigned, SECRET)
    # also with the signature of a real HS256 token attached
    real_sig = token(claims()).rsplit(".", 1)[1]
    with pytest.raises(JwtRejected):
        verify_hs256(f"{header}.{payload}.{real_sig}", SECRET)


@pytest.mark.parametrize("alg_name", ["None", "NONE", "nOnE"])
def test_alg_none_in_other_spellings_is_refused(alg_name: str) -> None:
    header = b64url(json.dumps({"alg": alg_name, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims()).encode())
    with pytest.raises(JwtRejected):
        verify_hs256(f"{header}.{payload}.", SECRET)


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithms_are_refused(alg: str) -> None:
    # signed with the right secret, but not the configured algorithm
    with pytest.raises(JwtRejected):
        verify_hs256(token(claims(), alg=alg), SECRET)


def test_rs256_token_is_refused() -> None:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs = jwt.encode(claims(), private_key, algorithm="RS256")
    # sanity: the token is valid RS256 for its own public key
    assert jwt.decode(rs, private_key.public_key(), algorithms=["RS256"])["sub"] == "alice"
    with pytest.raises(JwtRejected):
        verify_hs256(rs, SECRET)


def test_wrong_secret_is_refused() -> None:
    with pytest.raises(JwtRejected):
        verify_hs256(token(claims(), secret="another-secret-" + "fedcba9876543210" * 4), SECRET)


def test_tampered_payload_is_refused() -> None:
    header, _, sig = token(claims()).split(".")
    forged = b64url(json.dumps(claims(sub="admin")).encode())
    with pytest.raises(JwtRejected):
        verify_hs256(f"{header}.{forged}.{sig}", SECRET)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "eyJ.eyJ.", "not a token at all"])
def test_malformed_tokens_are_refused(garbage: str) -> None:
    with pytest.raises(JwtRejected):
        verify_hs256(garbage, SECRET)


def test_issuer_ignored_when_not_configured() -> None:
    assert verify_hs256(token(claims(iss="https://anyone.example")), SECRET) == "alice"
    assert verify_hs256(token(claims()), SECRET) == "alice"


def test_issuer_checked_when_configured() -> None:
    iss = "https://auth.example.com/"
    assert verify_hs256(token(claims(iss=iss)), SECRET, issuer=iss) == "alice"
    with pytest.raises(JwtRejected):
        verify_hs256(token(claims(iss="https://evil.example.com/")), SECRET, issuer=iss)
    with pytest.raises(JwtRejected):
        verify_hs256(token(claims()), SECRET, issuer=iss)  # no iss at all


@pytest.mark.parametrize("sub", [42, "", None, ["alice"], {"id": "alice"}, True])
def test_non_string_or_empty_subject_is_refused(sub: Any) -> None:
    with pytest.raises(JwtRejected):
        verify_hs256(token(claims(sub=sub)), SECRET)


def test_rejection_message_does_not_echo_the_secret() -> None:
    with pytest.raises(JwtRejected) as info:
        verify_hs256(token(claims(), secret="another-secret-" + "fedcba9876543210" * 4), SECRET)
    assert SECRET not in str(info.value)


def test_looks_like_jwt() -> None:
    assert looks_like_jwt(token(claims()))
    assert not looks_like_jwt("ar_sk_" + "a" * 43)
    assert not looks_like_jwt("sk-abc")


def test_hs256_keyed_with_an_rsa_public_key_pem_is_refused() -> None:
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = public.public_bytes(serialization.Encoding.PEM,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    confused = forged({"alg": "HS256", "typ": "JWT"}, claims(), pem)
    with pytest.raises(JwtRejected) as info:
        verify_hs256(confused, SECRET)
    assert str(info.value) == "token signature is invalid"
    # and verified with the PEM itself, pyjwt refuses an asymmetric key as an HMAC secret
    with pytest.raises(JwtRejected):
        verify_hs256(confused, pem.decode())


def test_an_audience_is_not_checked_for_hs256() -> None:
    assert verify_hs256(token(claims(aud="https://any.example")), SECRET) == "alice"


def test_accepted_header_dispatches_only_the_configured_algorithms() -> None:
    hs = token(claims())
    assert accepted_header(hs, ("HS256", "RS256"))["alg"] == "HS256"
    with pytest.raises(JwtRejected) as info:
        accepted_header(hs, ("RS256",))
    assert str(info.value) == "token algorithm 'HS256' is not accepted"
    with pytest.raises(JwtRejected) as info:
        accepted_header(hs, ())
    assert "is not accepted" in str(info.value)


def test_a_refused_algorithm_is_quoted_bounded() -> None:
    header = b64url(json.dumps({"alg": "X" * 5000 + "'\n", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims()).encode())
    with pytest.raises(JwtRejected) as info:
        verify_hs256(f"{header}.{payload}.", SECRET)
    assert len(str(info.value)) < 120 and "is not accepted" in str(info.value)
    header = b64url(json.dumps({"typ": "JWT"}).encode())
    with pytest.raises(JwtRejected) as info:
        verify_hs256(f"{header}.{payload}.", SECRET)
    assert str(info.value) == "token header lacks 'alg'"
