"""The request log and the log format (docs/configuration.md#logging): with
`LOG_FORMAT=json` every line the router writes to stderr is one JSON object, and each
model call has one, found by its `x-request-id`, with the account, model, provider,
status, tokens, cost (as the ledger billed it) and durations, and neither the API key nor
the prompt anywhere; `LOG_FORMAT=text` writes plain lines; `LOG_LEVEL=warning` leaves
the request lines out; an unknown level or format stops the start with one clear line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fakes import FakeProviderServer
from tests.harness import RouterProcess, eventually, oai, router_config

LISTENING = re.compile(r"listening on (http://\S+)")
PROMPT = "the secret plans are under the old oak tree"


class SplitOutputRouter(RouterProcess):
    """A `RouterProcess` whose stderr (the log) is kept apart from stdout (the CLI's own
    `listening on` line)."""

    def start(self, timeout_s: float = 20.0) -> "SplitOutputRouter":
        self.stderr: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "actors.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
            cwd=str(self.data_dir), env=self.env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        found = threading.Event()

        def pump(stream: Any, into: list[str]) -> None:
            for line in stream:
                into.append(line)
                match = LISTENING.search(line)
                if match and not found.is_set():
                    self.base_url = match.group(1)
                    found.set()

        threading.Thread(target=pump, args=(self.proc.stdout, self.output), daemon=True).start()
        threading.Thread(target=pump, args=(self.proc.stderr, self.stderr), daemon=True).start()
        if not found.wait(timeout_s):
            self.stop()
            raise RuntimeError("router did not start:\n" + "".join(self.output + self.stderr))
        return self


def _router(fake: FakeProviderServer, tmp_path: Path, **env: str) -> SplitOutputRouter:
    config = router_config(fake.openai_base_url, fake.anthropic_base_url)
    return SplitOutputRouter(tmp_path, config, env={"LOG_REQUESTS": "true", **env})


def _call(router: RouterProcess, key: str, **extra: Any) -> str:
    """One chat call with the official SDK; its x-request-id."""
    raw = oai(router, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": PROMPT}],
        **extra)
    if extra.get("stream"):
        for _ in raw.parse():
            pass
    return raw.headers["x-request-id"]


def test_json_logs_one_line_per_request_with_its_bill_and_no_secret(
        fake: FakeProviderServer, clean_fake: FakeProviderServer, tmp_path: Path) -> None:
    with _router(fake, tmp_path, LOG_FORMAT="json") as router:
        account, key = router.new_account(5_000_000)
        ids = [_call(router, key), _call(router, key, stream=True)]

        def lines_of(request_id: str) -> list[dict[str, Any]]:
            return [parsed for line in router.stderr
                    if (parsed := orjson.loads(line)).get("request_id") == request_id]
        eventually(lambda: all(lines_of(r) for r in ids), what="the request lines")
        rows = {row["request_id"]: row for row in
                router.admin("GET", f"/admin/usage?account={account}").json()["data"]}
        for request_id in ids:
            (line,) = lines_of(request_id)
            row = rows[request_id]
            assert line["level"] == "info" and line["logger"] == "aura.requests"
            assert line["time"].endswith("Z") and line["message"]
            assert (line["account"], line["model"], line["provider"], line["status"]) == \
                (account, "gpt-4o-mini", "oai", 200)
            assert (line["input_tokens"], line["output_tokens"], line["cost_micros"]) == \
                (row["input_tokens"], row["output_tokens"], row["cost_micros"])
            assert line["cost_micros"] > 0 and line["estimated"] is False
            assert 0 < line["ttft_ms"] <= line["duration_ms"]
        log = "".join(router.stderr)
    every = [orjson.loads(line) for line in router.stderr]  # raises on any non-JSON line
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in every)
    everything = "".join(router.output) + log
    assert key not in everything and key[-16:] not in everything, "the API key is never logged"
    assert PROMPT not in everything and "old oak tree" not in everything, "nor the prompt"


def test_text_logs_are_plain_lines(fake: FakeProviderServer, clean_fake: FakeProviderServer,
                                   tmp_path: Path) -> None:
    with _router(fake, tmp_path, LOG_FORMAT="text") as router:
        _, key = router.new_account(5_000_000)
        request_id = _call(router, key)
        eventually(lambda: any(request_id in line for line in router.stderr),
                   what="the request line")
    (line,) = [line for line in router.stderr if request_id in line]
    assert "aura.requests" in line and "status=200" in line and "provider=oai" in line
    for any_line in router.stderr:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(any_line)
    assert key not in "".join(router.stderr) and PROMPT not in "".join(router.stderr)


def test_log_level_warning_leaves_the_request_lines_out(
        fake: FakeProviderServer, clean_fake: FakeProviderServer, tmp_path: Path) -> None:
    with _router(fake, tmp_path, LOG_LEVEL="warning") as router:
        account, key = router.new_account(5_000_000)
        request_id = _call(router, key)
        rows = router.admin("GET", f"/admin/usage?account={account}").json()["data"]
        assert request_id in {row["request_id"] for row in rows}, "the call was served"
    assert not any(request_id in line for line in router.stderr)
    assert not any(orjson.loads(line)["level"] in ("debug", "info") for line in router.stderr)


@pytest.mark.parametrize(("name", "value"), [("LOG_LEVEL", "verbose"), ("LOG_FORMAT", "xml")])
def test_an_unknown_log_level_or_format_stops_the_start_with_one_line(
        tmp_path: Path, name: str, value: str) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "DATA_DIR": str(tmp_path), name: value}
    done = subprocess.run([sys.executable, "-m", "actors.cli", "serve", "--port", "0"],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"config error: {name} must be one of "
        + ("debug, info, warning, error" if name == "LOG_LEVEL" else "json, text")
        + f", got {value!r}"]
