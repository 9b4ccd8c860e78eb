"""The Redis backend (`BILLING_BACKEND=redis`, `REDIS_URL`): the ledger, the key store and
the idempotency store in one Redis, under the prefix "aura:", shared by any number of
router instances on any number of hosts.

`open(config)` builds its `Stores` on one `RedisSession` (client.py); the owner of each
event loop enters `stores.session()`. Modules: client.py (the session and the one way to
send a command or a script), scripts.py (the Lua: every write is one atomic script),
ledger.py (billing, accounts, usage reports), outbox.py (the events settlements queue),
keys.py, idempotency.py (also usable on its own beside another ledger backend),
health.py (`persistence_warning` for doctor).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from router.ledger.redis.client import DEFAULT_PREFIX, RedisSession, check_url
from router.ledger.redis.health import persistence_warning
from router.ledger.redis.idempotency import RedisIdempotency
from router.ledger.redis.keys import RedisKeyStore
from router.ledger.redis.ledger import RedisLedger
from router.ledger.redis.outbox import RedisOutbox
from router.ledger.redis.providers import RedisProviderRows
from router.ledger.stores import Stores
from router.provider_store import ProviderStore, key_box

if TYPE_CHECKING:
    from router.config import Config


def open(config: "Config", *, prefix: str = DEFAULT_PREFIX) -> Stores:  # noqa: A001
    """The stores on `config.redis_url` (a `ConfigError` naming REDIS_URL if it cannot be
    used). Nothing connects until a session is entered."""
    redis = RedisSession(check_url(config.redis_url), prefix=prefix)
    ledger = RedisLedger(redis)
    return Stores(backend="redis", billing=ledger, accounts=ledger, reports=ledger,
                  keys=RedisKeyStore(redis),
                  idempotency=RedisIdempotency(redis, stale_after_s=config.hold_ttl_s),
                  outbox=RedisOutbox(redis), where=redis.where, ping=ledger.ping,
                  close=lambda: None, session=redis.session,
                  provider_store=ProviderStore(RedisProviderRows(redis),
                                               key_box(config.router_secret_key)),
                  details={"redis_session": redis,
                           "persistence_warning_check": lambda: persistence_warning(redis)})


__all__ = ["DEFAULT_PREFIX", "RedisIdempotency", "RedisKeyStore", "RedisLedger",
           "RedisOutbox", "RedisSession", "check_url", "open", "persistence_warning"]
