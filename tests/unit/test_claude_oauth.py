"""Claude Code's OAuth logins as an Anthropic credential pool: finding and parsing the
files, expired tokens never picked, the pool kept in step with the files, and the way
Anthropic wants an OAuth token sent (Bearer + the oauth beta, no x-api-key)."""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import trio

from actors.services.credential_files import CredentialFileWatcher
from router.config import load_config
from router.providers import claude_oauth
from router.providers.anthropic import ADAPTER, OAUTH_BETA
from router.providers.base import UpstreamRequest
from router.providers.claude_oauth import (FILE_NAMES, TOKEN_KEYS, CredentialFileError,
                                           account_dirs, parse_credentials, scan)
from router.providers.credentials import CredentialPool, OAuthToken

NOW = 1_800_000_000.0
TOKEN = "sk-ant-oat01-" + "a" * 40
OTHER = "sk-ant-oat01-" + "b" * 40


def write(directory: Path, name: str, doc: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def claude_code_file(token: str, expires_at_ms: float) -> dict[str, object]:
    """The shape Claude Code writes to ~/.claude/.credentials.json."""
    return {"claudeAiOauth": {"accessToken": token, "refreshToken": "sk-ant-ort01-" + "r" * 40,
                              "expiresAt": expires_at_ms,
                              "scopes": ["user:inference", "user:profile"],
                              "subscriptionType": "max"}}


# --- parsing -------------------------------------------------------------------------

@pytest.mark.parametrize("name", FILE_NAMES)
@pytest.mark.parametrize("key", TOKEN_KEYS)
def test_every_file_name_and_token_spelling(tmp_path: Path, name: str, key: str) -> None:
    write(tmp_path / "acct", name, {key: TOKEN})
    accounts, problems = scan([tmp_path / "acct"], NOW)
    assert problems == []
    assert [a.token for a in accounts] == [TOKEN]
    assert isinstance(accounts[0].token, OAuthToken)
    assert accounts[0].path.endswith(name) and accounts[0].expires_at is None


def test_the_nested_shape_claude_code_writes() -> None:
    parsed = parse_credentials(json.dumps(claude_code_file(TOKEN, (NOW + 3600) * 1000)))
    assert parsed == (TOKEN, NOW + 3600, "max", ("user:inference", "user:profile"))


@pytest.mark.parametrize("value, seconds", [
    ((NOW + 5) * 1000, NOW + 5),  # ms, as Claude Code writes it
    (NOW + 5, NOW + 5),  # seconds
    (str(int(NOW + 5)), NOW + 5),
    ("2027-01-15T08:00:00Z", datetime(2027, 1, 15, 8, tzinfo=timezone.utc).timestamp()),
    ("2027-01-15T08:00:00", datetime(2027, 1, 15, 8, tzinfo=timezone.utc).timestamp()),
])
def test_expiry_in_ms_seconds_or_iso(value: object, seconds: float) -> None:
    assert claude_oauth.parse_expiry(value) == pytest.approx(seconds)


@pytest.mark.parametrize("text, why", [
    ("{not json", "not JSON"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({"accessToken": 42}), "not a non-empty string"),
    (json.dumps({"accessToken": "sk-ant-oat01-has space"}), "header-safe"),
    (json.dumps({"accessToken": TOKEN, "expiresAt": "soon"}), "expiry"),
])
def test_broken_files_say_why(text: str | bytes, why: str) -> None:
    with pytest.raises(CredentialFileError, match=why) as caught:
        parse_credentials(text)
    assert TOKEN not in str(caught.value)


def test_a_settings_file_without_a_token_is_no_account(tmp_path: Path) -> None:
    write(tmp_path, "config.json", {"theme": "dark", "mcpServers": {}})
    assert scan([tmp_path], NOW) == ([], [])


def test_unreadable_and_garbage_files_are_skipped_with_a_line_naming_them(
        tmp_path: Path) -> None:
    bad = write(tmp_path / "one", "credentials.json", "{\"accessToken\": \"" + TOKEN + "\"")
    write(tmp_path / "one", ".credentials.json", {"accessToken": OTHER})
    unreadable = write(tmp_path / "two", "auth.json", {"accessToken": TOKEN + "x"})
    unreadable.chmod(0)
    try:
        accounts, problems = scan([tmp_path / "one", tmp_path / "two"], NOW)
    finally:
        unreadable.chmod(0o600)
    assert accounts[0].token == OTHER, "the good file of the same directory"
    assert problems[0].startswith(f"{bad}: skipped: it is not JSON")
    if os.geteuid() != 0:  # root reads anything
        assert len(accounts) == 1
        assert problems[1].startswith(f"{unreadable}: skipped: cannot be read")
    assert all(TOKEN not in p and OTHER not in p for p in problems)


def test_expired_tokens_are_skipped_for_a_good_one_else_kept_as_expired(
        tmp_path: Path) -> None:
    write(tmp_path / "a", "credentials.json", claude_code_file(TOKEN, (NOW - 10) * 1000))
    write(tmp_path / "a", ".credentials.json", claude_code_file(OTHER, (NOW + 3600) * 1000))
    write(tmp_path / "b", ".credentials.json",
          claude_code_file("sk-ant-oat01-" + "c" * 40, (NOW + 30) * 1000))  # within margin
    accounts, _ = scan([tmp_path / "a", tmp_path / "b"], NOW)
    assert [a.token for a in accounts] == [OTHER, "sk-ant-oat01-" + "c" * 40]
    assert not accounts[0].expired(NOW) and accounts[1].expired(NOW)


def test_additional_account_dirs_home_and_repeats(tmp_path: Path) -> None:
    home = str(tmp_path)
    assert account_dirs(None, None, home) == [tmp_path / ".claude"]
    assert account_dirs(None, " ~/.claude , /srv/b,,~/c ", home) == [
        tmp_path / ".claude", Path("/srv/b"), tmp_path / "c"]
    assert account_dirs("/x", "/x,/y", home) == [Path("/x"), Path("/y")]
    assert claude_oauth.label_of(tmp_path / "c", home) == "~/c"


def test_the_same_login_in_two_directories_counts_once(tmp_path: Path) -> None:
    write(tmp_path / "a", ".credentials.json", {"accessToken": TOKEN})
    write(tmp_path / "b", ".credentials.json", {"accessToken": TOKEN})
    accounts, problems = scan([tmp_path / "a", tmp_path / "b"], NOW)
    assert len(accounts) == 1 and "same login" in problems[0]


# --- the config: a claude-code provider -----------------------------------------------

def test_logins_found_make_a_claude_code_provider(tmp_path: Path) -> None:
    home = tmp_path / "cc"
    write(home, ".credentials.json", claude_code_file(TOKEN, (time.time() + 3600) * 1000))
    extra = tmp_path / "more"
    write(extra, "oauth.json", {"oauth_token": OTHER, "expires_at": time.time() - 5})
    env = {"DATA_DIR": str(tmp_path), "HOME": str(tmp_path), "CLAUDE_CODE_HOME": str(home),
           "ADDITIONAL_ACCOUNT_DIRS": str(extra)}
    spec = load_config(env=env, cwd=tmp_path).catalog.providers["claude-code"]
    assert spec.kind == "anthropic" and spec.api_keys == (TOKEN,), "the expired one: not"
    assert "claude-code" not in load_config(env={"DATA_DIR": str(tmp_path),
                                                 "HOME": str(tmp_path / "nobody")},
                                            cwd=tmp_path).catalog.providers


def test_claude_models_prefer_a_platform_key_to_the_subscription_logins(
        tmp_path: Path) -> None:
    home = tmp_path / "cc"
    write(home, ".credentials.json", claude_code_file(TOKEN, (time.time() + 3600) * 1000))
    (tmp_path / "aura-router.toml").write_text(
        '[[providers]]\nname = "ant"\nkind = "anthropic"\napi_keys = ["sk-ant-platform"]\n')
    env = {"DATA_DIR": str(tmp_path), "HOME": str(tmp_path), "CLAUDE_CODE_HOME": str(home)}
    catalog = load_config(env=env, cwd=tmp_path).catalog
    assert "claude-code" in catalog.providers
    model = catalog.resolve("claude-3-5-haiku-latest")
    assert model is not None and model.route[0].provider == "ant"
    (tmp_path / "aura-router.toml").unlink()
    alone = load_config(env=env, cwd=tmp_path).catalog.resolve("claude-3-5-haiku-latest")
    assert alone is not None and alone.route[0].provider == "claude-code", "else the logins"


# --- how the token goes out -------------------------------------------------------------

def _call(credential: str, betas: str | None = None) -> dict[bytes, bytes]:
    passthrough = (("anthropic-beta", betas),) if betas else ()
    call = ADAPTER.build_request(UpstreamRequest("anthropic.messages", "m", b"{}", False,
                                                 passthrough_headers=passthrough), credential)
    return dict(call.headers)


def test_an_oauth_token_goes_as_bearer_with_the_oauth_beta_and_no_api_key() -> None:
    headers = _call(OAuthToken(TOKEN))
    assert headers[b"authorization"] == b"Bearer " + TOKEN.encode()
    assert headers[b"anthropic-beta"] == OAUTH_BETA.encode() and b"x-api-key" not in headers
    merged = _call(OAuthToken(TOKEN), "claude-code-20250219,interleaved-thinking-2025-05-14")
    assert merged[b"anthropic-beta"] == (b"claude-code-20250219,interleaved-thinking-2025-05-14,"
                                         + OAUTH_BETA.encode())
    assert _call(OAuthToken(TOKEN), f"{OAUTH_BETA}, x")[b"anthropic-beta"] == \
        f"{OAUTH_BETA},x".encode(), "once"
    assert _call(TOKEN)[b"authorization"].startswith(b"Bearer "), "an sk-ant-oat key too"
    api = _call("sk-ant-api03-" + "k" * 30)
    assert api[b"x-api-key"] == b"sk-ant-api03-" + b"k" * 30
    assert b"authorization" not in api and b"anthropic-beta" not in api


# --- the pool ---------------------------------------------------------------------------

def test_an_expired_login_is_never_picked_and_says_so() -> None:
    pool = CredentialPool(())
    pool.sync_accounts([("~/a", OAuthToken(TOKEN), 100.0, NOW), ("~/b", OAuthToken(OTHER), 50.0,
                                                                   NOW - 50)])
    assert {pool.pick(60.0).key for _ in range(4)} == {TOKEN}  # type: ignore[union-attr]
    assert pool.pick(100.0) is None and "expired" in pool.unusable_reason(100.0)
    shown = pool.describe(60.0)
    assert [(c["account"], c["state"], c["kind"]) for c in shown] == [
        ("~/a", "ok", "oauth"), ("~/b", "expired", "oauth")]
    assert TOKEN not in str(shown) and OTHER not in str(shown)
    empty = CredentialPool(())
    empty.sync_accounts([])
    assert empty.required and empty.pick(0.0) is None


def test_a_refreshed_token_replaces_the_old_in_place_keeping_the_cooldown() -> None:
    pool = CredentialPool(("sk-ant-api03-static-key-xxxx",))
    pool.sync_accounts([("~/a", OAuthToken(TOKEN), 1e9, None), ("~/b", OAuthToken(OTHER), 1e9,
                                                                  None)])
    a = pool.credentials[1]
    pool.rate_limited(a, 0.0, "30")
    pool.refused(a, 401)
    pool.sync_accounts([("~/a", OAuthToken("sk-ant-oat01-" + "n" * 40), 1e9, None)])
    assert [c.key for c in pool.credentials] == ["sk-ant-api03-static-key-xxxx",
                                                 "sk-ant-oat01-" + "n" * 40]
    assert pool.credentials[1] is a and a.bad is None and a.cooldown_until == 30.0
    assert [c.index for c in pool.credentials] == [0, 1]


# --- the watcher --------------------------------------------------------------------------

async def test_the_watcher_follows_the_files(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "aura.claude_code")
    directory = tmp_path / "acct"
    path = write(directory, ".credentials.json",
                 claude_code_file(TOKEN, (time.time() + 3600) * 1000))
    write(tmp_path / "junk", "auth.json", "garbage " + OTHER)
    pool = CredentialPool(())
    watcher = CredentialFileWatcher(pool, [directory, tmp_path / "junk"], poll_s=0.02,
                                    home=str(tmp_path))
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.serve, trio.open_memory_channel[object](1)[1])
        assert [c.key for c in pool.credentials] == [TOKEN]
        assert pool.credentials[0].account == "~/acct"
        fresh = "sk-ant-oat01-" + "f" * 40
        path.write_text(json.dumps(claude_code_file(fresh, (time.time() + 7200) * 1000)))
        with trio.fail_after(5):
            while pool.credentials[0].key != fresh:
                await trio.sleep(0.02)
        path.write_text(json.dumps(claude_code_file(fresh, (time.time() - 1) * 1000)))
        with trio.fail_after(5):
            while pool.pick(trio.current_time()) is not None:
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    text = caplog.text
    assert "junk/auth.json: skipped: it is not JSON" in text and "~/acct" in text
    assert TOKEN not in text and OTHER not in text and "f" * 40 not in text


async def test_no_usable_login_means_no_call_not_an_unsigned_one() -> None:
    from router.errors import CredentialsResting
    from router.providers.http import HttpProvider
    from router.providers.spec import ProviderSpec

    provider = HttpProvider(ProviderSpec("claude-code", "anthropic", "http://127.0.0.1:9"),
                            ADAPTER)
    provider.pool = object()  # type: ignore[assignment]  # "running"; never reached
    request = UpstreamRequest("anthropic.messages", "m", b"{}", False)
    provider.credentials.sync_accounts([])
    with pytest.raises(CredentialsResting, match="no credential"):
        async with provider.open(request):
            pass
    provider.credentials.sync_accounts([("~/a", OAuthToken(TOKEN), trio.current_time() - 1,
                                         NOW)])
    with pytest.raises(CredentialsResting, match="expired") as caught:
        async with provider.open(request):
            pass
    assert caught.value.retry_after_s == 30.0


def test_the_fake_upstream_checks_oauth_tokens_as_anthropic_does(fake: object) -> None:
    import httpx

    url = fake.anthropic_base_url + "/v1/messages"  # type: ignore[attr-defined]
    body = {"model": "claude-haiku-4-5", "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}]}
    base = {"anthropic-version": "2023-06-01"}

    def post(**headers: str) -> httpx.Response:
        return httpx.post(url, json=body, headers={**base, **headers})

    no_beta = post(authorization=f"Bearer {TOKEN}")
    assert no_beta.status_code == 401
    assert no_beta.json()["error"]["message"] == "OAuth authentication is currently not supported."
    assert post(**{"x-api-key": TOKEN, "anthropic-beta": OAUTH_BETA}).status_code == 401
    assert post(authorization=f"Bearer {TOKEN}", **{"anthropic-beta": f"x,{OAUTH_BETA}"}
                ).status_code == 200
    fake.state.rate_limited_keys = {TOKEN: 7}  # type: ignore[attr-defined]
    try:
        limited = post(authorization=f"Bearer {TOKEN}", **{"anthropic-beta": OAUTH_BETA})
    finally:
        fake.state.rate_limited_keys = {}  # type: ignore[attr-defined]
    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
