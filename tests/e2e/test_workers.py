"""WORKERS=2: one port, two router processes and their supervisor (actors/workers.py).

Real processes throughout: the supervisor started by the harness, its workers found as its
children in /proc, requests on loopback, `kill -9` and SIGTERM for real. Which worker
served a request is read from the shared ledger: every hold names the instance that took
it (`holds.owner`), and the instance row names its pid.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Iterator

import httpx
import orjson
import pytest
import trio

from actors.cli import _flags, _parser
from actors.workers import RestartBudget, exit_reason, supervise
from router.config import load_config
from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, router_config

ENV = {"WORKERS": "2"}
BODY = {"model": "gpt-4o-mini", "max_tokens": 20,
        "messages": [{"role": "user", "content": "say hi"}]}
PRICES = (Decimal("0.15"), Decimal("0.60"))  # gpt-4o-mini, USD per Mtok


@pytest.fixture(scope="module")
def workers_router(fake: FakeProviderServer, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[RouterProcess]:
    with RouterProcess(tmp_path_factory.mktemp("workers"),
                       router_config(fake.openai_base_url, fake.anthropic_base_url),
                       env=ENV) as proc:
        yield proc


# --- helpers ------------------------------------------------------------------------------

def children(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is `pid`."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def wait_for(predicate, timeout_s: float = 20.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def serving_pids(router: RouterProcess, account: str) -> dict[int, int]:
    """pid of the worker that took each of `account`'s holds -> how many it took."""
    conn = sqlite3.connect(str(router.data_dir / "ledger.sqlite3"))
    try:
        rows = conn.execute("SELECT i.pid, COUNT(*) FROM holds h JOIN instances i "
                            "ON i.id = h.owner WHERE h.account = ? GROUP BY i.pid",
                            (account,)).fetchall()
    finally:
        conn.close()
    return dict(rows)


def worker_pids(router: RouterProcess, n: int = 2) -> set[int]:
    assert router.proc is not None
    pid = router.proc.pid

    def found() -> set[int] | None:
        pids = children(pid)
        return pids if len(pids) == n else None
    return wait_for(found, what=f"{n} workers")


def one_request(router: RouterProcess, key: str) -> httpx.Response:
    """On a connection of its own: the kernel picks the worker per connection."""
    with httpx.Client(base_url=router.base_url, timeout=10) as client:
        return client.post("/v1/chat/completions", json=BODY,
                           headers={"authorization": f"Bearer {key}"})


async def concurrent_requests(router: RouterProcess, key: str, n: int) -> list[int]:
    statuses: list[int] = []

    async def one() -> None:
        async with httpx.AsyncClient(base_url=router.base_url, timeout=30) as client:
            r = await client.post("/v1/chat/completions", json=BODY,
                                  headers={"authorization": f"Bearer {key}"})
            statuses.append(r.status_code)

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    return statuses


# --- one port, two workers ---------------------------------------------------------------

async def test_requests_on_one_port_are_served_by_both_workers(
        workers_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    pids = worker_pids(workers_router)
    assert sum("listening on" in line for line in workers_router.output) == 1, \
        "the supervisor says `listening on` once; the workers do not"
    account, key = workers_router.new_account(10_000_000)
    statuses = await concurrent_requests(workers_router, key, 40)
    assert statuses == [200] * 40
    served = serving_pids(workers_router, account)
    assert set(served) == pids, f"holds by worker pid {served}, workers {pids}"
    assert sum(served.values()) == 40
    print(f"\n40 connections: {served} requests per worker pid")


async def test_a_console_session_opened_on_one_worker_is_good_on_every_worker(
        workers_router: RouterProcess) -> None:
    """Nothing of a console session is kept in a worker: the cookie is checked with the
    admin key alone, so 40 connections (the kernel spreads them over both workers, as the
    test above shows) all pass, and the overview says its calls are one worker's."""
    from tests.harness import ADMIN_KEY

    signed = httpx.post(workers_router.base_url + "/console/session",
                        json={"admin_key": ADMIN_KEY})
    assert signed.status_code == 200
    cookie = signed.cookies["aura_console"]
    headers = {"x-aura-csrf": signed.json()["csrf"]}
    answers: list[httpx.Response] = []

    async def one() -> None:
        async with httpx.AsyncClient(base_url=workers_router.base_url, timeout=30,
                                     cookies={"aura_console": cookie}) as client:
            answers.append(await client.get("/admin/activity", headers=headers))

    async with trio.open_nursery() as nursery:
        for _ in range(40):
            nursery.start_soon(one)
    assert [a.status_code for a in answers] == [200] * 40
    assert {a.json()["calls_scope"] for a in answers} == {"process"}


async def test_concurrent_streams_never_overspend_across_workers(
        workers_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    """The overspend attack of test_concurrency.py, split by the kernel across two
    processes that share only the SQLite ledger."""
    requests = 100
    clean_fake.state.chunk_delay_s = 0.01  # streams overlap for ~0.15 s each
    clean_fake.state.keep_requests = False
    # About 80 of the 100 holds: whatever the kernel's split of the connections, and
    # however fast each worker is, both take holds (each got ~50 connections).
    granted = 3_200
    account, key = workers_router.new_account(granted)
    body = {"model": "gpt-4o-mini", "stream": True, "max_tokens": 50,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "count to twelve, please"}]}
    told: list[int] = []
    statuses: list[int] = []

    async def one() -> None:
        async with httpx.AsyncClient(base_url=workers_router.base_url, timeout=30,
                                     headers={"authorization": f"Bearer {key}"}) as client:
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                statuses.append(response.status_code)
                if response.status_code != 200:
                    return
                async for line in response.aiter_lines():
                    if line.startswith("data: {") and '"usage":{' in line:
                        usage = orjson.loads(line[6:])["usage"]
                        exact = (usage["prompt_tokens"] * PRICES[0]
                                 + usage["completion_tokens"] * PRICES[1])
                        told.append(int(exact.to_integral_value(rounding=ROUND_CEILING)))

    async with trio.open_nursery() as nursery:
        for _ in range(requests):
            nursery.start_soon(one)

    admitted, refused = statuses.count(200), statuses.count(402)
    assert admitted + refused == requests, statuses
    assert admitted > 0 and refused > 0, (admitted, refused)
    assert len(told) == admitted
    state = workers_router.account(account)
    assert state["held_micros"] == 0, "no hold left"
    assert granted - state["balance_micros"] == sum(told), "debit == usage clients were told"
    balance = held = 0
    for entry in workers_router.ledger(account):  # available >= 0 at every moment
        balance += entry["amount_micros"]
        held += entry["held_delta_micros"]
        assert balance - held >= 0, entry
    served = serving_pids(workers_router, account)
    assert len(served) == 2, f"both workers took holds: {served}"
    print(f"\nattack through 2 workers: admitted {admitted} of {requests} (holds per worker "
          f"pid {served}), refused {refused}, debited {sum(told)} of {granted}, overspend 0")


async def test_a_worker_killed_with_sigkill_is_restarted_and_the_port_keeps_serving(
        workers_router: RouterProcess, clean_fake: FakeProviderServer) -> None:
    before = worker_pids(workers_router)
    victim, survivor = sorted(before)
    account, key = workers_router.new_account(10_000_000)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not alive(victim), what="the killed worker to be gone")
    # Whatever the supervisor is doing, every new connection is served meanwhile.
    for _ in range(10):
        assert one_request(workers_router, key).status_code == 200
    after = worker_pids(workers_router)
    assert survivor in after and victim not in after
    (replacement,) = after - before
    # The replacement serves too (the kernel hands it some of the new connections).
    wait_for(lambda: one_request(workers_router, key).status_code == 200
             and replacement in serving_pids(workers_router, account),
             what="the restarted worker to serve a request")
    log = "".join(workers_router.output)
    assert f"(pid {victim}) was killed by SIGKILL; restarting it" in log, log[-2000:]
    assert f"(pid {replacement}) is ready" in log


async def test_sigterm_to_the_supervisor_drains_and_stops_every_worker(
        fake: FakeProviderServer, clean_fake: FakeProviderServer, tmp_path: Path) -> None:
    clean_fake.state.chunk_delay_s = 0.05  # ~0.6 s per stream: in flight at the SIGTERM
    clean_fake.state.keep_requests = False
    router = RouterProcess(tmp_path, router_config(fake.openai_base_url,
                                                   fake.anthropic_base_url),
                           env={**ENV, "SHUTDOWN_GRACE_S": "5"}).start()  # covers the stream
    try:
        assert router.proc is not None
        workers = worker_pids(router)
        _, key = router.new_account(10_000_000)
        body = {**BODY, "stream": True}
        lines: list[str] = []
        async with httpx.AsyncClient(base_url=router.base_url, timeout=30) as client:
            async with client.stream("POST", "/v1/chat/completions", json=body,
                                     headers={"authorization": f"Bearer {key}"}) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if not lines:
                        router.proc.send_signal(signal.SIGTERM)  # mid-stream
                    lines.append(line)
        assert "data: [DONE]" in lines, "the stream in flight finished within the grace"
        assert router.proc.wait(15) == 0
        assert [pid for pid in workers if alive(pid)] == []
        assert children(router.proc.pid) == set()
        assert "every worker has stopped" in "".join(router.output)
    finally:
        router.stop()  # checks the ledger's invariants


def test_a_worker_that_cannot_start_stops_the_supervisor(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The CLI checks DATA_DIR and the ledger before it starts any worker (one line, once:
    # tests/e2e/test_cli.py), so a real worker seldom fails at start: here the supervisor
    # runs workers that exit at once.
    config = load_config({"port": 0, "workers": 2, "host": "127.0.0.1"},
                         env={"DATA_DIR": str(tmp_path)}, cwd=tmp_path)
    announced: list[list[str]] = []

    def failing_worker(port: int, status_fd: int) -> list[str]:
        return [sys.executable, "-c", "raise SystemExit(3)"]

    with caplog.at_level("INFO", logger="aura.workers"):
        status = trio.run(supervise, config, failing_worker, announced.append)
    assert status == 1 and announced == []
    assert "exited with status 3 before it was ready" in caplog.text


# --- the pieces -----------------------------------------------------------------------------

def test_workers_flag_wins_over_the_environment(tmp_path: Path) -> None:
    args = _parser().parse_args(["serve", "--workers", "3"])
    assert load_config(_flags(args), env={"WORKERS": "2"}, cwd=tmp_path).workers == 3
    args = _parser().parse_args(["serve"])
    assert load_config(_flags(args), env={"WORKERS": "2"}, cwd=tmp_path).workers == 2
    assert load_config(_flags(args), env={}, cwd=tmp_path).workers == 1


def test_restart_budget_backs_off_and_gives_up() -> None:
    budget = RestartBudget(max_restarts=3, window_s=60, backoff_initial_s=0.5,
                           backoff_max_s=2.0, stable_s=30, rng=lambda: 1.0)
    assert [budget.exited(t, 1.0) for t in (0, 1, 2)] == [0.5, 1.0, 2.0]
    assert budget.exited(3, 1.0) is None, "a fourth exit within the window: give up"
    budget = RestartBudget(max_restarts=3, window_s=60, backoff_initial_s=0.5,
                           backoff_max_s=2.0, stable_s=30, rng=lambda: 1.0)
    assert [budget.exited(t, 1.0) for t in (0, 1, 2)] == [0.5, 1.0, 2.0]
    assert budget.exited(100, 98.0) == 0.5, "old exits leave the window; a stable run resets"


def test_exit_reasons_say_what_happened() -> None:
    assert exit_reason(-9) == "was killed by SIGKILL"
    assert exit_reason(1) == "exited with status 1"
