"""The README's one-minute quickstart, run as written: its shell block (start the router,
wait for it, issue a key, grant credits) in bash, then its Python block with the key it
printed, then its usage curl. Only the port and the data directory are changed, so that
the run does not collide with anything on this machine.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def quickstart_blocks() -> tuple[str, str, str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## One minute"):text.index("## Real providers")]
    shell, usage = re.findall(r"```sh\n(.*?)```", section, re.S)[:2]
    python = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    return shell, python, usage


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def json_objects(text: str) -> list[Any]:
    """The JSON objects curl printed, in order (its bodies end without a newline)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := text.find("{", at)) >= 0:
        try:
            value, end = decoder.raw_decode(text, at)
        except ValueError:
            at += 1
            continue
        found.append(value)
        at = end
    return found


def localised(block: str, port: int) -> str:
    return block.replace("localhost:3000", f"localhost:{port}").replace(
        "scripts/serve", str(ROOT / "scripts" / "serve"))


def test_the_readme_quickstart_works_as_written(tmp_path: Path) -> None:
    shell, python, usage = quickstart_blocks()
    port = free_port()
    env = {**os.environ, "PORT": str(port), "DATA_DIR": str(tmp_path / "data")}
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AURA_CONFIG", "ADMIN_API_KEY"):
        env.pop(name, None)
    # The shell block leaves the router running in the background: one session, so that
    # the test can stop all of it.
    run = subprocess.Popen(["bash", "-c", localised(shell, port) + "\necho ADMIN=done"],
                           cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        log = (tmp_path / "router.log").read_text()
        assert f"listening on http://0.0.0.0:{port}" in log
        after_log = out[out.index("listening on"):].split("\n", 1)[1]
        issued, granted = json_objects(after_log.split("ADMIN=")[0])
        key = issued["key"]
        assert key.startswith("ar_sk_") and issued["account"] == "alice"
        assert granted["balance_micros"] == 5_000_000

        script = localised(python, port).replace("ar_sk_...", key)
        streamed = subprocess.run([sys.executable, "-c", script], capture_output=True,
                                  text=True, timeout=60)
        assert streamed.returncode == 0, streamed.stderr
        assert streamed.stdout.strip(), "the demo model streamed nothing"

        shown = subprocess.run(["bash", "-c", localised(usage, port).replace("ar_sk_...", key)],
                               capture_output=True, text=True, timeout=30)
        assert shown.returncode == 0, shown.stderr
        account = json.loads(shown.stdout)
        assert account["account"] == "alice"
        assert 0 < 5_000_000 - account["balance_micros"] == sum(
            r["cost_micros"] for r in account["recent"])
    finally:
        os.killpg(run.pid, signal.SIGTERM)
        run.wait(timeout=30)
