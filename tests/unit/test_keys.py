"""Router API keys (docs/api.md): format, hashing, expiry/revocation, and the SQLite key
store."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from router.auth.keys import KeyRecord, hash_key, looks_like_key, new_key, shown_prefix
from router.ledger.sqlite import SqliteDatabase, SqliteKeyStore

URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")


# --- key format ----------------------------------------------------------------------------

def test_new_key_has_prefix_and_at_least_32_url_safe_random_chars() -> None:
    for _ in range(50):
        key = new_key()
        assert key.startswith("ar_sk_")
        tail = key[len("ar_sk_"):]
        assert len(tail) >= 32
        assert URL_SAFE.fullmatch(tail), key


def test_keys_are_random() -> None:
    keys = {new_key() for _ in range(200)}
    assert len(keys) == 200
    # the random part is not a counter or timestamp: the characters after the prefix
    # differ already in the first few positions across keys
    assert len({k[6:14] for k in keys}) == 200


def test_new_keys_pass_looks_like_key() -> None:
    assert looks_like_key(new_key())


@pytest.mark.parametrize("credential", [
    "ar_sk_", "ar_sk_short", "ar_sk_" + "a" * 31, "sk-" + "a" * 48, "ar_pk_" + "a" * 40,
    "Ar_sk_" + "a" * 40, "", "eyJhbGciOiJIUzI1NiJ9.e30.sig",
])
def test_looks_like_key_refuses_other_credentials(credential: str) -> None:
    assert not looks_like_key(credential)


def test_looks_like_key_accepts_exactly_32_random_chars() -> None:
    assert looks_like_key("ar_sk_" + "a" * 32)


def test_hash_is_not_the_key_and_is_stable() -> None:
    key = new_key()
    h = hash_key(key)
    assert h != key
    assert key not in h
    assert key[6:] not in h
    assert hash_key(key) == h
    assert hash_key(new_key()) != h
    # an independent computation: SHA-256 of the key's UTF-8 bytes
    assert h == hashlib.sha256(key.encode("utf-8")).hexdigest()


def test_shown_prefix_never_reveals_more_than_12_chars() -> None:
    for _ in range(50):
        key = new_key()
        shown = shown_prefix(key)
        assert len(shown) <= 12
        assert key.startswith(shown)
        assert shown.startswith("ar_sk_")


def record(expires_at: float | None = None, revoked_at: float | None = None) -> KeyRecord:
    return KeyRecord(id="key_1", account="alice", prefix="ar_sk_abcdef", label=None,
                     models=None, rpm=None, spend_cap_micros=None, expires_at=expires_at,
                     revoked_at=revoked_at, created_at=100.0)


def test_key_without_expiry_or_revocation_is_usable() -> None:
    assert record().usable_at(0.0)
    assert record().usable_at(1e12)


def test_key_expires_at_its_expiry_time() -> None:
    r = record(expires_at=1000.0)
    assert r.usable_at(999.0)
    assert not r.usable_at(1000.0)
    assert not r.usable_at(5000.0)


def test_revoked_key_is_unusable_from_then_on() -> None:
    assert not record(revoked_at=500.0).usable_at(600.0)
    assert not record(expires_at=1e12, revoked_at=500.0).usable_at(600.0)


# --- key store on a real SQLite file ---------------------------------------------------------

@pytest.fixture
def db(tmp_path: Path):
    database = SqliteDatabase(tmp_path / "l.sqlite3")
    yield database
    database.close()


def sqlite_bytes(tmp_path: Path) -> bytes:
    """Every byte SQLite wrote: the main file plus its WAL and shared-memory files."""
    return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("l.sqlite3*")))


async def test_issued_key_is_found_by_its_plaintext(db: SqliteDatabase) -> None:
    store = SqliteKeyStore(db)
    key, rec = await store.issue("alice", label="laptop", models=["gpt-4o-mini"], rpm=30,
                                 spend_cap_micros=5_000_000, expires_at=2000.0, at=1000.0)
    assert key.startswith("ar_sk_") and looks_like_key(key)
    assert rec.account == "alice"
    assert key.startswith(rec.prefix) and len(rec.prefix) <= 12
    found = await store.find(key)
    assert found is not None
    assert found.id == rec.id
    assert found.account == "alice"
    assert found.label == "laptop"
    assert found.models == ("gpt-4o-mini",)
    assert found.rpm == 30
    assert found.spend_cap_micros == 5_000_000
    assert found.expires_at == 2000.0
    assert found.revoked_at is None
    assert found.usable_at(1500.0) and not found.usable_at(2000.0)


async def test_unknown_or_altered_key_is_not_found(db: SqliteDatabase) -> None:
    store = SqliteKeyStore(db)
    key, _ = await store.issue("alice", at=1.0)
    assert await store.find(new_key()) is None
    assert await store.find(key[:-1]) is None
    assert await store.find(key + "x") is None
    assert await store.find(shown_prefix(key)) is None
    flipped = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert await store.find(flipped) is None


async def test_plaintext_key_is_never_stored(db: SqliteDatabase, tmp_path: Path) -> None:
    store = SqliteKeyStore(db)
    keys = [(await store.issue(acct, label="k", at=1.0))[0] for acct in ("alice", "bob", "carol")]
    data = sqlite_bytes(tmp_path)
    for key in keys:
        # the write did land in the files we read: the key's hash is there...
        assert hash_key(key).encode() in data
        # ...but neither the key nor its secret part is
        assert key.encode() not in data
        assert key[12:].encode() not in data
    # and still none after a checkpoint folds the WAL into the main file
    db.close()
    reopened = SqliteDatabase(tmp_path / "l.sqlite3")
    try:
        data = sqlite_bytes(tmp_path)
        for key in keys:
            assert key.encode() not in data
        # the key still works after a restart
        assert (await SqliteKeyStore(reopened).find(keys[0])) is not None
    finally:
        reopened.close()


async def test_revoke_sets_revoked_at(db: SqliteDatabase) -> None:
    store = SqliteKeyStore(db)
    key, rec = await store.issue("alice", at=10.0)
    revoked = await store.revoke(rec.id, at=20.0)
    assert revoked is not None and revoked.revoked_at == 20.0
    found = await store.find(key)
    assert found is not None
    assert found.revoked_at == 20.0
    assert not found.usable_at(21.0)
    # revoking again does not move the revocation time
    again = await store.revoke(rec.id, at=30.0)
    assert again is not None and again.revoked_at == 20.0


async def test_revoke_unknown_key_id(db: SqliteDatabase) -> None:
    assert await SqliteKeyStore(db).revoke("key_doesnotexist", at=1.0) is None


async def test_revoking_one_key_leaves_the_others(db: SqliteDatabase) -> None:
    store = SqliteKeyStore(db)
    k1, r1 = await store.issue("alice", at=1.0)
    k2, _ = await store.issue("alice", at=2.0)
    await store.revoke(r1.id, at=3.0)
    other = await store.find(k2)
    assert other is not None and other.revoked_at is None and other.usable_at(4.0)


async def test_list_by_account(db: SqliteDatabase) -> None:
    store = SqliteKeyStore(db)
    _, a1 = await store.issue("alice", label="one", at=1.0)
    _, b1 = await store.issue("bob", at=2.0)
    _, a2 = await store.issue("alice", label="two", at=3.0)
    alice = await store.list("alice")
    assert [r.id for r in alice] == [a1.id, a2.id]
    assert [r.label for r in alice] == ["one", "two"]
    assert [r.id for r in await store.list("bob")] == [b1.id]
    assert await store.list("nobody") == []
    assert {r.id for r in await store.list()} == {a1.id, a2.id, b1.id}


async def test_public_view_never_shows_the_key(db: SqliteDatabase) -> None:
    store = SqliteKeyStore(db)
    key, rec = await store.issue("alice", at=1.0)
    public = rec.public()
    assert key not in repr(public)
    assert hash_key(key) not in repr(public)
    assert public["prefix"] == shown_prefix(key)
    assert public["account"] == "alice"
