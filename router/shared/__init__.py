"""What router instances share through `REDIS_URL`, whatever the ledger
(docs/deployment.md).

- `redis`: which `RedisSession` (router.ledger.redis.client) carries it: the stores'
  own when they have one, else one of its own, entered for the server's lifetime.
- `ratelimit`: rate-limit windows, one Lua script per request for all of its limits.
- `verdicts`: circuit-breaker verdicts, a key per open provider (TTL = its cooldown)
  and a Pub/Sub channel; the actor that applies them is
  `actors.services.shared_verdicts`.
- `stream_directory` and `stream_logs`: resumable streams (their record, their events,
  cancels across instances), so that a stream resumes on any instance; the hub's side is
  `actors.services.shared_streams`.

Idempotency-Key claims are shared by their own store.
"""
