"""`router.redact`: what of a provider's or client's text may be shown. Example tests for
each redaction rule, the bound and its cut, `display_url` and `quote_input`; hypothesis
properties: no 6+ character prefix of a secret ever survives, the bound always holds, and
`display_url` never shows userinfo or query."""

from __future__ import annotations

import string
import time
from urllib.parse import quote, urlunsplit

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from router.redact import ELLIPSIS, MARKER, Redactor, display_url, quote_input

KEY = "sk-fake-openai-0123456789abcdefXYZ"
GEMINI_KEY = "gm-secret-key-zzzz-9876543210"
SHORT = "pw42"
BASE = "https://api.upstream.example:8443/v1/"
OTHER = "http://10.1.2.3/openai"


@pytest.fixture
def r() -> Redactor:
    return Redactor([KEY, GEMINI_KEY, SHORT, ""], [BASE, OTHER])


def leaks(out: str, secret: str) -> bool:
    """Does `out` hold any 6+ character prefix of `secret` (whole, if shorter)?"""
    return secret[:6] in out


# -- secrets -------------------------------------------------------------------------


def test_whole_key_is_redacted(r: Redactor) -> None:
    out = r.redact(f"Incorrect API key provided: {KEY}. Check your key.")
    assert out == f"Incorrect API key provided: {MARKER}. Check your key."


def test_six_char_prefix_is_redacted_five_is_not(r: Redactor) -> None:
    # GEMINI_KEY matches no key shape, so only the prefix rule applies.
    six, five = GEMINI_KEY[:6], GEMINI_KEY[:5]
    assert r.redact(f"key {six}... rejected") == f"key {MARKER}... rejected"
    assert r.redact(f"key {five}... rejected") == f"key {five}... rejected"


def test_longer_truncated_echo_is_redacted_whole(r: Redactor) -> None:
    out = r.redact(f"invalid key '{GEMINI_KEY[:14]}***{GEMINI_KEY[-4:]}'")
    assert out == f"invalid key '{MARKER}***{GEMINI_KEY[-4:]}'"


def test_prefix_inside_a_word_is_redacted(r: Redactor) -> None:
    out = r.redact(f"x{GEMINI_KEY[:9]}y")
    assert out == f"x{MARKER}y"


def test_short_secret_is_matched_whole_only(r: Redactor) -> None:
    assert r.redact(f"password {SHORT} wrong") == f"password {MARKER} wrong"
    assert r.redact("password pw4 wrong") == "password pw4 wrong"


def test_longest_prefix_wins_among_secrets_sharing_a_head() -> None:
    red = Redactor(["abcdefgh-long-secret", "abcdefZZ"], [])
    assert red.redact("[abcdefgh-long-sec]") == f"[{MARKER}]"
    assert red.redact("(abcdefZZ)") == f"({MARKER})"


def test_blank_secrets_are_ignored() -> None:
    red = Redactor(["", "   "], [])
    assert red.redact("a   b") == "a   b"


# -- URLs ----------------------------------------------------------------------------


def test_base_url_host_port_and_host_are_redacted(r: Redactor) -> None:
    text = ("POST https://api.upstream.example:8443/v1/chat/completions failed; "
            "connect to api.upstream.example:8443 (api.upstream.example) refused")
    out = r.redact(text)
    assert "upstream" not in out and "8443" not in out
    assert out == (f"POST {MARKER}/chat/completions failed; "
                   f"connect to {MARKER} ({MARKER}) refused")


def test_url_without_port_and_ip_host(r: Redactor) -> None:
    out = r.redact("GET http://10.1.2.3/openai/models: 502 from 10.1.2.3")
    assert out == f"GET {MARKER}/models: 502 from {MARKER}"
    # Another address that merely starts the same way is left alone.
    assert r.redact("10.1.2.30 is fine") == "10.1.2.30 is fine"


def test_url_match_ignores_case(r: Redactor) -> None:
    assert r.redact("at API.UPSTREAM.EXAMPLE") == f"at {MARKER}"


def test_url_with_userinfo_in_config_is_still_hidden() -> None:
    red = Redactor([], ["https://bob:hunter2@llm.internal:9000/api?x=1"])
    out = red.redact("error from https://llm.internal:9000/api/v2 (llm.internal)")
    assert out == f"error from {MARKER}/v2 ({MARKER})"


# -- bearer tokens, key shapes, parameters ---------------------------------------------


@pytest.mark.parametrize("header", ["Bearer", "bearer", "BEARER"])
def test_bearer_token(r: Redactor, header: str) -> None:
    out = r.redact(f"Authorization: {header} eyJhbGciOi.J9.x-y_z  rejected")
    assert out == f"Authorization: {header} {MARKER}  rejected"


@pytest.mark.parametrize("key", [
    "sk-abcdefghijklmnop1234",
    "sk-proj-AbC123_def-456ghiJKL",
    "sk-ant-api03-AAAAbbbbCCCCdddd-eeee_ffff",
    "sk-fake-op",
    "AIzaSyA1234567890abcdefghijklmnopqrstu",
    "AIza" + "x" * 20,
    "AKIAIOSFODNN7EXAMPLE",
    "ASIAABCDEFGHIJKLMNOP",
])
def test_key_shapes(key: str) -> None:
    red = Redactor([], [])
    assert red.redact(f"invalid key: {key}...") == f"invalid key: {MARKER}..."
    assert red.redact(f"'{key}'") == f"'{MARKER}'"


def test_key_shapes_need_their_length_and_boundary() -> None:
    red = Redactor([], [])
    for text in ("task-force", "sk-ab", "AIzaShort", "AKIA1234", "desk-lamp-stand"):
        assert red.redact(text) == text


@pytest.mark.parametrize("name", ["key", "api_key", "token", "access_token", "API-KEY",
                                  "client_secret", "x-goog-api-key"])
def test_query_parameter_values(name: str) -> None:
    red = Redactor([], [])
    out = red.redact(f"GET /v1/models?{name}=s3cr3t-value&alt=json#frag")
    assert out == f"GET /v1/models?{name}={MARKER}&alt=json#frag"


def test_ordinary_parameters_are_kept() -> None:
    red = Redactor([], [])
    assert red.redact("?model=gpt-4o&max_tokens=5") == "?model=gpt-4o&max_tokens=5"


def test_short_secret_does_not_split_a_key_shape() -> None:
    red = Redactor(["abc"], [])
    assert red.redact("AIzaSy1234567890abcdefghijkl") == MARKER


# -- the bound -------------------------------------------------------------------------


def test_short_text_is_unchanged() -> None:
    assert Redactor([], []).redact("plain message") == "plain message"
    assert Redactor([], []).redact("") == ""


def test_bound_truncates_with_ellipsis() -> None:
    out = Redactor([], []).redact("x" * 1000, limit=50)
    assert out == "x" * 49 + ELLIPSIS
    assert Redactor([], []).redact("abc", limit=0) == ""
    assert Redactor([], []).redact("abc", limit=1) == ELLIPSIS


def test_redaction_happens_before_truncation(r: Redactor) -> None:
    # The key straddles the limit: cut first, its prefix would show.
    for cut in range(0, len(KEY) + 1):
        text = "e" * (40 - cut) + KEY + " tail"
        out = r.redact(text, limit=40)
        assert len(out) <= 40
        assert not leaks(out, KEY)


def test_cut_never_leaves_a_prefix_of_a_secret() -> None:
    secret = "zq9Wm2-Kv7_pLx4Rt8"
    red = Redactor([secret], [])
    for start in range(0, 30):
        for limit in range(1, 60):
            text = "a" * start + secret + "b" * 40 + secret[:8] + "c" * 10
            out = red.redact(text, limit=limit)
            assert len(out) <= limit
            assert not leaks(out, secret), (start, limit, out)


def test_cut_does_not_split_the_marker() -> None:
    red = Redactor(["0123456789abcdef"], [])
    for limit in range(5, 30):
        out = red.redact("msg " + "0123456789abcdef" + " more text " * 5, limit=limit)
        assert len(out) <= limit
        assert "[" not in out.replace(MARKER, "")
        assert out.endswith(ELLIPSIS)


def test_ellipsis_cannot_complete_a_secret_prefix() -> None:
    # A (weird) secret holding "…": the bound's own "…" must not finish its prefix.
    secret = "abcde" + ELLIPSIS + "fghij"
    red = Redactor([secret], [])
    for limit in range(1, 20):
        out = red.redact("xx abcdeZZZZZZZZZZZZZZZZZZZZZZ", limit=limit)
        assert len(out) <= limit
        assert secret[:6] not in out, (limit, out)


def test_huge_input_is_fast_and_bounded(r: Redactor) -> None:
    text = ("upstream said: " + KEY + " at " + BASE + " ") * (10 * 1024 * 1024 // 100)
    text = text[: 10 * 1024 * 1024]
    t0 = time.perf_counter()
    out = r.redact(text)
    elapsed = time.perf_counter() - t0
    assert len(out) <= 500 and out.endswith(ELLIPSIS)
    assert not leaks(out, KEY) and "upstream.example" not in out
    assert elapsed < 2.0


def test_scan_cap_drops_the_token_it_cuts() -> None:
    # Redaction shrinks 60-character secrets to 10, so the output reaches the 64 KiB scan
    # cap, which cuts an AWS key id in two: the piece too short to be recognised must go.
    secret = "Q" * 60
    red = Redactor([secret], [])
    head = (secret + " ") * 1073
    text = head + "w" * (65530 - len(head)) + " AKIAIOSFODNN7EXAMPLE" + " tail" * 100
    assert text.index("AKIA") < 64 * 1024 < text.index("AKIA") + 20
    out = red.redact(text, limit=30_000)
    assert len(out) <= 30_000 and out.endswith(ELLIPSIS)
    assert out.count(MARKER) == 1073 and "AKIA" not in out


def test_pathological_runs_are_fast() -> None:
    red = Redactor([KEY, GEMINI_KEY], [BASE])
    for text in ("a-" * 40000, "sk-" * 30000, "key" * 30000, "Bearer " * 20000,
                 KEY[:6] * 20000):
        t0 = time.perf_counter()
        out = red.redact(text)
        assert time.perf_counter() - t0 < 1.0
        assert len(out) <= 500


def test_typical_messages_are_fast(r: Redactor) -> None:
    msg = ('{"error": {"message": "Incorrect API key provided: sk-fake-op***ABCD. You can '
           'find your API key at https://platform.openai.com/account/api-keys.", '
           '"type": "invalid_request_error", "code": "invalid_api_key"}}') * 3
    t0 = time.perf_counter()
    for _ in range(1000):
        r.redact(msg)
    assert time.perf_counter() - t0 < 2.0


# -- display_url -------------------------------------------------------------------------


def test_display_url_strips_userinfo_query_fragment() -> None:
    assert display_url("http://user:pw@host:8080/v1?key=x#f") == "http://host:8080/v1"
    assert display_url("HTTPS://api.openai.com/v1/") == "https://api.openai.com/v1/"
    assert display_url("http://[::1]:9000/x?y=1") == "http://[::1]:9000/x"
    assert display_url("https://example.com") == "https://example.com"


@pytest.mark.parametrize("garbage", [
    "", "   ", "not a url", "host:8080/v1", "//host/path", "http://", "http://user@",
    "http://[::1", "http://host:99999/", "http://host:port/", "http://ho st/",
    "http://host/\x00", None, 42, b"http://host/",
])
def test_display_url_garbage(garbage: object) -> None:
    assert display_url(garbage) == "(invalid URL)"  # type: ignore[arg-type]


def test_display_url_is_bounded() -> None:
    out = display_url("https://host/" + "p" * 100_000)
    assert len(out) <= 512 and out.endswith(ELLIPSIS)


# -- quote_input ---------------------------------------------------------------------------


def test_quote_input_examples() -> None:
    assert quote_input("gpt-4o") == "'gpt-4o'"
    assert quote_input(42) == "'42'"
    assert quote_input("it's \\ \n") == "'it\\'s \\\\ \\n'"
    assert quote_input("x" * 150) == "'" + "x" * 100 + "'" + ELLIPSIS + "(50 more characters)"
    assert quote_input("abc", limit=2) == "'ab'" + ELLIPSIS + "(1 more characters)"
    assert quote_input("") == "''"


def test_quote_input_escapes_count_toward_the_limit() -> None:
    out = quote_input("\x00" * 1000, limit=10)
    assert out == "'\\x00\\x00'" + ELLIPSIS + "(998 more characters)"


def test_quote_input_survives_a_broken_str() -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert quote_input(Broken()) == "<unprintable Broken>"
    assert len(quote_input(10 ** 5000)) <= 140


def test_quote_input_is_bounded_for_huge_input() -> None:
    out = quote_input("\U0001f600\x07" * 5_000_000)
    assert len(out) <= 140


@given(st.text(), st.integers(min_value=0, max_value=300))
def test_quote_input_length_property(value: str, limit: int) -> None:
    out = quote_input(value, limit)
    assert len(out) <= limit + 40
    if len(value) <= limit and value.isprintable() and "'" not in value and "\\" not in value:
        assert out == f"'{value}'"


# -- properties ------------------------------------------------------------------------------

URL_SAFE = string.ascii_letters + string.digits + "-_"
secrets_st = st.lists(st.text(URL_SAFE, min_size=8, max_size=60), min_size=1, max_size=4)


@st.composite
def texts_with_secrets(draw: st.DrawFn) -> tuple[list[str], str]:
    secrets = draw(secrets_st)
    # Pieces: noise (often from the secrets' own alphabet, to make near-misses likely),
    # whole secrets and prefixes of them, concatenated in random order.
    noise = st.one_of(st.text(max_size=30), st.text(URL_SAFE + " ./:=", max_size=30))
    pieces = draw(st.lists(st.one_of(
        noise,
        st.sampled_from(secrets),
        st.builds(lambda s, k: s[:k], st.sampled_from(secrets), st.integers(1, 60)),
    ), max_size=12))
    return secrets, "".join(pieces)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(texts_with_secrets(), st.integers(min_value=0, max_value=700))
def test_no_secret_prefix_survives(case: tuple[list[str], str], limit: int) -> None:
    secrets, text = case
    # The marker is public text; a secret starting with a piece of it ("redacted…")
    # would be "shown" by every marker.
    assume(not any(s[:6] in MARKER for s in secrets))
    out = Redactor(secrets, ["https://api.example.com/v1"]).redact(text, limit)
    assert len(out) <= limit + 1
    assert len(out) <= limit
    for s in secrets:
        assert s[:6] not in out


@settings(max_examples=200)
@given(secrets_st, st.text(max_size=200), st.text(max_size=200), st.integers(0, 400),
       st.integers(1, 120))
def test_secret_at_random_position(secrets: list[str], before: str, after: str,
                                   pos: int, limit: int) -> None:
    assume(not any(s[:6] in MARKER for s in secrets))
    red = Redactor(secrets, [])
    for s in secrets:
        text = before + s + after
        cut = min(pos, len(text))
        text = text[:cut] + s + text[cut:]
        out = red.redact(text, limit)
        assert len(out) <= limit
        for t in secrets:
            assert t[:6] not in out


hosts = st.from_regex(r"[a-z][a-z0-9]{0,10}(\.[a-z][a-z0-9]{0,8}){0,3}", fullmatch=True)
# Userinfo and query use capitals only, so they cannot coincide with host or path text.
upper = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=4, max_size=20)
paths = st.from_regex(r"(/[a-z0-9._~-]{0,8}){0,4}", fullmatch=True)


@given(st.sampled_from(["http", "https"]), upper, upper, hosts,
       st.one_of(st.none(), st.integers(1, 65535)), paths, upper, st.text(max_size=20))
def test_display_url_hides_userinfo_and_query(scheme: str, user: str, password: str,
                                              host: str, port: int | None, path: str,
                                              query: str, fragment: str) -> None:
    hostport = host if port is None else f"{host}:{port}"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{hostport}"
    url = urlunsplit((scheme, netloc, path, f"key={query}", quote(fragment, safe="")))
    out = display_url(url)
    assert out == f"{scheme}://{hostport}{path}"
    assert password not in out and query not in out and user not in out


@given(st.text(max_size=30), st.text(max_size=30), st.text(max_size=30),
       st.text(max_size=30), st.text(max_size=30))
def test_display_url_never_raises_nor_shows_query(scheme: str, netloc: str, path: str,
                                                  query: str, fragment: str) -> None:
    try:
        url = urlunsplit((scheme, netloc, path, query, fragment))
    except ValueError:
        return
    out = display_url(url)
    assert isinstance(out, str) and len(out) <= 512
    assert all(ch.isprintable() and not ch.isspace() for ch in out) or out == "(invalid URL)"


def test_each_part_of_a_compound_provider_credential_is_redacted(tmp_path: object) -> None:
    """A Bedrock credential is `AKID:SECRET`: a provider's message may quote either half."""
    from pathlib import Path

    from actors.runtime import build_runtime
    from router.config import load_config

    akid, secret = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    home = Path(str(tmp_path))
    (home / "aura-router.toml").write_text(
        f'[[providers]]\nname = "bed"\nkind = "bedrock"\nregion = "us-east-1"\n'
        f'base_url = "https://bedrock-runtime.us-east-1.amazonaws.com"\n'
        f'api_keys = ["{akid}:{secret}"]\n')
    runtime = build_runtime(load_config(env={"DATA_DIR": str(home), "HOME": str(home)},
                                        cwd=home))
    try:
        said = runtime.redactor.redact(f"The security token {secret} is invalid; key {akid}")
        assert secret not in said and akid not in said and MARKER in said
        assert "profile" in runtime.redactor.redact("profile:default is unknown"), \
            "short parts are words, not secrets"
    finally:
        runtime.stores.close()
