"""HTTP providers: one keep-alive connection pool per provider (`h11_pool`), a credential
pool and a circuit breaker; the kind's adapter addresses and signs each call.

The pool is created and closed by the provider's supervisor actor (`start`/`aclose`).
Every limit comes from the provider's config: connections in flight, connect timeout,
longest silence between two reads. The same actor calls `probe` (`router.providers.probe`):
the kind's cheap authenticated call (`HttpAdapter.probe_call`) once per credential
through this pool, or a bare connect where the kind has none.
"""

from __future__ import annotations

from types import TracebackType

import trio

from router.errors import CredentialsResting, PoolExhausted, ProviderStopped
from router.errors import UpstreamTimeout, UpstreamUnreachable
from router.providers import probe as p
from router.providers.base import HttpCall, Provider, ProviderAdapter, UpstreamRequest
from router.providers.breaker import CircuitBreaker
from router.providers.credentials import Credential, CredentialPool
from router.providers.h11_pool import Exchange, H11Pool, H11Response
from router.providers.spec import ProviderSpec

PROBE_BODY_LIMIT = 64 * 1024  # read (and so drain) a probe's answer up to this
PROBE_READ_S = 10.0  # once connected, how long a probe waits for the whole answer
BUSY = "every connection is carrying a call: not probed this time"


class HttpAdapter(ProviderAdapter):
    """A kind reached over HTTP through the shared pool (every kind but `demo`)."""

    # False for servers that take calls without a key (a local Ollama, llama.cpp): an
    # empty credential pool is then no fault of the configuration.
    needs_key: bool = True
    # What a probe checks, said in `ProbeResult.detail` when it is only a connect.
    connect_only_why: str = "the kind has no cheap authenticated call: connect only"

    def connect(self, spec: ProviderSpec) -> Provider:
        return HttpProvider(spec, self)

    def probe_call(self, credential: str | None) -> HttpCall | None:
        """The kind's free, authenticated, read-only call (a GET of its model list,
        say), signed with `credential`; None where there is none (a connect is all a
        probe then checks). Pure."""
        return None


def get_call(path: str, headers: list[tuple[bytes, bytes]]) -> HttpCall:
    """A bodiless GET, as probes send them."""
    return HttpCall(path, ((b"user-agent", b"aura-router"), (b"accept", b"application/json"),
                           *headers), b"", b"GET")


class HttpProvider:
    """One configured provider over HTTP.

    Each call takes a credential from the pool; a 401 marks it bad and a 429 rests it for
    its retry-after, and either way the same call is tried once more with the next usable
    credential before the answer counts (the user never sees one key's trouble).
    """

    def __init__(self, spec: ProviderSpec, adapter: ProviderAdapter) -> None:
        self.spec = spec
        self.adapter = adapter
        self.pool: H11Pool | None = None
        self.credentials = CredentialPool(spec.api_keys, spec.strategy)
        self.breaker = CircuitBreaker(spec.breaker_failures, spec.breaker_cooldown_s)

    async def start(self) -> None:
        self.pool = H11Pool(self.spec.base_url, max_connections=self.spec.max_concurrent,
                            connect_timeout_s=self.spec.timeout_connect_s,
                            idle_timeout_s=self.spec.timeout_idle_s)

    async def aclose(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.aclose()

    async def watch(self) -> None:
        if self.pool is not None:
            await self.pool.watch_reads()

    @property
    def running(self) -> bool:
        return self.pool is not None

    def stats(self) -> dict[str, int] | None:
        return self.pool.stats() if self.pool is not None else None

    def open(self, request: UpstreamRequest) -> "ProviderCall":
        """`async with provider.open(request) as answer:` (see `ProviderCall`)."""
        return ProviderCall(self, request)

    async def probe(self) -> p.ProbeResult:
        """Connect, and make the kind's cheap authenticated call with every credential
        that has not expired: one the provider refuses (401/403) is set aside as a real
        call's 401 sets it aside, one it accepts is good again."""
        watch = p.Stopwatch()
        if self.pool is None:
            return watch.result(False, p.NOT_RUNNING, "the provider is not running")
        pool = self.credentials
        keyed = len(pool) > 0 or pool.required
        now = trio.current_time()
        live = [c for c in pool.credentials if now < c.expires]
        if keyed and not live:
            return watch.result(False, p.NO_CREDENTIAL, pool.unusable_reason(now))
        if not keyed and self.adapter.needs_key:  # type: ignore[attr-defined]
            return watch.result(False, p.NO_CREDENTIAL, "no credential is configured")
        figures = self.pool.stats()
        if figures["in_flight"] >= figures["max"]:
            return watch.result(True, detail=BUSY)  # a probe must not queue behind users
        adapter: HttpAdapter = self.adapter  # type: ignore[assignment]
        candidates: list[Credential | None] = list(live) if keyed else [None]
        refused: list[int] = []
        statuses: list[int] = []
        for credential in candidates:
            call = adapter.probe_call(credential.key if credential else None)
            try:
                with trio.fail_after(self.spec.timeout_connect_s + PROBE_READ_S):
                    if call is None:
                        await self.pool.check_connect()
                        detail = adapter.connect_only_why
                        if credential is not None and credential.oauth:
                            detail = "connect, and a login that has not expired"
                        return watch.result(True, detail=detail)
                    async with self.pool.send(call) as response:
                        await response.read(PROBE_BODY_LIMIT)
                        status = response.status
            except PoolExhausted:
                # Every connection carries a call: the upstream is answering them.
                return watch.result(True, detail=BUSY)
            except (trio.TooSlowError, UpstreamTimeout):
                return watch.result(False, p.TIMEOUT, "the upstream did not answer in time")
            except UpstreamUnreachable:
                return watch.result(False, p.CONNECT_FAILED, "the upstream could not be reached")
            if credential is not None and status in (401, 403):
                pool.refused(credential, status)
                refused.append(credential.index)
            elif credential is not None and status < 400 and credential.bad:
                pool.accepted(credential)
            statuses.append(status)
        tried = len(statuses)
        if keyed and len(refused) == tried:
            return watch.result(False, p.AUTH_REFUSED, f"{tried} of {tried} credentials "
                                "refused", tuple(refused))
        if not keyed and statuses[0] in (401, 403):
            return watch.result(False, p.AUTH_REFUSED, "the upstream wants a credential")
        answered = [s for s in statuses if s not in (401, 403)]
        # A 429 is a key the provider knows (resting is the pool's business, not readiness').
        if any(s < 400 or s == 429 for s in answered):
            detail = f"{len(refused)} of {tried} credentials refused" if refused else \
                "authenticated call answered" if keyed else "call answered"
            return watch.result(True, detail=detail, refused=tuple(refused))
        return watch.result(False, p.bad_status(answered[0]), "the upstream answered with an "
                            "error status", tuple(refused))


class ProviderCall:
    """One call to an `HttpProvider`, from its credential's pick to the answer's end.

    A 401 or 429 about the key is not the answer while another credential is usable: the
    call is sent again with it. A class rather than a generator context manager: it lives
    as long as the answer, and a generator's frame, wrapper and trio's registry entry are
    ~0.5 KiB per open stream.
    """

    __slots__ = ("_provider", "_request", "_exchange", "_credential")

    def __init__(self, provider: HttpProvider, request: UpstreamRequest) -> None:
        self._provider = provider
        self._request: UpstreamRequest | None = request
        self._exchange: Exchange | None = None
        self._credential: Credential | None = None

    async def __aenter__(self) -> H11Response:
        provider, request, self._request = self._provider, self._request, None
        assert request is not None, "a ProviderCall is entered once"
        if provider.pool is None:
            raise ProviderStopped("the provider is not running")
        pool = provider.credentials
        for attempt in range(max(len(pool), 1)):
            now = trio.current_time()
            keyed = len(pool) > 0 or pool.required
            credential = pool.pick(now) if keyed else None
            if keyed and credential is None:
                raise CredentialsResting(pool.unusable_reason(now), pool.next_usable_in(now))
            # The key as the pool holds it: a plain str is an API key, an OAuthToken an OAuth
            # login (the adapter signs each its way).
            call = provider.adapter.build_request(request, credential.key if credential else None)
            exchange = provider.pool.send(call)
            try:
                response = await exchange.__aenter__()
            except BaseException:
                if credential is not None:
                    pool.done(credential)
                raise
            if credential is None or not self._about_the_key(credential, response, now,
                                                             attempt):
                self._exchange, self._credential = exchange, credential
                return response
            try:
                await exchange.__aexit__(None, None, None)
            finally:
                pool.done(credential)
        raise AssertionError("unreachable: the last attempt's answer is the answer")

    def _about_the_key(self, credential: Credential, response: H11Response, now: float,
                       attempt: int) -> bool:
        """Whether `response` is about the key and another one is to be tried."""
        pool = self._provider.credentials
        if response.status < 400 and credential.bad:
            pool.accepted(credential)
        if response.status not in (401, 429):
            return False
        if response.status == 401:
            pool.refused(credential, 401)
        else:
            pool.rate_limited(credential, now, response.retry_after)
        return attempt + 1 < len(pool) and any(c.usable(now) for c in pool.credentials)

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._exchange is not None
        try:
            await self._exchange.__aexit__(kind, exc, tb)
        finally:
            if self._credential is not None:
                self._provider.credentials.done(self._credential)
