"""What this instance shares with the others through `REDIS_URL` (docs/deployment.md),
started first by `actors.root.start_actors` when the setting is there.

The Redis session (`Runtime.shared_redis`: the ledger's own when the ledger is in Redis,
else one that `build_runtime` has the stores enter with theirs, so it is open before
the root nursery and for the server's lifetime) carries the rate limits
(`router.shared.ratelimit`) and a supervised actor shares the breakers' verdicts
(`actors.services.shared_verdicts`). Without `REDIS_URL` nothing starts: limits and
breakers stay per process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from actors.services.shared_verdicts import SharedVerdicts, VerdictOutbox, share_breakers
from actors.supervisor import Supervisor
from router.shared.ratelimit import SharedRateLimiter
from router.shared.verdicts import VerdictBoard

if TYPE_CHECKING:
    from actors.runtime import Runtime


async def start_shared_state(rt: "Runtime", nursery: trio.Nursery) -> None:
    session = rt.shared_redis
    if session is None:
        return
    rt.rate_limiter = SharedRateLimiter(session)
    breakers = {name: provider.breaker for name, provider in rt.providers.items()}
    outbox = VerdictOutbox()
    share_breakers(breakers, outbox, rt.instance.id)
    board = VerdictBoard(session, rt.instance.id)
    await nursery.start(Supervisor("shared-verdicts", lambda: SharedVerdicts(
        board, breakers, outbox)).run)
