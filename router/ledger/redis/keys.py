"""Router API keys in Redis (router.ledger.base.KeyStore): issue, look up by hash, list,
revoke.

A key's record is a hash named by the SHA-256 of the key (`key:{sha256}`), so `find`,
which runs on every request, is one HGETALL; `keys:id` maps ids to hashes for `revoke`,
and two sorted sets by `created_at` serve `list`.
"""

from __future__ import annotations

from typing import Any

import orjson

from router.auth.keys import KeyRecord, hash_key, new_key, new_key_id, shown_prefix
from router.ledger.redis import scripts
from router.ledger.redis.client import RedisSession
from router.ledger.redis.ledger import opt, pairs, text, text_or_none, when


def _record(reply: Any) -> KeyRecord | None:
    f = pairs(reply)
    if not f:
        return None
    models = f.get("models")
    return KeyRecord(
        text(f["id"]), text(f["account"]), text(f["prefix"]), text_or_none(f.get("label")),
        tuple(orjson.loads(models)) if models else None,
        int(f["rpm"]) if f.get("rpm") is not None else None,
        int(f["spend_cap_micros"]) if f.get("spend_cap_micros") is not None else None,
        float(f["expires_at"]) if f.get("expires_at") is not None else None,
        float(f["revoked_at"]) if f.get("revoked_at") is not None else None,
        float(f["created_at"]))


class RedisKeyStore:
    def __init__(self, redis: RedisSession) -> None:
        self.redis = redis

    async def issue(self, account: str, *, label: str | None = None,
                    models: list[str] | None = None, rpm: int | None = None,
                    spend_cap_micros: int | None = None, expires_at: float | None = None,
                    at: float) -> tuple[str, KeyRecord]:
        key, key_id = new_key(), new_key_id()
        record = KeyRecord(key_id, account, shown_prefix(key), label,
                           tuple(models) if models else None, rpm, spend_cap_micros,
                           expires_at, None, at)
        fields: list[str] = ["id", key_id, "account", account, "prefix", record.prefix,
                             "created_at", when(at)]
        optional = (("label", label),
                    ("models", orjson.dumps(models).decode() if models else None),
                    ("rpm", None if rpm is None else str(int(rpm))),
                    ("spend_cap_micros",
                     None if spend_cap_micros is None else str(int(spend_cap_micros))),
                    ("expires_at", None if expires_at is None else when(expires_at)))
        for name, value in optional:
            if value is not None:
                fields += (name, value)
        await self.redis.script(scripts.ISSUE_KEY, hash_key(key), key_id, account, when(at),
                                *fields)
        return key, record

    async def find(self, key: str) -> KeyRecord | None:
        return _record(await self.redis.command(
            b"HGETALL", self.redis.prefix + "key:" + hash_key(key)))

    async def list(self, account: str | None = None) -> list[KeyRecord]:
        reply = await self.redis.script(scripts.LIST_KEYS, opt(account))
        return [r for r in map(_record, reply) if r is not None]

    async def revoke(self, key_id: str, at: float) -> KeyRecord | None:
        return _record(await self.redis.script(scripts.REVOKE_KEY, key_id, when(at)))
