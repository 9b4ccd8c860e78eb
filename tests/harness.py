"""Start the real router (`python -m actors.cli serve`) as a subprocess on loopback.

The router gets a fresh DATA_DIR, an environment scrubbed of provider keys, and the
config text a test gives it; it binds port 0 and the harness reads the port it printed.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import anthropic
import httpx
import openai
import pytest

ADMIN_KEY = "adm_test_" + "k" * 24
JWT_SECRET = "jwt-test-secret-" + "s" * 32
ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"listening on (http://\S+)")


def router_config(openai_url: str, anthropic_url: str, extra: str = "") -> str:
    return f"""
[[providers]]
name = "oai"
kind = "openai"
base_url = "{openai_url}"
api_keys = ["sk-fake-openai-1"]
timeout_connect_s = 2
timeout_idle_s = 5

[[providers]]
name = "ant"
kind = "anthropic"
base_url = "{anthropic_url}"
api_keys = ["sk-ant-fake-1"]
timeout_connect_s = 2
timeout_idle_s = 5

[[models]]
id = "house-model"
route = ["oai:gpt-4o-mini"]
input_per_mtok = "0.15"
output_per_mtok = "0.60"
max_output_tokens = 16384

[aliases]
fast = "house-model"
{extra}
"""


def every_kind_config(fake: Any) -> str:
    """`router_config` plus a Gemini provider (gemini-2.5-flash) and an OpenAI-compatible
    server that speaks only Chat Completions (model "llama"): one model of each kind."""
    return router_config(fake.openai_base_url, fake.anthropic_base_url, f"""
[[providers]]
name = "gem"
kind = "gemini"
base_url = "{fake.gemini_base_url}"
api_keys = ["AIzaFakeGeminiKey1"]
timeout_connect_s = 2
timeout_idle_s = 5

[[providers]]
name = "local"
kind = "openai_compatible"
base_url = "{fake.openai_base_url}"

[[models]]
id = "llama"
route = ["local:llama-3"]
input_per_mtok = "1"
output_per_mtok = "2"
max_output_tokens = 4096
""")


def assert_ledger_invariants(path: Path) -> None:
    """Every request any test sent through this router: capture <= hold, captured exactly
    once, the usage row's cost is the capture (a hold an external credit service refused
    is released without one), and balances and holds add up (I1-I5)."""
    conn = sqlite3.connect(str(path))
    try:
        bad = conn.execute(
            "SELECT h.request_id, h.amount, h.captured, u.cost_micros FROM holds h "
            "LEFT JOIN usage u ON u.request_id = h.request_id WHERE h.settled = 1 AND "
            "(h.captured > h.amount OR u.cost_micros IS NULL AND h.captured != 0 "
            "OR u.cost_micros != h.captured)"
        ).fetchall()
        assert bad == [], f"settlements that broke capture <= hold or lost their usage: {bad}"
        twice = conn.execute("SELECT request_id FROM entries WHERE kind = 'capture' "
                             "GROUP BY request_id HAVING COUNT(*) > 1").fetchall()
        assert twice == [], f"captured more than once: {twice}"
        accounts = conn.execute(
            "SELECT a.id, a.balance, a.held, COALESCE(SUM(e.amount), 0), "
            "COALESCE(SUM(e.held_delta), 0) FROM accounts a LEFT JOIN entries e "
            "ON e.account = a.id GROUP BY a.id").fetchall()
        for account, balance, held, entries_sum, held_sum in accounts:
            assert (balance, held) == (entries_sum, held_sum), f"{account}: I1/I2 broken"
            assert balance - held >= 0, f"{account}: available below 0"
    finally:
        conn.close()


class RouterProcess:
    """A running router; `stop()` (or the context manager) ends it."""

    def __init__(self, data_dir: Path, config_text: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.env = {"PATH": os.environ.get("PATH", ""), "HOME": str(data_dir),
                    "DATA_DIR": str(data_dir), "ADMIN_API_KEY": ADMIN_KEY,
                    "PYTHONUNBUFFERED": "1", "LOG_REQUESTS": "false",
                    "SHUTDOWN_GRACE_S": "0.3", "RATE_LIMIT_RPM": "1000000", **(env or {})}
        if config_text is not None:
            config_path = data_dir / "aura-router.toml"
            config_path.write_text(config_text)
            self.env["AURA_CONFIG"] = str(config_path)
        self.output: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def start(self, timeout_s: float = 20.0) -> "RouterProcess":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "actors.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
            cwd=str(self.data_dir), env=self.env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        found = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            log = open(self.data_dir / "router.log", "a", encoding="utf-8")  # for post-mortems
            for line in self.proc.stdout:
                self.output.append(line)
                log.write(line)
                log.flush()
                match = _LISTENING.search(line)
                if match and not found.is_set():
                    self.base_url = match.group(1)
                    found.set()

        threading.Thread(target=pump, daemon=True).start()
        if not found.wait(timeout_s):
            self.stop()
            raise RuntimeError("router did not start:\n" + "".join(self.output))
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        ledger = self.data_dir / "ledger.sqlite3"
        if self.proc is not None and ledger.exists():
            assert_ledger_invariants(ledger)

    def __enter__(self) -> "RouterProcess":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- admin helpers ------------------------------------------------------------
    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.base_url + path, timeout=10,
                             headers={"authorization": f"Bearer {ADMIN_KEY}"}, **kwargs)

    def new_account(self, micros: int, **key_fields: Any) -> tuple[str, str]:
        """A fresh account with `micros` granted and a key for it: (account, key)."""
        account = "acct_" + uuid.uuid4().hex[:12]
        if micros:
            r = self.admin("POST", f"/admin/accounts/{account}/credits",
                           json={"amount_micros": micros, "reason": "test"})
            assert r.status_code == 200, r.text
        r = self.admin("POST", "/admin/keys", json={"account": account, **key_fields})
        assert r.status_code == 201, r.text
        return account, r.json()["key"]

    def account(self, account: str) -> dict[str, Any]:
        r = self.admin("GET", f"/admin/accounts/{account}")
        assert r.status_code == 200, r.text
        return r.json()

    def ledger(self, account: str) -> list[dict[str, Any]]:
        """Every entry, following the pages."""
        entries: list[dict[str, Any]] = []
        after = 0
        while True:
            r = self.admin("GET", f"/admin/accounts/{account}/ledger?after={after}")
            assert r.status_code == 200, r.text
            page = r.json()
            entries += page["data"]
            if not page["data"]:
                return entries
            after = page["next_after"]

    def usage(self, key: str) -> dict[str, Any]:
        r = httpx.get(self.base_url + "/v1/usage", headers={"authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
        return r.json()

    def last_usage(self, key: str) -> dict[str, Any]:
        """The key's most recent usage row (its latest bill)."""
        return self.usage(key)["recent"][0]


# --- clients and checks the e2e tests share ------------------------------------------------

def oai(router: RouterProcess, key: str, **kwargs: Any) -> openai.OpenAI:
    """The official OpenAI SDK against the router, with `key` and no retries."""
    return openai.OpenAI(base_url=router.base_url + "/v1", api_key=key, max_retries=0,
                         **kwargs)


def ant(router: RouterProcess, key: str, **kwargs: Any) -> anthropic.Anthropic:
    """The official Anthropic SDK against the router, with `key` and no retries."""
    return anthropic.Anthropic(base_url=router.base_url, api_key=key, max_retries=0, **kwargs)


def words(n: int) -> str:
    """What the fake providers answer with `n` tokens of output: "w0 w1 ... w{n-1}"."""
    return " ".join(f"w{i}" for i in range(n))


def assert_billed(router: RouterProcess, account: str, granted: int, debited: int) -> None:
    """No hold left open, and the account paid exactly `debited` of what it was granted."""
    state = router.account(account)
    assert state["held_micros"] == 0, "a hold was left open"
    assert state["balance_micros"] == granted - debited


def stream_until_error(client: anthropic.Anthropic, **request: Any) -> str:
    """Stream a Messages request that must end in an error; the text that came before it."""
    text: list[str] = []
    with pytest.raises(anthropic.APIStatusError):
        with client.messages.stream(**request) as stream:
            for piece in stream.text_stream:
                text.append(piece)
    return "".join(text)


def eventually(condition: Callable[[], bool], within_s: float = 5.0,
               what: str = "the condition") -> None:
    """Wait for something the router does in the background (never a timing claim)."""
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {within_s} s"
        time.sleep(0.05)


def assert_account_invariants(router: "RouterProcess", account: str) -> None:
    """I1-I4 over the account's entries as the admin API shows them, whatever the backend:
    every entry adds up, available never below 0 at any point in the history, each request
    captured at most once and never beyond its hold, and the account's state is the sum."""
    entries = router.ledger(account)
    balance = held = 0
    holds: dict[str, int] = {}
    captures: dict[str, int] = {}
    for e in entries:
        balance += e["amount_micros"]
        held += e["held_delta_micros"]
        assert balance == e["balance_after_micros"], "I1: every entry adds up"
        assert balance - held >= 0, "I3: available never negative"
        if e["kind"] == "hold":
            holds[e["request_id"]] = e["held_delta_micros"]
        if e["kind"] == "capture":
            assert e["request_id"] not in captures, "I4: captured at most once"
            captures[e["request_id"]] = -e["amount_micros"]
            assert captures[e["request_id"]] <= holds[e["request_id"]], "I4: capture <= hold"
    state = router.account(account)
    assert state["balance_micros"] == balance and state["held_micros"] == held == 0, "I1, I2"
